"""Signature: what a loaded Hub encoder exports, read off the model itself.

Formats are detected, never assumed:

* ``tf2_dict``: ``encoder(dict, training=False) -> dict`` (BERT v3/v4 style), with or
  without ``encoder_outputs`` and an ``.mlm`` sub-object;
* ``tf2_list``: ``encoder([ids, mask, segment_ids]) -> [pooled, sequence]`` (v1/v2);
* ``tf1_hub``: a TF1 Hub module with ``tokens`` / ``tokenization_info`` / ``mlm`` signatures.

Keys, dtypes and shapes come from ``__call__``'s structured inputs and outputs
(or the TF1 signatures), not from the Keras-mangled ``serving_default``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from hubembed.errors import FormatError

MODEL_FORMATS = ("tf2_dict", "tf2_list", "tf1_hub")


@dataclass
class Signature:
    """What an encoder exports and what can be extracted from it.

    >>> sig = hubembed.inspect("minilm")          # doctest: +SKIP
    >>> sig.num_layers, sig.hidden_size, sig.has_encoder_outputs
    (6, 384, True)
    """

    handle: str
    path: str
    format: str
    inputs: List[dict]
    outputs: List[dict]
    num_layers: Optional[int]
    layers_from: str  # "encoder_outputs" | "variable names" | "registry" | "unknown"
    hidden_size: Optional[int]
    vocab_size: Optional[int]
    casing: Optional[str]
    max_positions: Optional[int]
    has_pooled_output: bool
    has_sequence_output: bool
    has_encoder_outputs: bool
    has_mlm: bool
    signatures: List[str]
    vocab_file: Optional[str]
    registry: Optional[dict] = None
    preprocessor: Optional[dict] = None
    extraction: dict = field(default_factory=dict)
    seq_length: Optional[int] = None  # the window hubembed packs (word pieces per row, [CLS]/[SEP] included)
    # "registry" (the trained maximum) | "conversion (sentence_bert_config.json)" | "max positions" | "given"
    seq_length_from: Optional[str] = None

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["preprocessor"] is not None:  # its seq_length is its own default, not the window: say so
            note = preprocessor_window(self.preprocessor, self.seq_length, "the top-level seq_length")
            out["preprocessor"]["seq_length_note"] = " ".join(note) if note else None
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def describe(self) -> str:
        """A readable multi-line summary (what `hubembed inspect` prints)."""
        lines = [f"{self.handle}", f"  path:            {self.path}", f"  format:          {self.format}"]
        if self.registry:
            lines.append(
                f"  registry:        {self.registry.get('name')} (family {self.registry.get('family')}, "
                f"version {self.registry.get('version')})"
            )
        lines.append(f"  layers:          {_na(self.num_layers)} (from {self.layers_from})")
        lines.append(f"  hidden size:     {_na(self.hidden_size)}")
        lines.append(f"  vocab size:      {_na(self.vocab_size)}")
        lines.append(f"  casing:          {_na(self.casing)}")
        lines.append(f"  max positions:   {_na(self.max_positions)}")
        if self.seq_length:
            lines.append(
                f"  seq_length:      {self.seq_length} (the window hubembed packs; from {self.seq_length_from})"
            )
        lines.append("  inputs:")
        lines += [f"    {t['name']:<22} {t['dtype']:<8} {t['shape']}" for t in self.inputs]
        lines.append("  outputs:")
        lines += [f"    {t['name']:<22} {t['dtype']:<8} {t['shape']}" for t in self.outputs]
        lines.append(f"  encoder_outputs: {'yes' if self.has_encoder_outputs else 'no'}")
        lines.append(f"  mlm:             {'yes' if self.has_mlm else 'no'}")
        if self.signatures:
            lines.append(f"  signatures:      {', '.join(self.signatures)}")
        if self.preprocessor:
            lines += self._describe_preprocessor()
        lines.append("  extraction:")
        lines += [f"    {k:<13} {v}" for k, v in self.extraction.items()]
        return "\n".join(lines)

    def _describe_preprocessor(self) -> List[str]:
        """The preprocessor's lines: its own default window only where it is not the one hubembed packs."""
        p = self.preprocessor or {}
        lines = [f"  preprocessor:    {p.get('source')} (paired by {p.get('paired_by')}; vocab {p.get('vocab_size')})"]
        note = preprocessor_window(p, self.seq_length, "seq_length above")
        if note and p.get("seq_length") != self.seq_length:  # one window shown: the other said not to be used
            lines += [f"                   {part}" for part in note]
        return lines


def preprocessor_window(preprocessor: Optional[dict], seq_length: Optional[int], where: str) -> Optional[List[str]]:
    """What the preprocessor's own ``seq_length`` is, next to the window hubembed packs (``seq_length``,
    which ``where`` names): [its own default, what hubembed does], or None when it declares none.

    hubembed packs every row itself to ``seq_length`` (``bert_pack_inputs``), so the length the preprocessor's
    ``__call__`` pads to when it runs alone (hub.KerasLayer on a preprocessing SavedModel) is never used.
    """
    own = (preprocessor or {}).get("seq_length")
    if own is None:
        return None
    built = str((preprocessor or {}).get("source") or "").startswith("built from")  # pp.from_vocab, in memory
    alone = "what it pads to when run alone" + ("" if built else ", as in hub.KerasLayer")
    first = f"its own default seq_length is {own} ({alone});"
    if seq_length is None:
        return [first, f"hubembed does not use it: it packs the window load() sets ({where})"]
    if own == seq_length:
        return [first, f"hubembed packs {seq_length} too ({where})"]
    return [first, f"hubembed does not use it: it packs {seq_length} ({where})"]


def _na(v: Any) -> str:
    return "unknown" if v is None else str(v)


def _spec(name: str, spec: Any) -> dict:
    shape = None if spec.shape.rank is None else [d for d in spec.shape.as_list()]
    return {"name": name, "dtype": spec.dtype.name, "shape": shape}


def _concrete(fn: Any) -> Any:
    """The inference (training=False) concrete function of a restored ``__call__``."""
    fns = list(getattr(fn, "concrete_functions", []) or [])
    if not fns:
        raise FormatError("the model's __call__ has no traced concrete functions")
    for cf in fns:
        kwargs = cf.structured_input_signature[1]
        if kwargs.get("training") is False:
            return cf
    for cf in fns:
        args = cf.structured_input_signature[0]
        if len(args) > 1 and args[1] is False:
            return cf
    return fns[0]


def detect_format(obj: Any, path: str) -> str:
    """One of MODEL_FORMATS; FormatError if ``obj`` is not a BERT-family encoder."""
    if hasattr(obj, "tokenize") and hasattr(obj, "bert_pack_inputs"):
        raise FormatError(
            f"{path} is a preprocessing model, not an encoder: pass it as "
            f"preprocess=... (CLI: --preprocess) next to an encoder handle"
        )
    sigs = getattr(obj, "signatures", {}) or {}
    if os.path.isfile(os.path.join(path, "tfhub_module.pb")) or (not callable(obj) and "tokens" in sigs):
        if "tokens" not in sigs:
            raise FormatError(
                f"{path} is a TF1 Hub module without a 'tokens' signature "
                f"(signatures: {sorted(sigs)}): not a BERT encoder"
            )
        return "tf1_hub"
    if not callable(obj) or not hasattr(obj, "__call__"):
        raise FormatError(
            f"{path} is a SavedModel that cannot be called and has no 'tokens' signature "
            f"(signatures: {sorted(sigs)}): not a BERT-family encoder"
        )
    cf = _concrete(obj.__call__)
    first = cf.structured_input_signature[0][0] if cf.structured_input_signature[0] else None
    outs = cf.structured_outputs
    if isinstance(first, dict):
        if not isinstance(outs, dict) or "sequence_output" not in outs:
            keys = sorted(outs) if isinstance(outs, dict) else type(outs).__name__
            raise FormatError(
                f"{path} takes a dict but returns {keys}: not a BERT-family encoder "
                f"(pooled_output/sequence_output expected)"
            )
        return "tf2_dict"
    if isinstance(first, (list, tuple)) and len(first) == 3 and isinstance(outs, (list, tuple)) and len(outs) == 2:
        return "tf2_list"
    raise FormatError(
        f"{path}: its __call__ takes {type(first).__name__} and returns "
        f"{type(outs).__name__}; not a BERT-family encoder call"
    )


def io_specs(obj: Any, fmt: str) -> Tuple[List[dict], List[dict]]:
    """(inputs, outputs) as lists of {name, dtype, shape}; encoder_outputs listed per layer."""
    if fmt == "tf1_hub":
        sig = obj.signatures["tokens"]
        ins = [_spec(k, v) for k, v in sorted(sig.structured_input_signature[1].items())]
        outs = [_spec(k, v) for k, v in sorted(sig.structured_outputs.items())]
        return ins, outs
    cf = _concrete(obj.__call__)
    first = cf.structured_input_signature[0][0]
    outs_struct = cf.structured_outputs
    if fmt == "tf2_list":
        names = ("input_word_ids", "input_mask", "segment_ids")
        ins = [_spec(getattr(s, "name", None) or names[i], s) for i, s in enumerate(first)]
        outs = [_spec("pooled_output", outs_struct[0]), _spec("sequence_output", outs_struct[1])]
        return ins, outs
    ins = [_spec(k, v) for k, v in sorted(first.items())]
    outs = []
    for k, v in sorted(outs_struct.items()):
        if isinstance(v, (list, tuple)):
            outs += [_spec(f"{k}[{i}]", t) for i, t in enumerate(v)]
        else:
            outs.append(_spec(k, v))
    return ins, outs


def variable_shapes(obj: Any) -> Dict[str, tuple]:
    """name -> shape of the model's variables (names without ':0')."""
    out = {}
    for v in getattr(obj, "variables", []) or []:
        out[v.name.split(":")[0]] = tuple(v.shape.as_list())
    return out


def layers_from_names(names: Iterable[str]) -> Optional[int]:
    """Number of Transformer blocks from variable names (layer_i / layer.i / layer_with_weights-i)."""
    idx = set()
    for n in names:
        m = re.search(r"(?:^|/)(?:transformer/)?layer[_.](\d+)/", n)
        if m:
            idx.add(int(m.group(1)))
    return max(idx) + 1 if idx else None


def _find_shape(shapes: Dict[str, tuple], *needles: str) -> Optional[tuple]:
    for needle in needles:
        for name, shape in shapes.items():
            if needle in name and len(shape) == 2:
                return shape
    return None


def tf1_tokenization_info(obj: Any, path: str) -> Tuple[Optional[str], Optional[bool]]:
    """(vocab_file, do_lower_case) from a TF1 module's tokenization_info signature."""
    sigs = obj.signatures
    if "tokenization_info" not in sigs:
        return None, None
    info = sigs["tokenization_info"]()
    vocab = info["vocab_file"].numpy().decode("utf-8")
    lower = bool(info["do_lower_case"].numpy())
    # The vocab path is not remapped on load: find the file by name under assets/.
    candidate = os.path.join(path, "assets", os.path.basename(vocab))
    return (candidate if os.path.isfile(candidate) else (vocab if os.path.isfile(vocab) else None)), lower


def vocab_and_casing(obj: Any, fmt: str, path: str) -> Tuple[Optional[str], Optional[bool]]:
    """(vocab_file path or None, do_lower_case or None) as the model itself declares them."""
    if fmt == "tf1_hub":
        return tf1_tokenization_info(obj, path)
    vocab = getattr(obj, "vocab_file", None)
    vocab_path = vocab.asset_path.numpy().decode("utf-8") if vocab is not None else None
    lower = getattr(obj, "do_lower_case", None)
    return vocab_path, (bool(lower.numpy()) if lower is not None else None)


def read_signature(obj: Any, path: str, handle: str, entry: Any = None) -> Signature:
    """Build the Signature of a loaded encoder."""
    fmt = detect_format(obj, path)
    ins, outs = io_specs(obj, fmt)
    out_names = {o["name"].split("[")[0] for o in outs}
    n_layer_outputs = sum(1 for o in outs if o["name"].startswith("encoder_outputs["))
    shapes = variable_shapes(obj)
    has_layers = n_layer_outputs > 0
    num_layers: Optional[int]
    if has_layers:
        num_layers, layers_from = n_layer_outputs, "encoder_outputs"
    elif layers_from_names(shapes):
        num_layers, layers_from = layers_from_names(shapes), "variable names"
    elif entry is not None and entry.layers:
        num_layers, layers_from = entry.layers, "registry"
    else:
        num_layers, layers_from = None, "unknown"
    seq = next((o for o in outs if o["name"] == "sequence_output"), None)
    hidden = seq["shape"][-1] if seq and seq["shape"] else None
    word = _find_shape(shapes, "word_embeddings")
    if hidden is None and entry is not None:
        hidden = entry.hidden_size
    pos = _find_shape(shapes, "position_embedding")
    vocab_file, lower = vocab_and_casing(obj, fmt, path)
    casing = None if lower is None else ("uncased" if lower else "cased")
    if casing is None and entry is not None:
        casing = entry.casing
    has_mlm = (fmt != "tf1_hub" and hasattr(obj, "mlm")) or (fmt == "tf1_hub" and "mlm" in obj.signatures)
    sig_names = sorted(obj.signatures) if getattr(obj, "signatures", None) is not None else []
    signature = Signature(
        handle=handle,
        path=path,
        format=fmt,
        inputs=ins,
        outputs=outs,
        num_layers=num_layers,
        layers_from=layers_from,
        hidden_size=hidden,
        vocab_size=word[0] if word else None,
        casing=casing,
        max_positions=pos[0] if pos else None,
        has_pooled_output="pooled_output" in out_names,
        has_sequence_output="sequence_output" in out_names,
        has_encoder_outputs=has_layers,
        has_mlm=bool(has_mlm),
        signatures=sig_names,
        vocab_file=vocab_file,
        registry=entry.to_dict() if entry is not None else None,
    )
    signature.extraction = extraction_summary(signature)
    return signature


def extraction_summary(sig: Signature) -> dict:
    """What can be extracted, in words."""
    L = sig.num_layers or 0  # set whenever encoder_outputs are exported (one per layer)
    out = {
        "pooled": "pooled_output" if sig.has_pooled_output else "not exported (use pooling='cls' or 'mean')",
        "tokens": "sequence_output (last layer)",
    }
    if sig.has_encoder_outputs:
        out["layers"] = f"all {L} Transformer blocks via encoder_outputs (layers=0..{L - 1}, or -{L}..-1)"
    else:
        out["layers"] = (
            "intermediate layers: not exported (only the last layer); the Model Garden fallback can rebuild them"
        )
    out["attention"] = "not exported; the Model Garden fallback can rebuild it"
    out["mlm"] = "mlm_logits" if sig.has_mlm else "not exported"
    return out
