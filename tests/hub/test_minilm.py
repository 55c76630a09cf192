"""The embedded default (all-MiniLM-L6-v2 converted to the Hub format) against the PyTorch reference."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hubembed import registry
from hubembed._formats import convert
from hubembed._hub import embedded

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow

TEXTS = [
    "A man is playing a guitar.",
    "Short.",
    "The quick brown fox jumps over the lazy dog, while the café's naïve owner serves crème brûlée.",
    "東京は日本の首都です。 Emoji too 😀🎉 and numbers 3.14159 and URLs http://example.com/x?y=1",
    " ".join(["A much longer text that goes on"] * 12),
]


@pytest.fixture(scope="module")
def hf_tokenizer(minilm_source):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_source)


@pytest.fixture(scope="module")
def torch_model(minilm_source):
    from transformers import BertModel

    model = BertModel.from_pretrained(minilm_source)
    model.eval()
    return model


def test_inspect_minilm_json(minilm, hubembed_cache, capsys):
    from hubembed.cli import main

    assert main(["inspect", "minilm", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["num_layers"] == 6 and d["layers_from"] == "encoder_outputs"
    assert d["hidden_size"] == 384
    assert d["vocab_size"] == 30522
    assert d["casing"] == "uncased"
    assert d["max_positions"] == 512
    assert d["has_encoder_outputs"] is True and d["has_mlm"] is False
    assert d["format"] == "tf2_dict"
    assert d["preprocessor"]["source"] == "minilm-preprocess"
    assert d["preprocessor"]["paired_by"] == "registry"
    assert d["preprocessor"]["seq_length"] == 256  # the conversion's preprocess/ pads to the window (issue 29)
    assert d["preprocessor"]["vocab_size"] == 30522
    assert d["registry"]["name"] == "minilm"
    assert [o["name"] for o in d["outputs"]].count("pooled_output") == 1
    assert sum(o["name"].startswith("encoder_outputs[") for o in d["outputs"]) == 6


def test_readable_inspect_output(minilm, capsys):
    from hubembed.cli import main

    assert main(["inspect", "minilm"]) == 0
    out = capsys.readouterr().out
    assert "layers:          6 (from encoder_outputs)" in out
    assert "minilm-preprocess (paired by registry; vocab 30522)" in out
    assert "seq_length:      256 (the window hubembed packs; from registry)" in out
    assert "its own default seq_length" not in out  # one window: the preprocessor's default is the same


def test_tokens_equal_hugging_face(minilm, hf_tokenizer, stsb_sentences):
    texts = stsb_sentences + TEXTS + ["Ünïcödé ÀÉÎÕÜ façade", "Ça va? Schön! Пример текста", "안녕하세요 世界"]
    ours = minilm.preprocessor.token_ids(texts)
    ref = hf_tokenizer(texts, add_special_tokens=False)["input_ids"]
    mismatches = [t for t, a, b in zip(texts, ours, ref) if a != b]
    assert mismatches == []
    assert len(texts) > 2700 and sum(len(r) for r in ours) > 25000


def test_packing_matches_hugging_face_special_tokens(minilm, hf_tokenizer):
    out = minilm.encode(TEXTS)
    ref = hf_tokenizer(TEXTS, padding=True, return_tensors="np")
    np.testing.assert_array_equal(out.token_ids, ref["input_ids"])
    np.testing.assert_array_equal(out.mask, ref["attention_mask"])


def test_converted_encoder_through_tensorflow_hub_matches_pytorch(minilm, hf_tokenizer, torch_model):
    """Every layer, unmasked positions, max |diff| <= 1e-4; loaded with plain hub.load."""
    import tensorflow as tf
    import tensorflow_hub as hub
    import torch

    enc = hub.load(minilm.signature.path)
    batch = hf_tokenizer(TEXTS, padding=True, return_tensors="np")
    out = enc(
        {
            "input_word_ids": tf.constant(batch["input_ids"], tf.int32),
            "input_mask": tf.constant(batch["attention_mask"], tf.int32),
            "input_type_ids": tf.constant(batch["token_type_ids"], tf.int32),
        },
        training=False,
    )
    with torch.no_grad():
        ref = torch_model(**{k: torch.tensor(v) for k, v in batch.items()}, output_hidden_states=True)
    mask = batch["attention_mask"].astype(bool)
    assert len(out["encoder_outputs"]) == len(ref.hidden_states) - 1 == 6
    worst = 0.0
    for i, layer in enumerate(out["encoder_outputs"]):
        # hubembed layer i == Hugging Face hidden_states[i + 1] (hidden_states[0] is the embeddings)
        diff = np.abs(layer.numpy()[mask] - ref.hidden_states[i + 1].numpy()[mask]).max()
        worst = max(worst, diff)
        assert diff <= 1e-4, f"layer {i}: max |diff| {diff}"
    assert np.abs(out["pooled_output"].numpy() - ref.pooler_output.numpy()).max() <= 1e-4
    np.testing.assert_array_equal(out["sequence_output"].numpy(), out["encoder_outputs"][-1].numpy())
    print(f"max |diff| over 6 layers: {worst:.2e}")


def test_embed_mean_matches_sentence_transformers(minilm, minilm_source):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(minilm_source, device="cpu")
    raw = SentenceTransformer(modules=[st[0], st[1]], device="cpu")  # without Normalize
    ref = raw.encode(TEXTS, batch_size=2, convert_to_numpy=True)
    ours = minilm.embed(TEXTS, pooling="mean", batch_size=2)
    assert np.abs(ours - ref).max() <= 1e-4
    normed = minilm.embed(TEXTS, pooling="mean", normalize=True)
    assert np.abs(normed - st.encode(TEXTS, convert_to_numpy=True)).max() <= 1e-4


def test_embedded_cache_is_reused(minilm, hubembed_cache):
    entry = registry.get("minilm")
    target = embedded.conversion_dir(entry)
    manifest = os.path.join(target, convert.MANIFEST)
    before = os.stat(manifest).st_mtime_ns
    assert embedded.ensure(entry) == target
    assert os.stat(manifest).st_mtime_ns == before
    with open(manifest) as f:
        m = json.load(f)
    assert m["source_sha256"] == entry.source["sha256"]
    assert m["config"]["num_layers"] == 6 and m["do_lower_case"] is True


def _convert_in_subprocess(cache, n):
    code = "import hubembed, sys; e = hubembed.load('minilm'); print(e.embed(['a test sentence'])[0, :3].tolist())"
    env = dict(os.environ, HUBEMBED_CACHE=cache, TF_CPP_MIN_LOG_LEVEL="3")
    return [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(n)
    ]


def test_two_processes_converting_at_once_and_corrupt_cache_rebuilt(tmp_path):
    cache = str(tmp_path / "cache")
    procs = _convert_in_subprocess(cache, 2)
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert outs[0][0] == outs[1][0]
    entry = registry.get("minilm")
    target = os.path.join(cache, os.path.basename(embedded.conversion_dir(entry)))
    assert convert.verify(target) is None
    assert [n for n in os.listdir(cache) if n.startswith(".converting-")] == []
    # Corrupt it: truncate the variables file. It must be detected and rebuilt.
    var = os.path.join(target, "encoder", "variables", "variables.data-00000-of-00001")
    with open(var, "r+b") as f:
        f.truncate(1000)
    assert "variables.data-00000-of-00001 has 1000 bytes" in convert.verify(target)
    procs = _convert_in_subprocess(cache, 1)
    out, err = procs[0].communicate(timeout=600)
    assert procs[0].returncode == 0, err[-2000:]
    assert out == outs[0][0]
    assert "rebuilding" in err
    assert convert.verify(target) is None


def test_converted_preprocessor_rebuilt_in_memory_tokenizes_like_its_savedmodel(minilm, stsb_sentences):
    """minilm's preprocess/ folder is rebuilt in memory from its vocab and casing (no SavedModel restore, no
    trace): the same ids as the SavedModel it was saved as, on real sentences and awkward characters."""
    import tensorflow as tf

    from hubembed._hub.preprocess import ragged_rows

    pre = minilm.preprocessor
    assert pre.paired_by == "registry" and hasattr(pre.module, "tokenize_eagerly")
    saved = tf.saved_model.load(os.path.join(os.path.dirname(minilm.signature.path), "preprocess"))
    odd = [
        "Hello \u2029 my \ufe0f name is \u200c Chris",
        "\uf8f9",
        "привет" * 9 + " мир",
        "ÀÉÎÕÜ çà et là",
        "東京 😀 \t\n x\u0301",
        "",
        "   ",
        "a" * 300,
        "x" * 99 + "é",
        "\x00\x07 control",
    ]
    texts = stsb_sentences[:500] + TEXTS + odd
    ours = pre.token_ids(texts)
    theirs = [r.tolist() for r in ragged_rows(saved.tokenize(tf.constant(texts)))]
    assert ours == theirs
    special = {k: int(v.numpy()) for k, v in saved.tokenize.get_special_tokens_dict().items()}
    assert pre.special == special
    assert pre.seq_length == int(saved(tf.constant(["x"]))["input_word_ids"].shape[1])


def test_loading_minilm_imports_only_what_the_job_needs(hubembed_cache):
    """Process start to the first vector: no tensorflow_hub import (a local TF2 SavedModel is what hub.load
    would hand to tf.saved_model.load), no SavedModel restore for the converted preprocessor."""
    code = (
        "import sys, hubembed; enc = hubembed.load('minilm'); v = enc.embed(['a text']); "
        "print(v.shape, 'tensorflow_hub' in sys.modules, type(enc.preprocessor.module).__name__)"
    )
    env = dict(os.environ, HUBEMBED_CACHE=hubembed_cache, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "(1, 384) False BertPreprocessor"


def test_the_default_window_is_the_trained_one_so_long_texts_match_sentence_transformers(minilm, minilm_source):
    """minilm was trained with 256 word pieces (sentence-transformers' max_seq_length): the registry says so,
    hubembed packs windows of 256 by default, inspect shows it, and a long text (truncated by
    sentence-transformers) embeds as sentence-transformers embeds it."""
    from sentence_transformers import SentenceTransformer

    assert minilm.seq_length == 256 and minilm.signature.seq_length == 256
    assert minilm.signature.seq_length_from == "registry"
    st = SentenceTransformer(minilm_source, device="cpu")
    assert st.max_seq_length == 256
    text = " ".join(TEXTS * 40)
    assert len(minilm.preprocessor.token_ids([text])[0]) > 300
    ref = st.encode([text], convert_to_numpy=True)
    ours = minilm.embed([text], long="truncate", normalize=True)
    assert float(ours[0] @ ref[0]) > 0.99999


def test_readable_inspect_shows_the_window_used(minilm, capsys):
    from hubembed.cli import main

    assert main(["inspect", "minilm"]) == 0
    assert "seq_length:      256 (the window hubembed packs; from registry)" in capsys.readouterr().out


def _random_ops(concrete) -> set:
    graphs = [concrete.graph.as_graph_def()]
    ops = {n.op for n in graphs[0].node}
    ops |= {n.op for f in graphs[0].library.function for n in f.node_def}
    return {op for op in ops if "Random" in op}


def test_fine_tuning_the_converted_encoder_applies_its_dropout(minilm, hubembed_cache):
    """As Model Garden's exports and Hugging Face: dropout (config.json's rates, 0.1 for MiniLM) when
    called with training=True; the inference function has no random op, so its outputs do not move."""
    import tensorflow as tf

    from hubembed import keras as hk

    folder = embedded.conversion_dir(registry.get("minilm"))
    with open(os.path.join(folder, convert.MANIFEST), encoding="utf-8") as f:
        cfg = json.load(f)["config"]
    assert (cfg["hidden_dropout"], cfg["attention_dropout"]) == (0.1, 0.1)
    layer = hk.flavour("keras3").HubFeatureLayer("minilm", trainable=True, pooling="mean")
    x = tf.constant(np.array(TEXTS, dtype=object))
    a, b = (np.asarray(layer(x, training=True)) for _ in range(2))
    assert np.abs(a - b).max() > 1e-2
    c, d = (np.asarray(layer(x, training=False)) for _ in range(2))
    np.testing.assert_array_equal(c, d)
    np.testing.assert_allclose(c, minilm.embed(TEXTS, pooling="mean"), atol=1e-5)
    calls = {fn.structured_input_signature[0][1]: fn for fn in minilm.obj.__call__.concrete_functions}
    assert _random_ops(calls[True]) and not _random_ops(calls[False])


def test_pre_tokenized_words_match_hugging_face_is_split_into_words(minilm, hf_tokenizer, torch_model):
    """The caller's own words in (NER-style), one vector per given word: the mean of its pieces' last-layer
    vectors, as Hugging Face's is_split_into_words + word_ids give them; a word with no piece is named."""
    import torch

    words = [["New", "York", "is", "big", "!"], ["Straße", "\u200b", "naïve", "don't", "東京"], ["x" * 120, "end"]]
    ours = minilm.embed_words(words, split_into_words=True, subword="mean")
    enc = hf_tokenizer(words, is_split_into_words=True, return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = torch_model(**enc).last_hidden_state.numpy()
    for i, we in enumerate(ours):
        ids = enc.word_ids(i)
        assert we.words == words[i] and we.vectors.shape == (len(words[i]), 384)
        for k in range(len(words[i])):
            rows = [j for j, w in enumerate(ids) if w == k]
            if not rows:
                assert k in we.no_piece and not we.vectors[k].any()
                continue
            np.testing.assert_allclose(we.vectors[k], hidden[i, rows].mean(axis=0), atol=1e-4)
        assert all(" ".join(words[i])[s:e] == w for w, (s, e) in zip(we.words, we.spans))
    assert ours[1].no_piece == [1]  # the zero-width space yields no piece
    with pytest.raises(Exception, match="row 0: split_into_words=True takes a list of words"):
        minilm.embed_words(["not a list"], split_into_words=True)
