"""Extraction.search / hubembed search: an exact scan equal to sentence-transformers' semantic_search, every format,
codes with rescoring, memory bounded by a shard, bad input refused before any slow work, the folder left as it was."""

import hashlib
import io
import json
import os
import shutil
import tracemalloc

import numpy as np
import pytest

import hubembed
from hubembed import cli
from hubembed._corpus import search as search_mod
from hubembed._corpus import shards, store
from hubembed._pipeline import quantize
from hubembed.errors import InputError, OutputError

WORDS = (
    "the a is was to of and in on at it this that with for by from hello world good bad movie film great terrible "
    "love hate cat dog sat mat quick brown fox jumps over lazy day night sun moon"
).split()
FORMATS = ("npy", "parquet", "tfrecord")


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(2, 9)))) + f" {i}" for i in range(n)]


TEXTS = _texts(40)
QUERIES = ["the cat sat on the mat", "a great film", "hello world", "lazy dog at night"]


@pytest.fixture(scope="module")
def tiny(tiny_encoders):
    return tiny_encoders["tf2_dict"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("search") / "c.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def folders(tiny, corpus, tmp_path_factory):
    """Extractions of TEXTS, 6 shards of 7 rows (the last of 5): each format with keep_text; npy normalized; the
    four codes (int8/uint8 with ranges fitted on the float vectors); words."""
    root = tmp_path_factory.mktemp("extractions")
    out = {}

    def make(name, **kw):
        args = dict(encoder=tiny, shard_size=7, quiet=True, cache=False, keep_text=True, layers="-2:")
        hubembed.extract(corpus, str(root / name), **{**args, **kw})
        out[name] = str(root / name)

    for fmt in FORMATS:
        make(fmt, format=fmt)
    make("plain", keep_text=False)
    make("normalized", normalize=True)
    ranges = quantize.Ranges.fit(hubembed.open_extraction(out["npy"]).vectors())
    out["ranges"] = ranges.save(str(root / "r.npz"))
    for p in ("int8", "uint8"):
        make(p, precision=p, ranges=out["ranges"], format="parquet" if p == "uint8" else "npy")
    for p in ("binary", "ubinary"):
        make(p, precision=p)
    make("words", level="words", format="parquet")
    return out


def _st(q, corpus_vectors, k, score="cos"):
    import torch
    from sentence_transformers import util

    fn = util.cos_sim if score == "cos" else util.dot_score
    hits = util.semantic_search(torch.tensor(q), torch.tensor(corpus_vectors), top_k=k, score_function=fn)
    return [[(h["corpus_id"], h["score"]) for h in per] for per in hits]


def _ours(results):
    return [[(h.row, h.score) for h in hits] for hits in results]


def _same(a, b):
    """Same rows (ties aside: none here) and scores within 1e-5."""
    assert [[r for r, _ in hits] for hits in a] == [[r for r, _ in hits] for hits in b]
    np.testing.assert_allclose([[s for _, s in h] for h in a], [[s for _, s in h] for h in b], atol=1e-5)


# -- the results ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("block", [None, 3])
def test_exact_as_a_brute_force_scan(tiny, folders, block, monkeypatch):
    if block:
        monkeypatch.setattr(search_mod, "BLOCK_ELEMENTS", 16 * block)
    ex = hubembed.open_extraction(folders["npy"])
    q = tiny.embed(QUERIES, spec=ex.spec)
    for k in (1, 5, 12):
        rows, scores = _brute(_unit(q) @ _unit(ex.vectors()).T, k)
        got = ex.search(q, k)
        assert [[h.row for h in hs] for hs in got] == rows.tolist()
        np.testing.assert_allclose([[h.score for h in hs] for hs in got], scores, atol=1e-5)


@pytest.mark.slow  # importing torch
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("block", [None, 3])
def test_equal_to_sentence_transformers_semantic_search(tiny, folders, fmt, block, monkeypatch):
    """Whole shards, or blocks of 3 rows (several per shard, k larger than a block): the same hits."""
    if block:
        monkeypatch.setattr(search_mod, "BLOCK_ELEMENTS", 16 * block)  # 16 dimensions: 3 rows a block
    ex = hubembed.open_extraction(folders[fmt])
    q = tiny.embed(QUERIES, spec=ex.spec)
    v = ex.vectors()
    for k in (1, 5, 12):
        got = ex.search(q, k)
        assert got.metric == "cosine" and not got.rescored
        _same(_ours(got), _st(q, v, k))
    rng = np.random.default_rng(1)
    other = rng.standard_normal((3, v.shape[1])).astype(np.float32)  # vectors from elsewhere, any direction
    _same(_ours(ex.search(other, 7)), _st(other, v, 7))
    _same(_ours(ex.search(other, 7, metric="dot")), _st(other, v, 7, score="dot"))


@pytest.mark.slow  # importing torch
def test_normalized_vectors_are_scored_by_dot_which_is_cosine(tiny, folders):
    ex = hubembed.open_extraction(folders["normalized"])
    q = tiny.embed(QUERIES, spec=ex.spec)
    got = ex.search(q, 6)
    assert got.metric == "dot"
    _same(_ours(got), _st(q, ex.vectors(), 6, score="dot"))
    _same(_ours(got), _st(q, ex.vectors(), 6, score="cos"))


@pytest.mark.parametrize("block", [None, 3])
def test_word_level_every_word_is_a_candidate(tiny, folders, block, monkeypatch):
    """Words level: the vectors of every text's words, in row order, scanned as rows are; a hit names the text's
    row, id and text, the word's position and the word. A stored word's own vector finds itself first."""
    if block:
        monkeypatch.setattr(search_mod, "BLOCK_ELEMENTS", 16 * block)
    ex = hubembed.open_extraction(folders["words"])
    texts = list(ex)
    where = [(r, i) for r, t in enumerate(texts) for i in range(len(t))]
    flat = np.concatenate([t.vectors for t in texts])
    assert len(where) == len(flat) > len(ex)
    q = np.stack([texts[3].vectors[1], texts[17].vectors[0], flat[-1]])
    for k in (1, 9):
        rows, scores = _brute(_unit(q) @ _unit(flat).T, k)
        got = ex.search(q, k)
        assert [[(h.row, h.position) for h in hs] for hs in got] == [[where[v] for v in r] for r in rows.tolist()]
        np.testing.assert_allclose([[h.score for h in hs] for hs in got], scores, atol=1e-5)
        for h in (h for hs in got for h in hs):
            t = texts[h.row]
            assert (h.id, h.text, h.piece) == (t.id, t.text, t.pieces[h.position]) and h.text == TEXTS[h.row]
    top = ex.search(q, 1)
    assert [(hs[0].row, hs[0].position) for hs in top] == [(3, 1), (17, 0), where[-1]]
    assert top[0][0].to_dict()["piece"] == texts[3].pieces[1]


@pytest.mark.parametrize("level, subword", [("words", "mean"), ("tokens", None)])
def test_token_and_word_queries_are_made_as_the_rows_were(tiny, tmp_path, level, subword):
    """ex.embed at token/word level: the same outputs as the stored rows (the extraction's subword rule too), so a
    stored text's own piece is found first with score 1. Words of several pieces (cats, loved, unbelievable)."""
    kw = {"subword": subword} if subword else {}
    rng = np.random.default_rng(5)
    many = "cats loved unbelievable embeddings dogs jumping quickly".split()
    src = tmp_path / "pieces.txt"
    src.write_text("\n".join(" ".join(rng.choice(many + WORDS[:8], 6)) for _ in range(40)) + "\n", encoding="utf-8")
    out = str(tmp_path / level)
    hubembed.extract(str(src), out, encoder=tiny, level=level, format="parquet", shard_size=9, quiet=True, **kw)
    ex = hubembed.open_extraction(out)
    made = ex.embed([ex[4].text, ex[30].text], encoder=tiny)
    for got, row in zip(made, (4, 30)):
        np.testing.assert_allclose(got.vectors, ex[row].vectors, atol=1e-5)
    top = ex.search(np.stack([made[0].vectors[1], made[1].vectors[0]]), 1)
    assert [(hs[0].row, hs[0].position) for hs in top] == [(4, 1), (30, 0)] and top[0][0].score > 0.9999
    if subword:  # "first" would give other word vectors
        first = tiny.embed_words([ex[4].text], spec=ex.spec)[0].vectors
        assert np.abs(first - ex[4].vectors).max() > 1e-3
    with pytest.raises(InputError, match="precision= apply to sentence vectors only"):
        ex.embed(["a text"], encoder=tiny, precision="float32")


def test_a_query_prompt_is_passed_to_the_queries(tiny, folders, capsys):
    ex = hubembed.open_extraction(folders["npy"])
    prompted = ex.search(QUERIES, 5, encoder=tiny, prompt="query: ")
    _same(_ours(prompted), _ours(ex.search(tiny.embed(QUERIES, spec=ex.spec.replace(prompt="query: ")), 5)))
    assert _ours(prompted) != _ours(ex.search(QUERIES, 5, encoder=tiny))
    with pytest.raises(InputError, match="prompt_name='query'"):
        ex.search(QUERIES, 5, encoder=tiny, prompt_name="query")  # the tiny model has no named prompts


def test_text_queries_are_embedded_as_the_corpus_was(tiny, folders):
    ex = hubembed.open_extraction(folders["npy"])
    by_text = ex.search(QUERIES, 5, encoder=tiny)
    _same(_ours(by_text), _ours(ex.search(tiny.embed(QUERIES, spec=ex.spec), 5)))
    by_manifest = ex.search(QUERIES[:1], 5)  # no encoder: the manifest's model is loaded
    _same(_ours(by_manifest), _ours(by_text[:1]))
    assert by_text.queries == QUERIES and ex.search("hello world", 2, encoder=tiny).queries == ["hello world"]


def test_hits_name_the_row_id_and_text_and_the_same_in_every_format(tiny, folders):
    q = tiny.embed(QUERIES, spec=hubembed.open_extraction(folders["npy"]).spec)
    results = {fmt: hubembed.open_extraction(folders[fmt]).search(q, 4) for fmt in FORMATS}
    for hits in results["npy"]:
        assert [h.rank for h in hits] == [1, 2, 3, 4]
        assert all(h.id == str(h.row + 1) and h.text == TEXTS[h.row] for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert results["npy"] == results["parquet"] == results["tfrecord"]
    plain = hubembed.open_extraction(folders["plain"]).search(q, 4)
    assert [[(h.row, h.id) for h in hs] for hs in plain] == [[(h.row, h.id) for h in hs] for hs in results["npy"]]
    assert all(h.text is None for hs in plain for h in hs)
    d = results["npy"].to_dict()
    assert d["metric"] == "cosine" and d["results"][0]["query"] is None
    assert d["results"][1]["hits"][0] == results["npy"][1][0].to_dict() and set(d["results"][1]["hits"][0]) == {
        "rank",
        "row",
        "id",
        "score",
        "text",
    }
    json.dumps(d)


def test_k_beyond_the_corpus_returns_every_row_ranked(tiny, folders):
    ex = hubembed.open_extraction(folders["parquet"])
    q = tiny.embed(QUERIES[:2], spec=ex.spec)
    got = ex.search(q, 1000)
    assert [len(h) for h in got] == [40, 40]
    assert sorted(h.row for h in got[0]) == list(range(40))
    rows, scores = _brute(_unit(q) @ _unit(ex.vectors()).T, 40)
    assert [[h.row for h in hs] for hs in got] == rows.tolist()
    np.testing.assert_allclose([[h.score for h in hs] for hs in got], scores, atol=1e-5)
    assert ex.search(np.zeros((0, q.shape[1]), np.float32), 3) == [] and ex.search([], 3) == []


# -- codes ----------------------------------------------------------------------------------------------------------
def _signed(codes, precision):
    return codes.astype(np.float32) - (128 if precision == "uint8" else 0)


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _brute(scores, k):
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return rows, np.take_along_axis(scores, rows, axis=1)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_int8_codes_are_searched_as_codes_then_rescored_on_their_bucket_middles(tiny, folders, precision):
    ex = hubembed.open_extraction(folders[precision])
    ranges = quantize.Ranges.of(folders["ranges"])
    q = ex.embed(QUERIES, encoder=tiny, precision="float32")
    codes = ex.vectors()
    first = _unit(quantize.quantize(q, "int8", ranges).astype(np.float32)) @ _unit(_signed(codes, precision)).T
    got = ex.search(q, 5, ranges=folders["ranges"], rescore=False)
    assert got.precision == precision and not got.rescored
    rows, scores = _brute(first, 5)
    assert [[h.row for h in hs] for hs in got] == rows.tolist()
    np.testing.assert_allclose([[h.score for h in hs] for hs in got], scores, atol=1e-5)
    exact = _unit(q) @ _unit(quantize.dequantize(codes, precision, ranges)).T  # every row rescored: the exact order
    rows, scores = _brute(exact, 5)
    everything = ex.search(q, 5, ranges=ranges, rescore_multiplier=8)  # 40 candidates: the whole corpus
    assert everything.rescored and [[h.row for h in hs] for hs in everything] == rows.tolist()
    np.testing.assert_allclose([[h.score for h in hs] for hs in everything], scores, atol=1e-5)
    top = ex.search(q, 5, ranges=ranges)  # 20 candidates of the first stage, rescored
    for qi, (hs, cand) in enumerate(zip(top, np.argsort(-first, axis=1, kind="stable")[:, :20])):
        assert {h.row for h in hs} <= set(cand.tolist())  # among the first stage's best 4 x k
        np.testing.assert_allclose([h.score for h in hs], exact[qi, [h.row for h in hs]], atol=1e-5)
    texts = ex.search(QUERIES, 5, ranges=ranges, encoder=tiny)  # texts: embedded unquantized, then as above
    _same(_ours(texts), _ours(top))


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_codes_by_hamming_then_rescored_on_their_signs(tiny, folders, precision):
    ex = hubembed.open_extraction(folders[precision])
    q = ex.embed(QUERIES, encoder=tiny, precision="float32")
    d = q.shape[1]
    u = ex.vectors()
    u = (u.astype(np.int16) + 128).astype(np.uint8) if precision == "binary" else u
    signs = np.unpackbits(u, axis=-1)[:, :d].astype(np.float32) * 2 - 1
    hamming = ((q > 0)[:, None, :] != (signs > 0)[None, :, :]).sum(-1)
    got = ex.search(q, 6, rescore=False)
    rows = [[h.row for h in hs] for hs in got]
    for qi, hs in enumerate(got):
        np.testing.assert_allclose([h.score for h in hs], 1 - 2 * hamming[qi, rows[qi]] / d, atol=1e-6)
        assert sorted(hamming[qi, rows[qi]]) == sorted(hamming[qi])[:6]  # the 6 nearest in Hamming distance
    exact = _unit(q) @ _unit(signs).T
    rows, scores = _brute(exact, 6)
    everything = ex.search(q, 6, rescore_multiplier=7)
    assert [[h.row for h in hs] for hs in everything] == rows.tolist()
    np.testing.assert_allclose([[h.score for h in hs] for hs in everything], scores, atol=1e-5)


# -- memory ---------------------------------------------------------------------------------------------------------
def _write(out, n_shards, rows, dim, seed=0):
    """An extraction of random vectors written by the store's own writer (shards.render, ShardStore)."""
    rng = np.random.default_rng(seed)
    header = {"model": "random", "spec": {"level": "sentence", "format": "npy", "dtype": "float32", "dim": dim}}
    st = store.ShardStore(out, header)
    matrix = []
    for i in range(n_shards):
        v = rng.standard_normal((rows, dim)).astype(np.float32)
        ids = [str(i * rows + j + 1) for j in range(rows)]
        st.write_shard(shards.render("npy", "sentence", shards.Chunk(ids, v), "float32"), rows, (i + 1) * rows)
        matrix.append(v)
    st.finish()
    return np.concatenate(matrix)


def test_memory_is_bounded_by_a_shard_not_the_corpus(tmp_path):
    """12 shards of 2,000 x 384 float32 (36.9 MB): the traced peak of a search (npy shards memory-mapped, read a block
    at a time) stays below one shard (3.1 MB), and the results are the exact ones."""
    out = str(tmp_path / "big")
    matrix = _write(out, 12, 2000, 384)
    shard_bytes = matrix.nbytes // 12
    ex = hubembed.open_extraction(out)
    q = np.random.default_rng(5).standard_normal((3, 384)).astype(np.float32)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        got = ex.search(q, 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < shard_bytes and peak < matrix.nbytes / 12, (peak, shard_bytes, matrix.nbytes)
    rows, scores = _brute(_unit(q) @ _unit(matrix).T, 10)
    assert [[h.row for h in hs] for hs in got] == rows.tolist()
    np.testing.assert_allclose([[h.score for h in hs] for hs in got], scores, atol=1e-5)


# -- bad input ------------------------------------------------------------------------------------------------------
@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if a model is loaded or a text embedded."""
    monkeypatch.setattr(store, "load_encoder", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr(store.Extraction, "embed", lambda *a, **k: pytest.fail("queries were embedded"))


def test_bad_arguments_are_refused_before_anything_is_embedded(folders, no_model):
    ex = hubembed.open_extraction(folders["npy"])
    cases = [
        (dict(k=0), "k=0; valid: an integer >= 1"),
        (dict(k=-3), "k=-3"),
        (dict(k=True), "k=True"),
        (dict(k=2.5), "k=2.5"),
        (dict(metric="l2"), "metric='l2'; valid: cosine, dot"),
        (dict(rescore_multiplier=0), "rescore_multiplier=0"),
        (dict(rescore="yes"), "rescore='yes'"),
        (dict(ranges=folders["ranges"]), "ranges= is for int8/uint8 extractions"),
    ]
    for kw, message in cases:
        with pytest.raises(InputError, match=message):
            ex.search(QUERIES, **kw)
    with pytest.raises(InputError, match="words-level vectors .*: give query vectors"):
        hubembed.open_extraction(folders["words"]).search(QUERIES)
    with pytest.raises(InputError, match="give the calibration ranges"):
        hubembed.open_extraction(folders["int8"]).search(QUERIES)
    with pytest.raises(InputError, match="are not the ones"):
        hubembed.open_extraction(folders["int8"]).search(QUERIES, ranges=np.ones((2, 16), np.float32))
    for bad in (42, [1, 2], ["ok", None], {"q": 1}):
        with pytest.raises(InputError, match="queries: a text, a list of texts, or float vectors"):
            ex.search(bad)


def test_queries_of_the_wrong_dimension(folders):
    ex = hubembed.open_extraction(folders["npy"])
    with pytest.raises(InputError, match=r"queries of shape \(8,\): .* have 16 dimensions"):
        ex.search(np.ones((2, 8), np.float32))
    with pytest.raises(InputError, match="have 16 dimensions"):
        ex.search(np.ones(17, np.float32))
    with pytest.raises(InputError, match="NaN or infinite"):
        ex.search(np.full((1, 16), np.nan, np.float32))
    with pytest.raises(InputError, match=r"have 9..16 dimensions \(binary\)"):
        hubembed.open_extraction(folders["binary"]).search(np.ones((1, 20), np.float32))
    assert len(hubembed.open_extraction(folders["binary"]).search(np.ones((1, 14), np.float32), 3)[0]) == 3


def test_an_incomplete_extraction_is_refused(folders, tmp_path, no_model):
    out = str(tmp_path / "incomplete")
    shutil.copytree(folders["npy"], out)
    m = store.read_manifest(out)
    m["complete"] = False  # as a run killed between two shards leaves it
    with open(os.path.join(out, store.MANIFEST), "wb") as f:
        f.write(store.manifest_bytes(m))
    with pytest.raises(InputError, match="incomplete extraction .*--resume"):
        hubembed.open_extraction(out).search(QUERIES)


def test_a_stale_extraction_is_refused(folders, tmp_path, no_model):
    out = str(tmp_path / "stale")
    shutil.copytree(folders["parquet"], out)
    ex = hubembed.open_extraction(out)
    q = np.ones((1, 16), np.float32)
    os.rename(os.path.join(out, "part-00002.parquet"), os.path.join(out, "moved"))
    with pytest.raises(OutputError, match="part-00002.parquet is missing"):
        ex.search(q)
    shutil.copy(os.path.join(out, "part-00005.parquet"), os.path.join(out, "part-00002.parquet"))  # 5 rows, not 7
    with pytest.raises(OutputError, match="holds 5 rows of width 16, the manifest 7"):
        ex.search(q)
    with pytest.raises(OutputError, match="does not match its checksum"):
        ex.search(q, verify=True)
    os.replace(os.path.join(out, "moved"), os.path.join(out, "part-00002.parquet"))
    assert len(ex.search(q, 3, verify=True)[0]) == 3
    m = store.read_manifest(out)
    m["summary"]["rows"] = 1  # the folder rewritten since ex was opened (a resumed or another extraction)
    with open(os.path.join(out, store.MANIFEST), "wb") as f:
        f.write(store.manifest_bytes(m))
    with pytest.raises(OutputError, match="changed since it was opened"):
        ex.search(q)


def _snapshot(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        st = os.stat(path)
        out[name] = (st.st_size, st.st_mtime_ns, hashlib.sha256(open(path, "rb").read()).hexdigest())
    return out


def test_search_never_changes_the_extraction(tiny, folders):
    names = ("npy", "parquet", "tfrecord", "int8", "uint8", "binary")
    before = {n: _snapshot(folders[n]) for n in names}
    for n in names:
        ex = hubembed.open_extraction(folders[n])
        kw = {"ranges": folders["ranges"]} if n in ("int8", "uint8") else {}
        ex.search(QUERIES, 3, encoder=tiny, verify=True, **kw)
        ex.search(QUERIES, 50, encoder=tiny, rescore=False, **kw)
    assert {n: _snapshot(folders[n]) for n in names} == before


# -- the command ----------------------------------------------------------------------------------------------------
def test_the_command_prints_rank_score_id_and_text(tiny, folders, capsys, monkeypatch):
    ex = hubembed.open_extraction(folders["npy"])
    want = ex.search(QUERIES[:2], 3, encoder=tiny)
    assert cli.main(["search", folders["npy"], QUERIES[0], QUERIES[1], "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"# {QUERIES[0]!r}: 3 of 40 rows, cosine" and len(lines) == 8
    for line, h in zip(lines[1:4] + lines[5:8], want[0] + want[1]):
        rank, score, rid, text = line.split(None, 3)
        assert (int(rank), rid, text) == (h.rank, h.id, h.text) and abs(float(score) - h.score) < 1e-4
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{QUERIES[2]}\n\n{QUERIES[3]}\n"))
    assert cli.main(["search", folders["npy"], "-k", "2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [r["query"] for r in d["results"]] == QUERIES[2:]
    assert d["results"] == ex.search(QUERIES[2:], 2, encoder=tiny).to_dict()["results"]


def test_the_command_refuses_bad_input_with_the_options_names(folders, capsys, no_model):
    assert cli.main(["search", folders["npy"], "q", "-k", "0"]) == 1
    assert "-k=0; valid: an integer >= 1" in capsys.readouterr().err
    assert cli.main(["search", folders["int8"], "q"]) == 1
    assert "--ranges" in capsys.readouterr().err
    assert cli.main(["search", folders["words"], "q"]) == 1
    assert "words-level vectors: the command searches with texts" in capsys.readouterr().err
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices["search"]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.option_strings
            if action.default not in (None, False, True):
                assert "default" in action.help, action.option_strings


# -- on real data ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_rescoring_recovers_the_float_results_on_stsb(minilm, stsb_sentences, tmp_path):
    """minilm on 2,000 STS-B sentences (300 other sentences as queries): recall@10 of the float search's hits. int8
    codes alone find most, rescoring 4x k finds nearly all; binary signs alone fewer, rescoring lifts them."""
    sentences = list(dict.fromkeys(stsb_sentences))
    corpus, queries = sentences[:2000], sentences[2000:2300]
    src = tmp_path / "c.txt"
    src.write_text("\n".join(corpus) + "\n", encoding="utf-8")
    args = dict(encoder=minilm, shard_size=250, normalize=True, quiet=True)
    hubembed.extract(str(src), str(tmp_path / "float"), **args)
    ex = hubembed.open_extraction(str(tmp_path / "float"))
    ranges = quantize.Ranges.fit(ex.vectors())
    hubembed.extract(str(src), str(tmp_path / "int8"), precision="int8", ranges=ranges, **args)
    hubembed.extract(str(src), str(tmp_path / "binary"), precision="binary", **args)
    q = ex.embed(queries)
    want = [{h.row for h in hs} for hs in ex.search(q, 10)]

    def recall(results):
        return np.mean([len({h.row for h in hs} & w) / 10 for hs, w in zip(results, want)])

    i8, b = hubembed.open_extraction(str(tmp_path / "int8")), hubembed.open_extraction(str(tmp_path / "binary"))
    codes_only, rescored = (
        recall(i8.search(q, 10, ranges=ranges, rescore=False)),
        recall(i8.search(q, 10, ranges=ranges)),
    )
    assert codes_only < rescored and rescored >= 0.97, (codes_only, rescored)
    signs_only, signs_rescored = recall(b.search(q, 10, rescore=False)), recall(b.search(q, 10))
    assert signs_only < signs_rescored < rescored, (signs_only, signs_rescored)
