"""``hubembed convert``: a Hugging Face BERT checkpoint -> a Hub-format encoder + preprocessor.

Input folder: ``config.json``, ``model.safetensors``, ``vocab.txt`` (and optionally
``tokenizer_config.json`` for ``do_lower_case``). The weights are read with
``safetensors.numpy``: no torch. Output folder::

    out_dir/
      encoder/      TF2 Hub SavedModel: pooled_output, sequence_output, default,
                    encoder_outputs (+ .mlm when the checkpoint has an MLM head);
                    vocab_file and do_lower_case attached; exact GELU
      preprocess/   the matching tfhub.dev-style preprocessing SavedModel
      hubembed.json what was converted (config, source checksum, versions)

The output is written to a temporary sibling folder and renamed into place, so
an interrupted conversion never leaves a folder that looks complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from hubembed._formats import preprocessor, writers
from hubembed._formats.names import BertConfig
from hubembed._tokenizer import HUGGINGFACE, TENSORFLOW_TEXT
from hubembed._util import require_tensorflow, sha256_file, versions
from hubembed.errors import ConversionError, InputError

MANIFEST = "hubembed.json"
# 2: dropout when training, Hugging Face tokenization; 3: TFLite-convertible ops; 4: the trained window recorded
# (sentence_bert_config.json) and the saved preprocessor's default
FORMAT = "hubembed-converted/4"
SBERT_CONFIG = "sentence_bert_config.json"
_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}


def read_hf_config(src: str) -> Tuple[dict, BertConfig]:
    """Read and check config.json; returns (raw config, BertConfig)."""

    path = os.path.join(src, "config.json")
    if not os.path.isfile(path):
        raise ConversionError(
            f"{src} has no config.json: `hubembed convert` needs a Hugging Face BERT "
            f"folder with config.json, model.safetensors and vocab.txt"
        )
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    model_type = raw.get("model_type", "?")
    if model_type != "bert":
        arch = ", ".join(raw.get("architectures") or []) or "unknown"
        raise ConversionError(
            f"model_type '{model_type}' (architectures: {arch}) is not supported: `hubembed convert` "
            f"converts BERT checkpoints (model_type 'bert': BERT, MiniLM, BioBERT, ...). "
            f"RoBERTa, DistilBERT, ALBERT, ELECTRA and others have different weights or tokenizers."
        )
    act = raw.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ConversionError(f"hidden_act '{act}' is not supported (valid: {', '.join(_ACTIVATIONS)})")
    pos = raw.get("position_embedding_type", "absolute")
    if pos != "absolute":
        raise ConversionError(f"position_embedding_type '{pos}' is not supported (only 'absolute')")
    if raw.get("embedding_size", raw["hidden_size"]) != raw["hidden_size"]:
        raise ConversionError("an embedding size different from hidden_size is not supported")
    cfg = BertConfig(
        vocab_size=raw["vocab_size"],
        hidden_size=raw["hidden_size"],
        num_layers=raw["num_hidden_layers"],
        num_heads=raw["num_attention_heads"],
        intermediate_size=raw["intermediate_size"],
        max_positions=raw.get("max_position_embeddings", 512),
        type_vocab_size=raw.get("type_vocab_size", 2),
        activation=_ACTIVATIONS[act],
        layer_norm_eps=raw.get("layer_norm_eps", 1e-12),
        hidden_dropout=float(raw.get("hidden_dropout_prob", 0.1)),
        attention_dropout=float(raw.get("attention_probs_dropout_prob", 0.1)),
    )
    return raw, cfg


def _ln(hf: dict, prefix: str) -> Tuple[np.ndarray, np.ndarray]:
    for g, b in (("weight", "bias"), ("gamma", "beta")):
        if f"{prefix}.{g}" in hf:
            return hf[f"{prefix}.{g}"], hf[f"{prefix}.{b}"]
    raise ConversionError(f"the checkpoint lacks the BERT weight '{prefix}.weight' (or '{prefix}.gamma')")


def map_weights(hf: Dict[str, np.ndarray], cfg: BertConfig) -> Dict[str, np.ndarray]:
    """Hugging Face BERT names -> Model Garden export names (TF Hub BERT formats, section 8)."""
    # BertModel keys have no prefix; BertForMaskedLM/PreTraining/... put the encoder under "bert.".
    enc = {k[len("bert.") :] if k.startswith("bert.") else k: v for k, v in hf.items()}
    H, N = cfg.hidden_size, cfg.num_heads
    D = H // N
    w: Dict[str, Any] = {
        "word_embeddings/embeddings": enc["embeddings.word_embeddings.weight"],
        "position_embedding/embeddings": enc["embeddings.position_embeddings.weight"],
        "type_embeddings/embeddings": enc["embeddings.token_type_embeddings.weight"],
    }
    w["embeddings/layer_norm/gamma"], w["embeddings/layer_norm/beta"] = _ln(enc, "embeddings.LayerNorm")
    for i in range(cfg.num_layers):
        s, p = f"encoder.layer.{i}.", f"transformer/layer_{i}/"
        for n in ("query", "key", "value"):
            w[p + f"self_attention/{n}/kernel"] = enc[s + f"attention.self.{n}.weight"].T.reshape(H, N, D)
            w[p + f"self_attention/{n}/bias"] = enc[s + f"attention.self.{n}.bias"].reshape(N, D)
        w[p + "self_attention/attention_output/kernel"] = enc[s + "attention.output.dense.weight"].T.reshape(N, D, H)
        w[p + "self_attention/attention_output/bias"] = enc[s + "attention.output.dense.bias"]
        w[p + "self_attention_layer_norm/gamma"], w[p + "self_attention_layer_norm/beta"] = _ln(
            enc, s + "attention.output.LayerNorm"
        )
        w[p + "intermediate/kernel"] = enc[s + "intermediate.dense.weight"].T
        w[p + "intermediate/bias"] = enc[s + "intermediate.dense.bias"]
        w[p + "output/kernel"] = enc[s + "output.dense.weight"].T
        w[p + "output/bias"] = enc[s + "output.dense.bias"]
        w[p + "output_layer_norm/gamma"], w[p + "output_layer_norm/beta"] = _ln(enc, s + "output.LayerNorm")
    # Checkpoints saved from e.g. BertForMaskedLM have no pooler: the encoder then
    # exports no pooled_output (inspect says so) rather than an invented one.
    if "pooler.dense.weight" in enc:
        w["pooler_transform/kernel"] = enc["pooler.dense.weight"].T
        w["pooler_transform/bias"] = enc["pooler.dense.bias"]
    if "cls.predictions.transform.dense.weight" in hf:
        w["mlm/transform/kernel"] = hf["cls.predictions.transform.dense.weight"].T
        w["mlm/transform/bias"] = hf["cls.predictions.transform.dense.bias"]
        w["mlm/layer_norm/gamma"], w["mlm/layer_norm/beta"] = _ln(hf, "cls.predictions.transform.LayerNorm")
        w["mlm/output_bias"] = hf.get("cls.predictions.bias", hf.get("cls.predictions.decoder.bias"))
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in w.items()}


def _do_lower_case(src: str, vocab_file: str) -> bool:
    path = os.path.join(src, "tokenizer_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            tc = json.load(f)
        if "do_lower_case" in tc:
            return bool(tc["do_lower_case"])
    # No explicit setting: a vocabulary without upper-case entries is an uncased one.
    with open(vocab_file, encoding="utf-8") as f:
        return not any(re.search(r"[A-Z]", line) for line in f if not line.startswith("["))


def convert(
    src: str,
    out_dir: str,
    *,
    expected_sha256: Optional[str] = None,
    overwrite: bool = False,
    progress: Optional[Callable[[str], None]] = None,
) -> str:
    """Convert a Hugging Face BERT folder to ``out_dir`` (encoder/ + preprocess/ + hubembed.json); ``progress`` is
    called with what is done after each of its three steps (weights read, encoder written, preprocessor written)."""

    src = os.path.abspath(os.path.expanduser(src))
    out_dir = os.path.abspath(os.path.expanduser(out_dir))
    if not os.path.isdir(src):
        raise ConversionError(f"{src} is not a folder (expected a Hugging Face BERT folder)")
    require_tensorflow(f"converting {src} to the Hub format (it writes TensorFlow SavedModels)")
    raw, cfg = read_hf_config(src)
    weights_path, vocab_file = _source_files(src, out_dir, overwrite)
    digest = sha256_file(weights_path)
    if expected_sha256 and digest != expected_sha256:
        raise ConversionError(
            f"{weights_path} has sha256 {digest}, expected {expected_sha256}: "
            f"the file is corrupt or not the expected model; reinstall its package"
        )
    from safetensors.numpy import load_file

    try:
        weights = map_weights(load_file(weights_path), cfg)
    except KeyError as e:  # a weight map_weights looks up by name
        raise ConversionError(f"{weights_path} lacks the BERT weight {e}: not a BERT checkpoint?") from None
    except ConversionError as e:  # a layer norm under neither of its names
        raise ConversionError(f"{weights_path}: {e}: not a BERT checkpoint?") from None
    lower = _do_lower_case(src, vocab_file)
    window, window_from = trained_window(src, cfg.max_positions)
    step = progress or (lambda done: None)
    step("weights read")
    parent = os.path.dirname(out_dir) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".converting-", dir=parent)
    try:
        try:
            writers.save_encoder(
                weights, cfg, os.path.join(tmp, "encoder"), vocab_file=vocab_file, do_lower_case=lower, style="dict"
            )
        except InputError as e:  # weights whose shapes config.json does not describe
            raise ConversionError(f"{weights_path} does not fit {src}/config.json: {e}") from None
        step("encoder written")
        # Tokenized as the tokenizer the checkpoint was trained with: Hugging Face's.
        # Its default window is the one hubembed packs: plain hub.KerasLayer on preprocess/ truncates alike.
        preprocessor.save_preprocessor(
            vocab_file, lower, os.path.join(tmp, "preprocess"), seq_length=window, flavour=HUGGINGFACE
        )
        step("preprocessor written")
        manifest = {
            "format": FORMAT,
            "source": src,
            "source_sha256": digest,
            "config": cfg.to_dict(),
            "hf_config": {k: raw[k] for k in ("_name_or_path", "architectures", "hidden_act") if k in raw},
            "do_lower_case": lower,
            "tokenizer": HUGGINGFACE,
            "seq_length": window,
            "seq_length_from": window_from,
            "mlm": "mlm/output_bias" in weights,
            "pooler": "pooler_transform/kernel" in weights,
            "versions": _versions(),
            "files": _file_sizes(tmp),
        }
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        writers.replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _source_files(src: str, out_dir: str, overwrite: bool) -> Tuple[str, str]:
    """(the weights, the vocabulary) of a Hugging Face folder; refused if missing, or if ``out_dir`` holds files."""
    weights_path = os.path.join(src, "model.safetensors")
    vocab_file = os.path.join(src, "vocab.txt")
    for path, what in (
        (weights_path, "model.safetensors (pytorch_model.bin is not read: it needs torch)"),
        (vocab_file, "vocab.txt"),
    ):
        if not os.path.isfile(path):
            raise ConversionError(f"{src} has no {what}")
    if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
        raise ConversionError(f"{out_dir} exists and is not empty (pass overwrite=True / --overwrite)")
    return weights_path, vocab_file


def trained_window(src: str, max_positions: int) -> Tuple[int, str]:
    """(the window a checkpoint was trained with, where that came from): ``max_seq_length`` of its
    ``sentence_bert_config.json`` (what sentence-transformers truncates at), else its max positions (at most 512).

    Raises:
        ConversionError: a ``max_seq_length`` that is not an integer in 3..max positions.
    """
    path = os.path.join(src, SBERT_CONFIG)
    if not os.path.isfile(path):
        return min(max_positions, 512), "max positions"
    with open(path, encoding="utf-8") as f:
        n = json.load(f).get("max_seq_length")
    if not isinstance(n, int) or not 3 <= n <= max_positions:
        raise ConversionError(f"{path}: max_seq_length={n!r}; valid: an integer in 3..{max_positions} (max positions)")
    return n, SBERT_CONFIG


def recorded_window(encoder_path: str) -> Optional[Tuple[int, str]]:
    """(window, "conversion (<source>)") when ``encoder_path`` is the encoder/ folder of a conversion that recorded
    its trained window; else None."""
    manifest = os.path.join(os.path.dirname(os.path.normpath(encoder_path)), MANIFEST)
    if os.path.basename(os.path.normpath(encoder_path)) != "encoder" or not os.path.isfile(manifest):
        return None
    with open(manifest, encoding="utf-8") as f:
        info = json.load(f)
    n = info.get("seq_length")
    return (n, f"conversion ({info.get('seq_length_from')})") if isinstance(n, int) else None


def _file_sizes(root: str) -> Dict[str, int]:
    """Relative path -> size of every file (cheap integrity check for caches)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = os.path.getsize(full)
    return out


def verify(out_dir: str) -> Optional[str]:
    """None if ``out_dir`` is a complete conversion, else what is wrong with it."""
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.isfile(path):
        return f"{MANIFEST} is missing"
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        return f"{MANIFEST} is unreadable ({e})"
    if manifest.get("format") != FORMAT:
        return f"it was written by an older hubembed (format {manifest.get('format')}, now {FORMAT})"
    for rel, size in manifest.get("files", {}).items():  # sizes recorded before the manifest was written
        full = os.path.join(out_dir, rel)
        if not os.path.isfile(full):
            return f"{rel} is missing"
        if os.path.getsize(full) != size:
            return f"{rel} has {os.path.getsize(full)} bytes, expected {size}"
    return None


def preprocessor_source(path: str) -> Optional[Tuple[str, bool, str, Optional[int]]]:
    """(vocab file, do_lower_case, tokenizer flavour, default seq_length or None) when ``path`` is the preprocess/
    folder of a conversion: what ``save_preprocessor`` was given, so the same tokenizer can be rebuilt in memory.
    Else None. (Format 1 conversions tokenized as tensorflow_text does; before format 4 the default was 128.)"""
    path = os.path.normpath(path)
    manifest = os.path.join(os.path.dirname(path), MANIFEST)
    vocab = os.path.join(path, "assets", "vocab.txt")
    if os.path.basename(path) != "preprocess" or not (os.path.isfile(manifest) and os.path.isfile(vocab)):
        return None
    with open(manifest, encoding="utf-8") as f:
        info = json.load(f)
    if not str(info.get("format", "")).startswith(FORMAT.split("/")[0] + "/") or "do_lower_case" not in info:
        return None
    window = info.get("seq_length")
    return vocab, bool(info["do_lower_case"]), info.get("tokenizer", TENSORFLOW_TEXT), window


def _versions() -> dict:
    return versions("tensorflow", "tensorflow_text")
