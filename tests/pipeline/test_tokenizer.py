"""Tokenization fidelity: a converted model tokenizes exactly as the Hugging Face tokenizer it came from, a
tfhub.dev-style preprocessor exactly as tensorflow_text's BertTokenizer, and every word span slices its
whole word out of the original text. Checked on a fuzzed corpus (control, format, separator, private-use
and unassigned characters, accents, CJK, emoji, very long words in several scripts)."""

import os
import random

import numpy as np
import pytest
import tensorflow as tf

import hubembed
from hubembed._tokenizer import HUGGINGFACE, TENSORFLOW_TEXT, WordPiece

pytestmark = pytest.mark.slow
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ODD = {
    "control": "\x00\x01\x07\x08\x0b\x0c\x1b\x7f\x85\x9f",
    "format": "\u00ad\u200b\u200c\u200d\u200e\u2060\u2063\ufeff\U000e0001\u061c",
    "separator": "\u00a0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000",
    "private": "\ue000\uf8f9\uf8ff\U000f0000\U00100001",
    "unassigned": "\u0378\u0379\u05ff\ufdd0\ufffe\U0002fffe\U000e0080",
    "replacement": "\ufffd",
    "marks": "\u0301\u0308\u0327\u064b\u093f\u0e31",
    "whitespace": " \t\n\r",
}
WORDS = [
    "Hello",
    "World",
    "The",
    "café",
    "naïve",
    "Crème",
    "ŒUVRE",
    "Straße",
    "ΟΔΟΣ",
    "İstanbul",
    "ǅemal",
    "ﬁnance",
    "Ⅻ",
    "ＡＢＣ",
    "東京都",
    "𠀀𪜀",
    "한국어",
    "नमस्ते",
    "مرحبا",
    "привет",
    "😀",
    "👍🏽",
    "👩\u200d💻",
    "¿Qué?",
    "don't",
    "e-mail",
    "3.14159",
    "`\u1fef`",
    "〜",
]
LONG = ["x" * 99, "x" * 100, "x" * 101, "привет" * 9, "привет" * 17, "ελληνικά" * 13, "あ" * 120, "é" * 60]


def fuzzed(n: int, seed: int = 0):
    """n texts mixing real words, long words and odd characters, inside and between words."""
    rng = random.Random(seed)
    pool = "".join(ODD.values())
    texts = [f"a{c}b {c} {c}Hello{c}" for c in pool]  # every odd character alone, inside and around a word
    for _ in range(n - len(texts)):
        parts = []
        for _ in range(rng.randint(1, 8)):
            w = rng.choice(WORDS + LONG[:2]) if rng.random() < 0.9 else rng.choice(LONG)
            if rng.random() < 0.4:
                k = rng.randrange(len(w) + 1)
                w = w[:k] + rng.choice(pool) + w[k:]
            parts.append(w)
        texts.append(rng.choice(["", " ", "\u3000"]).join(parts) if rng.random() < 0.2 else " ".join(parts))
    return texts + ["Hello \u2029 my \ufe0f name is \u200c Chris", "\uf8f9", "привет" * 9 + " мир", ""]


def hf_ids(tokenizer, texts):
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def hf_minilm(minilm_source):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_source)


def test_minilm_tokenizes_like_its_hugging_face_tokenizer(minilm, hf_minilm):
    texts = fuzzed(1500)
    assert minilm.preprocessor.flavour == HUGGINGFACE
    ours = minilm.preprocessor.token_ids(texts)
    bad = [(t, a, b) for t, a, b in zip(texts, ours, hf_ids(hf_minilm, texts)) if a != b]
    assert not bad, f"{len(bad)} of {len(texts)} differ, e.g. {bad[:3]}"


def test_the_saved_preprocessor_of_a_conversion_tokenizes_the_same(minilm, hf_minilm, hubembed_cache):
    """The preprocess/ SavedModel (what TF Hub users load without hubembed) carries the same tokenization."""
    import tensorflow_text  # noqa: F401  (registers the ops)

    from hubembed import registry
    from hubembed._hub import embedded

    saved = tf.saved_model.load(embedded.path(registry.get("minilm-preprocess")))
    texts = fuzzed(300, seed=1)
    ours = saved.tokenize(tf.constant(texts)).merge_dims(-2, -1).to_list()
    assert ours == hf_ids(hf_minilm, texts)


def test_a_converted_cased_checkpoint_tokenizes_like_its_hugging_face_tokenizer(tmp_path):
    import json

    from transformers import AutoTokenizer, BertConfig, BertModel

    from hubembed._formats import writers
    from hubembed._formats.convert import convert

    src = tmp_path / "hf"
    src.mkdir()
    words = sorted({w for w in WORDS + ["x", "##x", "Hel", "##lo", "e", "##é"] if len(w) < 12})
    vocab = writers.write_tiny_vocab(str(src / "vocab.txt"), extra_words=words)
    n = sum(1 for _ in open(vocab, encoding="utf-8"))
    cfg = BertConfig(vocab_size=n, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(cfg).save_pretrained(str(src), safe_serialization=True)
    (src / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "tokenizer_class": "BertTokenizer"}))
    out = str(tmp_path / "converted")
    convert(str(src), out)
    enc = hubembed.load(out)
    assert (enc.preprocessor.flavour, enc.preprocessor.lower_case) == (HUGGINGFACE, False)
    texts = fuzzed(800, seed=2)
    ref = hf_ids(AutoTokenizer.from_pretrained(str(src)), texts)
    assert len({i for row in ref for i in row}) > 20  # the vocabulary covers enough to tell tokenizers apart
    bad = [(t, a, b) for t, a, b in zip(texts, enc.preprocessor.token_ids(texts), ref) if a != b]
    assert not bad, f"{len(bad)} of {len(texts)} differ, e.g. {bad[:3]}"


@pytest.mark.parametrize("lower_case", [True, False])
def test_the_tensorflow_text_flavour_is_tensorflow_texts_bert_tokenizer(minilm_source, lower_case):
    """tfhub.dev's preprocessors stay the reference for Hub encoders: that flavour equals BertTokenizer."""
    import tensorflow_text as text

    vocab = [line.rstrip("\n") for line in open(os.path.join(minilm_source, "vocab.txt"), encoding="utf-8")]
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64))
    table = tf.lookup.StaticHashTable(init, -1)
    ref = text.BertTokenizer(table, lower_case=lower_case, token_out_type=tf.int64, max_bytes_per_word=100)
    ours = WordPiece(table, lower_case, TENSORFLOW_TEXT)
    texts = tf.constant(fuzzed(1000, seed=3))
    assert ours.tokenize(texts).to_list() == ref.tokenize(texts).to_list()


def _hf_word_spans(tokenizer, text):
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = {}
    for w, (s, e) in zip(enc.word_ids(), enc["offset_mapping"]):
        a, b = spans.get(w, (s, e))
        spans[w] = (min(a, s), max(b, e))
    return [spans[w] for w in sorted(spans)]


def test_word_spans_cover_whole_words_and_match_hugging_face(minilm, hf_minilm):
    out = minilm.embed_words(["x" * 150 + " end"])[0]
    assert out.words == ["x" * 150, "end"] and out.spans.tolist() == [[0, 150], [151, 154]]
    texts = fuzzed(300, seed=4)
    words = minilm.embed_words(texts, max_tokens=None, batch_size=64)
    for text, w in zip(texts, words):
        assert all(text[s:e] == word for word, (s, e) in zip(w.words, w.spans))
        assert w.spans.tolist() == [list(p) for p in _hf_word_spans(hf_minilm, text)][: len(w.words)], text


def test_flairs_odd_texts_now_embed_as_sentence_transformers_does(minilm, minilm_source):
    from sentence_transformers import SentenceTransformer

    texts = ["Hello \u2029 my \ufe0f name is \u200c Chris", "\uf8f9", "привет" * 9 + " мир"]
    st = SentenceTransformer(minilm_source, device="cpu").encode(texts, normalize_embeddings=True)
    ours = minilm.embed(texts, pooling="mean", normalize=True)
    assert np.sum(st * ours, axis=1).min() > 0.9999
