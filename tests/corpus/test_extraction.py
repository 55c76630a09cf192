"""Extraction core on the tiny models: layer specs, combinations, pooling, windows, pairs, words, bad input."""

import logging

import numpy as np
import pytest

import hubembed
from hubembed._pipeline import batching, layers, pooling
from hubembed.errors import InputError

WORDS = (
    "the a an is was be to of and in on at it this that with for as by from hello world good bad movie film "
    "great terrible love hate cat dog sat mat quick brown fox jumps over lazy day night sun moon"
).split()
TEXTS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog",
    "a",
    "good movie , great film !",
    "the cat sat on the mat with the dog",
    "night",
]


@pytest.fixture(scope="module")
def enc(tiny_encoders):
    return tiny_encoders["tf2_dict"]


# -- layer specs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec,expected",
    [
        (-1, [5]),
        (0, [0]),
        (-6, [0]),
        ([0, 4, -1], [0, 4, 5]),
        ("-4:", [2, 3, 4, 5]),
        ("2:4", [2, 3]),
        (":2", [0, 1]),
        ("all", [0, 1, 2, 3, 4, 5]),
        ("3", [3]),
        (" ALL ", [0, 1, 2, 3, 4, 5]),
        ("embeddings", ["embeddings"]),
        (["embeddings", 0], ["embeddings", 0]),
        (range(2), [0, 1]),
    ],
)
def test_layer_specs(spec, expected):
    assert layers.select(spec, 6) == expected


@pytest.mark.parametrize(
    "spec,msg",
    [
        (6, r"layer 6 requested; this encoder has 6 layers \(valid: -6..5"),
        (-7, "layer -7 requested"),
        ([0, 9], "layer 9 requested"),
        ("5:2", "selects no layer"),
        ("first", "is not a layer spec"),
        ([], "selects nothing"),
        (True, "valid: -6..5"),
        (1.5, "is not a layer spec"),
        (["x"], "contains 'x'"),
    ],
)
def test_bad_layer_specs(spec, msg):
    with pytest.raises(InputError, match=msg):
        layers.select(spec, 6)


def test_combinations():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 5, 4)).astype(np.float32)  # [k, B, S, H]
    assert layers.Combine.make("concat", 3).apply(x).shape == (2, 5, 12)
    np.testing.assert_allclose(layers.Combine.make("mean", 3).apply(x), x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(layers.Combine.make("sum", 3).apply(x), x.sum(0), rtol=1e-6)
    assert layers.Combine.make("none", 3).apply(x).shape == (2, 5, 3, 4)
    w = [0.5, -1.0, 2.0]
    np.testing.assert_allclose(
        layers.Combine.make("weighted", 3, w).apply(x), 0.5 * x[0] - x[1] + 2 * x[2], rtol=1e-5, atol=1e-6
    )
    sm = np.exp(w) / np.exp(w).sum()
    np.testing.assert_allclose(
        layers.Combine.make("scalar_mix", 3, w, gamma=2.0).apply(x),
        2.0 * np.tensordot(sm, x, axes=(0, 0)),
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(InputError, match="needs weights="):
        layers.Combine.make("weighted", 3)
    with pytest.raises(InputError, match="2 weights for 3 selected layers"):
        layers.Combine.make("scalar_mix", 3, [1, 2])
    with pytest.raises(InputError, match="valid: none, concat, mean, sum, weighted, scalar_mix"):
        layers.Combine.make("avg", 3)


def test_embed_layers_and_combine_against_encode(tiny_encoders):
    enc = tiny_encoders["tf2_dict"]
    out = enc.encode(TEXTS)
    m = out.mask[..., None].astype(np.float32)
    mean_of = lambda seq: (seq * m).sum(1) / m.sum(1)  # noqa: E731
    for i in range(3):
        np.testing.assert_allclose(enc.embed(TEXTS, layers=i), mean_of(out.layers[i]), atol=1e-5)
    np.testing.assert_allclose(enc.embed(TEXTS, layers="all", combine="mean"), mean_of(out.layers.mean(0)), atol=1e-5)
    cat = enc.embed(TEXTS, layers=[0, 2], combine="concat", pooling="cls")
    np.testing.assert_allclose(cat, np.concatenate([out.layers[0][:, 0], out.layers[2][:, 0]], 1), atol=1e-5)
    assert enc.embed(TEXTS, layers="all", combine="none").shape == (len(TEXTS), 3, 16)
    np.testing.assert_allclose(enc.embed(TEXTS, pooling="pooled"), out.pooled, atol=1e-6)


# -- pooling -----------------------------------------------------------------------------------------------
def test_pooling_is_masked_and_special_tokens_optional(enc):
    out = enc.encode(TEXTS)
    seq, mask = out.sequence, out.mask.astype(bool)
    content = mask.copy()
    content[:, 0] = False
    content[np.arange(len(TEXTS)), mask.sum(1) - 1] = False  # [SEP]
    for t in range(len(TEXTS)):
        real, body = seq[t][mask[t]], seq[t][content[t]]
        row = lambda **kw: enc.embed([TEXTS[t]], **kw)[0]  # noqa: E731
        np.testing.assert_allclose(enc.embed(TEXTS, pooling="mean")[t], real.mean(0), atol=1e-5)
        np.testing.assert_allclose(row(pooling="mean", special_tokens=False), body.mean(0), atol=1e-5)
        np.testing.assert_allclose(row(pooling="max"), real.max(0), atol=1e-5)
        np.testing.assert_allclose(row(pooling="max", special_tokens=False), body.max(0), atol=1e-5)
        np.testing.assert_allclose(row(pooling="mean_max"), np.concatenate([real.mean(0), real.max(0)]), atol=1e-5)
        np.testing.assert_allclose(row(pooling="mean_sqrt_len"), real.sum(0) / np.sqrt(len(real)), atol=1e-5)
        np.testing.assert_allclose(row(pooling="cls"), seq[t, 0], atol=1e-5)
        flat = (out.layers[0][t] + out.layers[-1][t]) / 2
        np.testing.assert_allclose(row(pooling="first_last_avg"), flat[mask[t]].mean(0), atol=1e-5)


def test_pooling_does_not_mutate_input():
    x = np.arange(24, dtype=np.float32).reshape(1, 6, 4)
    before = x.copy()
    pooling.pool(x, np.array([[1, 1, 1, 0, 0, 0]]), np.zeros((1, 6), bool), "max")
    np.testing.assert_array_equal(x, before)


def test_pooling_errors_and_normalize(enc):
    with pytest.raises(
        InputError, match="valid: cls, pooled, mean, max, mean_max, mean_sqrt_len, weightedmean, first_last_avg"
    ):
        enc.embed(TEXTS, pooling="avg")
    with pytest.raises(InputError, match="first_last_avg' chooses its layers itself"):
        enc.embed(TEXTS, pooling="first_last_avg", layers=1)
    v = enc.embed(TEXTS, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_formats_without_encoder_outputs_give_last_layer_only_from_the_hub(tiny_models, tiny_encoders):
    import hubembed

    ref = tiny_encoders["tf2_dict"].embed(TEXTS, layers=-1)
    for kind in ("tf2_dict_no_layers", "tf2_list", "tf1_hub"):
        e = hubembed.load(tiny_models[kind], backend="hub")
        np.testing.assert_allclose(e.embed(TEXTS, layers=2), ref, atol=2e-5)
        with pytest.raises(InputError, match="does not export encoder_outputs.*Model Garden fallback"):
            e.embed(TEXTS, layers=0)
        assert e.encode(TEXTS).layers is None
    hub_only = hubembed.load(tiny_models["tf2_dict"], backend="hub")
    with pytest.raises(InputError, match="'embeddings'.*Model Garden fallback"):
        hub_only.embed(TEXTS, layers="embeddings")
    with pytest.raises(InputError, match="attention probabilities.*backend='auto' or 'garden'"):
        hub_only.embed(TEXTS, pooling="attention")
    with pytest.raises(InputError, match="backend='fast'; valid: auto, hub, garden"):
        hubembed.load(tiny_models["tf2_dict"], backend="fast")


# -- batching ----------------------------------------------------------------------------------------------
def test_results_do_not_depend_on_batch_size_or_neighbours(enc):
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(0, 25))) for _ in range(40)]
    ref = enc.embed(texts, batch_size=1)
    for bs, mt in ((32, None), (7, None), (64, 64)):
        np.testing.assert_allclose(enc.embed(texts, batch_size=bs, max_tokens=mt), ref, atol=1e-5)
    perm = rng.permutation(len(texts))
    np.testing.assert_allclose(enc.embed([texts[i] for i in perm]), ref[perm], atol=1e-5)


def test_plan_sorts_by_length_and_respects_budgets():
    rows = [batching.Row(i, np.zeros(n, np.int32)) for i, n in enumerate([30, 2, 9, 17, 5, 30, 1, 12])]
    batches = batching.plan(rows, batch_size=3, max_tokens=64, seq_length=40, bucket=8)
    assert sorted(np.concatenate(batches).tolist()) == list(range(8))
    lengths = [[rows[i].length for i in b] for b in batches]
    flat = [n for b in lengths for n in b]
    assert flat == sorted(flat)
    for b in lengths:
        assert len(b) <= 3 and batching.round_up(max(b), 8, 40) * len(b) <= 64
    with pytest.raises(InputError, match="max_tokens=16 is smaller than one row"):
        batching.plan(rows, batch_size=3, max_tokens=16, seq_length=40)


def test_packing_is_padded_to_each_batch_and_bucketed(enc):
    rows = [batching.Row(0, np.array([10, 11, 12], np.int32)), batching.Row(1, np.array([13], np.int32))]
    assert batching.pack(rows, enc.preprocessor.special, 64)[0].shape == (2, 5)  # exact by default
    ids, mask, types, special = batching.pack(rows, enc.preprocessor.special, 64, bucket=8)
    assert ids.shape == (2, 8)
    assert ids[0, :5].tolist() == [2, 10, 11, 12, 3] and mask[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert special[0].tolist() == [True, False, False, False, True, False, False, False]


# -- long documents ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,size,stride", [(25, 10, 5), (100, 30, 10), (31, 10, 9), (11, 10, 0), (57, 8, 3)])
def test_windows_tile_and_give_each_token_its_most_context(n, size, stride):
    ws = batching.windows(n, size, stride)
    assert ws[0][0] == 0 and ws[-1][1] == n
    kept = np.concatenate([np.arange(lo, hi) for _, _, lo, hi in ws])
    np.testing.assert_array_equal(kept, np.arange(n))  # each token exactly once, in order
    for s, e, lo, hi in ws:
        assert e - s == size and s <= lo <= hi <= e
        for p in range(lo, hi):
            best = max(min(p - s2, e2 - 1 - p) for s2, e2, _, _ in ws if s2 <= p < e2)
            assert min(p - s, e - 1 - p) == best


def test_long_text_windows_stitch_exactly_without_overlap(tiny_models):
    enc = hubembed.load(tiny_models["tf2_dict"], seq_length=12)  # 10 content tokens a window
    words = [WORDS[i % len(WORDS)] for i in range(30)]  # one token each
    tt = enc.embed_tokens([" ".join(words)], stride=0)[0]
    assert tt.n_windows == 3 and len(tt.tokens) == 30
    chunks = enc.embed_tokens([" ".join(words[i : i + 10]) for i in (0, 10, 20)])
    np.testing.assert_allclose(tt.vectors, np.concatenate([c.vectors for c in chunks]), atol=1e-5)


def test_long_texts_are_flagged_never_silent(tiny_models, caplog):
    enc = hubembed.load(tiny_models["tf2_dict"], seq_length=12)
    long_text = " ".join(WORDS[:25])
    texts = ["hello world", long_text, "", "   "]
    v, info = enc.embed(texts, return_info=True)
    assert info.split_rows == [1] and info.n_windows[1] == 4 and info.truncated_rows == []
    assert info.empty_rows == [2, 3]
    assert "1 split into windows" in info.summary() and "2 empty" in info.summary()
    with caplog.at_level(logging.WARNING, logger="hubembed"):
        vt, info_t = enc.embed(texts, long="truncate", return_info=True)
    assert info_t.truncated_rows == [1] and info_t.truncated[1] == 15
    assert "1 truncated (rows 1; up to 15 tokens dropped)" in caplog.text
    np.testing.assert_allclose(vt[1], enc.embed([" ".join(WORDS[:10])])[0], atol=1e-5)
    assert not np.allclose(v[1], vt[1])
    with pytest.raises(InputError, match="stride=10: the overlap of windows must be in 0..9"):
        enc.embed(texts, stride=10)
    with pytest.raises(InputError, match="long='drop'"):
        enc.embed(texts, long="drop")


def test_encode_stitches_long_texts(tiny_models):
    enc = hubembed.load(tiny_models["tf2_dict"], seq_length=12)
    out = enc.encode(["hello", " ".join(WORDS[:25])])
    assert out.sequence.shape == (2, 27, 16) and out.layers.shape == (3, 2, 27, 16)
    assert out.mask.sum(1).tolist() == [3, 27]
    assert out.info.split_rows == [1]


# -- pairs -------------------------------------------------------------------------------------------------
def test_pairs_pack_like_the_preprocessor(tiny_models):
    """[CLS] a [SEP] b [SEP], type ids, round-robin truncation: equal to bert_pack_inputs (tensorflow_text)."""
    enc = hubembed.load(tiny_models["tf2_dict"], seq_length=12)
    pairs = [
        ("hello world", "the cat sat"),
        (" ".join(WORDS[:9]), "good"),
        ("a", " ".join(WORDS[:12])),
        (" ".join(WORDS[:8]), " ".join(WORDS[10:20])),
        ("", ""),
    ]
    out = enc.encode(pairs)
    pre = enc.preprocessor
    for t, (a, b) in enumerate(pairs):
        ref = pre.pack([pre.tokenize([a]), pre.tokenize([b])], 12)
        n = int(out.mask[t].sum())
        assert out.token_ids[t, :n].tolist() == ref["input_word_ids"].numpy()[0, :n].tolist()
        assert out.type_ids[t, :n].tolist() == ref["input_type_ids"].numpy()[0, :n].tolist()
        assert n == int(ref["input_mask"].numpy().sum())
    assert out.info.truncated_rows == [1, 2, 3]
    v = enc.embed(pairs, pooling="cls")
    np.testing.assert_allclose(v, out.sequence[:, 0], atol=1e-5)
    assert not np.allclose(enc.embed([("hello world", "the cat sat")]), enc.embed([("the cat sat", "hello world")]))


# -- bad input ---------------------------------------------------------------------------------------------
def test_empty_list_gives_empty_array_of_the_right_width(enc):
    assert enc.embed([]).shape == (0, 16)
    assert enc.embed([], pooling="mean_max").shape == (0, 32)
    assert enc.embed([], layers=[0, 1], combine="concat").shape == (0, 32)
    assert enc.embed_words([]) == [] and enc.embed_tokens([]) == []
    out = enc.encode([])
    assert out.sequence.shape[0] == 0 and out.pooled.shape == (0, 16)


@pytest.mark.parametrize(
    "texts,msg",
    [
        (["ok", None], "row 1: expected a string, got NoneType"),
        (["ok", 3], "row 1: expected a string, got int"),
        ([b"\xff\xfe"], "row 0: bytes that are not valid UTF-8"),
        ([("a", "b"), "c"], "row 1: mix of single texts and"),
        ([("a", None)], "row 0 \\(second of pair\\)"),
        ([("a", "b", "c")], "a pair must have 2 texts"),
    ],
)
def test_bad_rows_are_named(enc, texts, msg):
    with pytest.raises(InputError, match=msg):
        enc.embed(texts)


def test_unusual_text_works(enc):
    texts = [
        "",
        "   ",
        "\t\n",
        "Café naïve ÉCOLE",
        "日本語 😀 🎉",
        "ctrl\x00\x07\x1b chars",
        "\u200b\u202eRTL \u05e9\u05dc",
        "e\u0301\u0301",
        "\ufffd",
        b"bytes ok",
    ]
    v, info = enc.embed(texts, return_info=True)
    assert v.shape == (len(texts), 16) and np.isfinite(v).all()
    assert info.empty_rows[:3] == [0, 1, 2]
    np.testing.assert_allclose(v[-1], enc.embed(["bytes ok"])[0], atol=1e-6)
    np.testing.assert_allclose(v[0], v[1], atol=1e-6)  # empty and whitespace: only [CLS]/[SEP]


# -- tokens and words --------------------------------------------------------------------------------------
def test_embed_tokens_gives_pieces_spans_and_vectors(enc):
    text = "Unbelievable embeddings, hello World!"
    te = enc.embed_tokens([text])[0]
    out = enc.encode([text])
    n = len(te.tokens)
    assert te.tokens[:2] == ["un", "##believ"] and n == int(out.mask.sum()) - 2
    np.testing.assert_allclose(te.vectors, out.sequence[0, 1 : n + 1], atol=1e-5)
    assert [text[s:e] for s, e in te.spans][:4] == ["Un", "believ", "able", "emb"]


@pytest.mark.parametrize("subword", ["first", "last", "mean", "max", "first_last"])
def test_embed_words_from_subwords(enc, subword):
    text = "Unbelievable  embeddings, CAFÉ 日本 x"
    we = enc.embed_words([text], subword=subword)[0]
    te = enc.embed_tokens([text])[0]
    assert we.words == ["Unbelievable", "embeddings", ",", "CAFÉ", "日", "本", "x"]
    assert [text[s:e] for s, e in we.spans] == we.words
    pieces = te.vectors[:3]  # un ##believ ##able
    expected = {
        "first": pieces[0],
        "last": pieces[-1],
        "mean": pieces.mean(0),
        "max": pieces.max(0),
        "first_last": np.concatenate([pieces[0], pieces[-1]]),
    }[subword]
    np.testing.assert_allclose(we.vectors[0], expected, atol=1e-6)
    assert we.vectors.shape == (7, 32 if subword == "first_last" else 16)


def test_embed_words_on_long_text_keeps_every_word(tiny_models):
    enc = hubembed.load(tiny_models["tf2_dict"], seq_length=12)
    text = " ".join(WORDS[:25]) + " unbelievable"
    we = enc.embed_words([text, ""])
    assert we[0].words == WORDS[:25] + ["unbelievable"] and we[0].n_windows > 1
    assert we[1].words == [] and we[1].vectors.shape == (0, 16)
    with pytest.raises(InputError, match="text pairs are supported by encode"):
        enc.embed_words([("a", "b")])
