"""Extraction.build_index / hubembed index: a FAISS HNSW index saved beside the shards and recorded in the manifest,
used by search (the same hits as the exact scan on small corpora, recall@10 >= 0.95 on real ones), refused whenever
it does not match the folder (stale, missing, unrecorded, another extraction's), bad input refused before any work."""

import hashlib
import os
import shutil
import sys

import numpy as np
import pytest

import hubembed
from hubembed import cli
from hubembed._corpus import index as ann
from hubembed._corpus import store
from hubembed._pipeline import quantize
from hubembed.errors import InputError, MissingDependencyError, OutputError

pytest.importorskip("faiss") if not os.environ.get("CI") else None  # CI installs the ann extra: a failure there

WORDS = "the a is was to of and in on cat dog sat mat good bad film movie great world hello night day".split()


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(2, 9)))) + f" {i}" for i in range(n)]


TEXTS = _texts(60)


@pytest.fixture(scope="module")
def tiny(tiny_encoders):
    return tiny_encoders["tf2_dict"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("index") / "c.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def made(tiny, corpus, tmp_path_factory):
    """Extractions of TEXTS in 6 shards (never indexed here: tests copy them): npy, parquet, tfrecord, normalized,
    int8 with ranges, binary, words."""
    root = tmp_path_factory.mktemp("made")
    out = {}

    def make(name, **kw):
        args = dict(encoder=tiny, shard_size=10, quiet=True, cache=False, keep_text=True, layers="-2:")
        hubembed.extract(corpus, str(root / name), **{**args, **kw})
        out[name] = str(root / name)

    for fmt in ("npy", "parquet", "tfrecord"):
        make(fmt, format=fmt)
    make("normalized", normalize=True)
    out["ranges"] = quantize.Ranges.fit(hubembed.open_extraction(out["npy"]).vectors()).save(str(root / "r.npz"))
    make("int8", precision="int8", ranges=out["ranges"])
    make("binary", precision="binary")
    make("words", level="words", format="parquet")
    return out


@pytest.fixture
def copy(made, tmp_path):
    def _copy(name):
        dst = str(tmp_path / name)
        shutil.copytree(made[name], dst)
        return dst

    return _copy


def _rows(ex, a, b):
    return np.stack([ex[i] for i in range(a, b)])


def _hits(results):
    return [[(h.row, h.position, h.id, h.text, h.piece) for h in hs] for hs in results]


def _scores(results):
    return [[h.score for h in hs] for hs in results]


def _same(a, b):
    assert _hits(a) == _hits(b)
    np.testing.assert_allclose(_scores(a), _scores(b), atol=1e-5)


def _same_but_ties(a, b):
    """Equal scores; the same rows wherever the score is not tied with the last one's (binary signs: many rows
    have the same 16 bits)."""
    np.testing.assert_allclose(_scores(a), _scores(b), atol=1e-5)
    for ha, hb in zip(a, b):
        last = ha[-1].score
        assert {h.row for h in ha if h.score > last + 1e-5} == {h.row for h in hb if h.score > last + 1e-5}


# -- what it finds ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["npy", "parquet", "tfrecord", "normalized"])
def test_the_index_finds_what_the_exact_scan_finds(tiny, copy, name):
    """60 vectors, efSearch >= k: the graph search is exhaustive here, so hits and scores equal the exact scan's."""
    ex = hubembed.open_extraction(copy(name))
    q = np.concatenate([tiny.embed(["the cat sat", "a great film", "hello night"], spec=ex.spec), _rows(ex, 7, 9)])
    exact = {k: ex.search(q, k) for k in (1, 10, 60, 100)}
    record = ex.build_index(progress=False)
    assert record["vectors"] == 60 and record["vectors_per_shard"] == [10] * 6 and record["dim"] == 16
    assert record["metric"] == ("dot" if name == "normalized" else "cosine")
    assert record["params"] == {"M": 32, "efConstruction": 80, "efSearch": 64}
    assert os.path.getsize(os.path.join(ex.out, "index.faiss")) == record["bytes"]
    assert store.read_manifest(ex.out)["index"] == record == ex.manifest["index"]
    for k, want in exact.items():
        got = ex.search(q, k)
        assert got.index_record == (record if k < 60 else None) and want.index_record is None  # all 60: a scan
        _same(got, want)
        _same(ex.search(q, k, exact=True), want)
    assert [hs[0].row for hs in ex.search(q[3:], 1)] == [7, 8]  # a stored vector finds itself
    again = hubembed.open_extraction(ex.out).search(q, 10)  # another session: the index read from the folder
    _same(again, exact[10])
    assert again.to_dict()["index"] == {
        "library": "faiss",
        "kind": "IndexHNSWFlat",
        "params": record["params"],
        "vectors": 60,
        "ef_search": 64,
    }


def test_codes_are_indexed_as_what_rescoring_scores_them_against(copy, made):
    """int8: the bucket middles; binary: the +-1 signs (a query of fewer dimensions than the stored bits too). The
    index's hits and scores are the exact search's with every row rescored."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((4, 16)).astype(np.float32)
    i8 = hubembed.open_extraction(copy("int8"))
    want = i8.search(q, 10, ranges=made["ranges"], rescore_multiplier=6)  # 60 candidates: every row rescored
    with pytest.raises(InputError, match="give the calibration ranges"):
        i8.build_index(progress=False)
    i8.build_index(ranges=made["ranges"], progress=False)
    got = i8.search(q, 10, ranges=made["ranges"])
    assert got.rescored and got.index_record
    _same(got, want)
    with pytest.raises(InputError, match="rescore=False scores the codes as they are.*`exact=True`"):
        i8.search(q, 10, ranges=made["ranges"], rescore=False)
    assert i8.search(q, 10, ranges=made["ranges"], rescore=False, exact=True).index_record is None
    b = hubembed.open_extraction(copy("binary"))
    for dims in (16, 13):
        want = b.search(q[:, :dims], 10, rescore_multiplier=6)
        if dims == 16:
            b.build_index(progress=False)
        _same_but_ties(b.search(q[:, :dims], 10), want)


@pytest.mark.parametrize("block", [None, 2])
def test_word_level_the_index_holds_every_word(copy, block, monkeypatch):
    from hubembed._corpus import search as search_mod

    if block:
        monkeypatch.setattr(search_mod, "BLOCK_ELEMENTS", 16 * block)
    ex = hubembed.open_extraction(copy("words"))
    texts = list(ex)
    n = sum(len(t) for t in texts)
    q = np.stack([texts[0].vectors[1], texts[31].vectors[2], texts[59].vectors[-1]])
    want = ex.search(q, 12)
    record = ex.build_index(progress=False)
    assert record["vectors"] == n and sum(record["vectors_per_shard"]) == n
    got = ex.search(q, 12)
    _same(got, want)
    assert [(hs[0].row, hs[0].position, hs[0].piece) for hs in got] == [
        (0, 1, texts[0].pieces[1]),
        (31, 2, texts[31].pieces[2]),
        (59, len(texts[59]) - 1, texts[59].pieces[-1]),
    ]


# -- never stale -----------------------------------------------------------------------------------------------------
def _rewrite_shard(out, i, vectors):
    """Shard ``i`` replaced by other vectors and the manifest updated to match: what extracting the folder again
    with another model or input leaves (a consistent folder whose shards are not the ones indexed)."""
    m = store.read_manifest(out)
    s = m["shards"][i]
    np.save(os.path.join(out, s["file"]), vectors)
    s["sha256"]["file"] = hashlib.sha256(open(os.path.join(out, s["file"]), "rb").read()).hexdigest()
    with open(os.path.join(out, store.MANIFEST), "wb") as f:
        f.write(store.manifest_bytes(m))


def test_a_stale_index_is_refused_never_used(copy, capsys):
    out = copy("npy")
    ex = hubembed.open_extraction(out)
    ex.build_index(progress=False)
    q = _rows(ex, 0, 2)
    _rewrite_shard(out, 2, -np.asarray(_rows(ex, 20, 30)))
    ex = hubembed.open_extraction(out)
    with pytest.raises(
        OutputError, match=r"index is stale: it was built from other shards.*overwrite=True.*exact=True"
    ):
        ex.search(q)
    assert ex.search(q, 3, exact=True)[0][0].row == 0  # the exact scan still works
    assert cli.main(["search", out, "a query"]) == 1
    err = capsys.readouterr().err
    assert "index is stale" in err and "`hubembed index OUT --overwrite`" in err and "`--exact`" in err
    with pytest.raises(OutputError, match="already has an index"):
        ex.build_index(progress=False)
    ex.build_index(overwrite=True, progress=False)
    _same(ex.search(q, 5), ex.search(q, 5, exact=True))


def test_a_resume_that_rewrites_identical_shards_keeps_the_index(tiny, copy, corpus):
    """A damaged shard is extracted again by --resume; the same model and input give the same bytes, so the record
    (kept through the resume) still matches and the index is used."""
    out = copy("npy")
    ex = hubembed.open_extraction(out)
    record = ex.build_index(progress=False)
    with open(os.path.join(out, "part-00004.npy"), "r+b") as f:
        f.seek(200)
        f.write(b"\0" * 64)
    hubembed.extract(
        corpus, out, encoder=tiny, shard_size=10, quiet=True, cache=False, keep_text=True, layers="-2:", resume=True
    )
    ex = hubembed.open_extraction(out, verify=True)
    assert ex.manifest["index"] == record
    assert ex.search(_rows(ex, 0, 1), 3).index_record == record


def test_an_index_not_its_own_is_refused(copy, made):
    a, b = copy("npy"), copy("parquet")
    ea, eb = hubembed.open_extraction(a), hubembed.open_extraction(b)
    ea.build_index(progress=False)
    eb.build_index(m=8, progress=False)
    q = _rows(ea, 0, 1)
    shutil.copy(os.path.join(b, "index.faiss"), os.path.join(a, "index.faiss"))  # b's index copied into a
    with pytest.raises(OutputError, match="is not the index .* records"):
        hubembed.open_extraction(a).search(q)
    c = copy("tfrecord")  # no index recorded, an index file there
    shutil.copy(os.path.join(a, "index.faiss"), os.path.join(c, "index.faiss"))
    with pytest.raises(OutputError, match="is not recorded in .*manifest"):
        hubembed.open_extraction(c).search(q)
    os.remove(os.path.join(b, "index.faiss"))
    with pytest.raises(OutputError, match="records an index, but .*index.faiss is missing"):
        hubembed.open_extraction(b).search(q)
    assert ann.remove_index(hubembed.open_extraction(b)) and "index" not in store.read_manifest(b)
    assert hubembed.open_extraction(b).search(q, 1).index_record is None


def test_an_index_of_the_same_size_but_other_bytes_is_refused(copy):
    out = copy("npy")
    ex = hubembed.open_extraction(out)
    ex.build_index(progress=False)
    path = os.path.join(out, "index.faiss")
    data = bytearray(open(path, "rb").read())
    data[-100] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(OutputError, match="sha256 differs"):
        hubembed.open_extraction(out).search(_rows(ex, 0, 1))


def test_a_new_extraction_in_the_folder_removes_a_left_index(tiny, corpus, tmp_path):
    out = tmp_path / "fresh"
    out.mkdir()
    (out / "index.faiss").write_bytes(b"left from an extraction deleted by hand")
    hubembed.extract(corpus, str(out), encoder=tiny, quiet=True, cache=False)
    assert not (out / "index.faiss").exists()
    assert hubembed.open_extraction(str(out)).search(np.ones(16, np.float32), 2).index_record is None


def test_search_and_build_leave_the_shards_as_they_were(copy):
    out = copy("parquet")

    def shards():
        return {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out) if n.startswith("part-")}

    before = shards()
    ex = hubembed.open_extraction(out)
    ex.build_index(progress=False)
    index_bytes = open(os.path.join(out, "index.faiss"), "rb").read()
    ex.search(_rows(ex, 0, 3), 5)
    assert shards() == before and open(os.path.join(out, "index.faiss"), "rb").read() == index_bytes
    assert {k: v for k, v in store.read_manifest(out).items() if k != "index"} == {
        k: v for k, v in hubembed.open_extraction(out).manifest.items() if k != "index"
    }


# -- bad input -------------------------------------------------------------------------------------------------------
def test_bad_arguments_are_refused_before_any_vector_is_read(copy, monkeypatch):
    out = copy("npy")
    ex = hubembed.open_extraction(out)
    monkeypatch.setattr(ann.exact, "stored_shards", lambda *a: pytest.fail("a shard was read"))
    for kw, message in [
        (dict(m=2), "m=2; valid: 4..256"),
        (dict(m=0), "m=0; valid: an integer >= 1"),
        (dict(ef_construction=0), "ef_construction=0"),
        (dict(ef_search=-1), "ef_search=-1"),
        (dict(metric="l2"), "metric='l2'"),
        (dict(overwrite="yes"), "overwrite='yes'"),
        (dict(ranges=np.ones((2, 16), np.float32)), "ranges= is for int8/uint8"),
    ]:
        with pytest.raises(InputError, match=message):
            ex.build_index(**kw)
    m = store.read_manifest(out)
    m["complete"] = False
    with open(os.path.join(out, store.MANIFEST), "wb") as f:
        f.write(store.manifest_bytes(m))
    with pytest.raises(InputError, match="incomplete extraction"):
        hubembed.open_extraction(out).build_index()
    assert not os.path.exists(os.path.join(out, "index.faiss"))


def test_search_refuses_what_the_index_cannot_give(copy):
    ex = hubembed.open_extraction(copy("npy"))
    ex.build_index(progress=False)
    q = _rows(ex, 0, 1)
    with pytest.raises(InputError, match="index scores by cosine, not dot.*`exact=True`"):
        ex.search(q, metric="dot")
    assert ex.search(q, 2, metric="dot", exact=True).index_record is None
    for bad in (0, -2, 1.5):
        with pytest.raises(InputError, match=f"ef_search={bad!r}"):
            ex.search(q, ef_search=bad)
    with pytest.raises(InputError, match="exact='no'"):
        ex.search(q, exact="no")
    assert len(ex.search(q, 5, ef_search=5)[0]) == 5


def test_without_faiss_the_error_says_what_to_install(copy, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    ex = hubembed.open_extraction(copy("npy"))
    with pytest.raises(MissingDependencyError, match=r"(?s)faiss-cpu.*hubembed\[ann\]"):
        ex.build_index()
    assert ex.search(_rows(ex, 0, 1), 2).index_record is None  # no index: exact search needs no faiss


# -- the command -----------------------------------------------------------------------------------------------------
def test_the_command_builds_uses_and_removes_the_index(tiny, copy, capsys):
    out = copy("npy")
    assert cli.main(["index", out, "-q", "--m", "16", "--ef-search", "40"]) == 0
    said = capsys.readouterr().out
    assert (
        "index.faiss: faiss IndexHNSWFlat (M 16, efConstruction 80, efSearch 40), 60 vectors of 16 dims, cosine" in said
    )
    record = store.read_manifest(out)["index"]
    assert record["params"] == {"M": 16, "efConstruction": 80, "efSearch": 40}
    assert cli.main(["search", out, "the cat sat", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# 'the cat sat': 3 of 60 rows, cosine, IndexHNSWFlat index" and len(lines) == 4
    assert cli.main(["search", out, "the cat sat", "-k", "3", "--exact"]) == 0
    exact_lines = capsys.readouterr().out.splitlines()
    assert exact_lines[0] == "# 'the cat sat': 3 of 60 rows, cosine" and exact_lines[1:] == lines[1:]
    assert cli.main(["index", out]) == 1
    assert "already has an index" in capsys.readouterr().err
    assert cli.main(["index", out, "--m", "2"]) == 1
    assert "--m=2; valid: 4..256" in capsys.readouterr().err
    assert cli.main(["index", out, "--remove"]) == 0
    assert "index removed" in capsys.readouterr().out and not os.path.exists(os.path.join(out, "index.faiss"))
    assert "index" not in store.read_manifest(out)


def test_every_option_of_the_command_says_what_it_does(capsys):
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices["index"]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.option_strings
            if action.default not in (None, False, True):
                assert "default" in action.help, action.option_strings


# -- on real data ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_recall_at_10_on_stsb_sentences(minilm, stsb_sentences, tmp_path):
    """minilm on 2,000 STS-B sentences, 300 others as queries: the index finds >= 0.95 of the exact top 10."""
    sentences = list(dict.fromkeys(stsb_sentences))
    src = tmp_path / "c.txt"
    src.write_text("\n".join(sentences[:2000]) + "\n", encoding="utf-8")
    hubembed.extract(str(src), str(tmp_path / "x"), encoder=minilm, shard_size=250, quiet=True)
    ex = hubembed.open_extraction(str(tmp_path / "x"))
    q = ex.embed(sentences[2000:2300])
    want = [{h.row for h in hs} for hs in ex.search(q, 10)]
    ex.build_index(progress=False)
    got = ex.search(q, 10)
    assert got.index_record is not None
    recall = np.mean([len({h.row for h in hs} & w) / 10 for hs, w in zip(got, want)])
    assert recall >= 0.95, recall


# -- edges found in review ---------------------------------------------------------------------------------------------
def test_many_identical_vectors_still_give_k_hits(tiny, tmp_path):
    """150 copies of one sentence: the graph cannot reach all of them, so queries it leaves short get the exact
    scan's top k (approximate as ever otherwise); asking for every vector scans."""
    src = tmp_path / "dup.txt"
    src.write_text("\n".join(["the cat sat"] * 150 + _texts(50, seed=4)) + "\n", encoding="utf-8")
    hubembed.extract(str(src), str(tmp_path / "dup"), encoder=tiny, shard_size=50, quiet=True, cache=False)
    ex = hubembed.open_extraction(str(tmp_path / "dup"))
    q = np.stack([ex[0], ex[170], ex[199]])
    ex.build_index(progress=False)
    for k in (160, 199):
        got = ex.search(q, k)
        assert [len(hs) for hs in got] == [k] * 3 and got.index_record is not None
        assert all(len({h.row for h in hs}) == k for hs in got)
    every = ex.search(q, 500)
    assert [len(hs) for hs in every] == [200] * 3 and every.index_record is None


def test_a_shard_of_texts_without_words(tiny, tmp_path):
    src = tmp_path / "gaps.txt"
    src.write_text("\n".join(["the cat sat"] * 10 + [""] * 10 + ["a dog"] * 5) + "\n", encoding="utf-8")
    out = str(tmp_path / "gaps")
    hubembed.extract(
        src, out, encoder=tiny, level="words", format="parquet", on_empty="keep", shard_size=10, quiet=True
    )
    ex = hubembed.open_extraction(out)
    assert [len(ex[i]) for i in (0, 12, 20)] == [3, 0, 2]
    q = np.stack([ex[20].vectors[1]])
    want = ex.search(q, 4)
    assert (want[0][0].row, want[0][0].position, want[0][0].piece) == (20, 1, "dog")
    assert ex.build_index(progress=False)["vectors_per_shard"] == [30, 0, 10]
    _same_but_ties(ex.search(q, 4), want)  # five identical "a dog"s


def test_huge_parameters_are_refused_or_bounded(copy):
    ex = hubembed.open_extraction(copy("npy"))
    for kw, message in [(dict(ef_construction=2**40), "ef_construction=1099511627776; valid: 1..2147483647"),
                        (dict(ef_search=2**31), "ef_search=2147483648")]:  # fmt: skip
        with pytest.raises(InputError, match=message):
            ex.build_index(**kw)
    ex.build_index(progress=False)
    q = _rows(ex, 0, 2)
    with pytest.raises(InputError, match="ef_search=1099511627776"):
        ex.search(q, 3, ef_search=2**40)
    assert [len(hs) for hs in ex.search(q, 2**33)] == [60, 60]
    got = ex.search(q, 3, ef_search=100)
    assert got.to_dict()["index"]["ef_search"] == 100 and ex.search(q, 3).to_dict()["index"]["ef_search"] == 64
    assert ex.search(q, 30).ef_search == 64 and ex.search(q, 50, ef_search=8).ef_search == 50


def test_removing_refuses_a_manifest_changed_since_it_was_opened(copy):
    out = copy("npy")
    ex = hubembed.open_extraction(out)
    ex.build_index(progress=False)
    stale = hubembed.open_extraction(out)
    m = store.read_manifest(out)
    m["note"] = "written by another run"
    with open(os.path.join(out, store.MANIFEST), "wb") as f:
        f.write(store.manifest_bytes(m))
    with pytest.raises(OutputError, match="changed since it was opened"):
        ann.remove_index(stale)
    assert ann.remove_index(hubembed.open_extraction(out)) and store.read_manifest(out)["note"] == m["note"]


def test_the_command_checks_ef_search_and_the_level_first(made, copy, capsys):
    assert cli.main(["search", copy("npy"), "q", "--exact", "--ef-search", "0"]) == 1
    assert "--ef-search=0; valid: an integer >= 1" in capsys.readouterr().err
    assert cli.main(["search", made["words"], "q", "--ef-search", "0"]) == 1
    assert "words-level vectors: the command searches with texts" in capsys.readouterr().err
    out = copy("parquet")
    hubembed.open_extraction(out).build_index(progress=False)
    assert cli.main(["search", out, "q", "--metric", "dot"]) == 1
    err = capsys.readouterr().err
    assert "index scores by cosine, not dot" in err and "`hubembed index OUT --overwrite --metric dot`" in err


def test_rows_and_slices(made):
    ex = hubembed.open_extraction(made["npy"])
    np.testing.assert_array_equal(ex[2:5], np.stack([ex[2], ex[3], ex[4]]))
    assert ex[5:5].shape == (0, 16) and len(ex[-3:]) == 3
    words = hubembed.open_extraction(made["words"])
    assert [p.text for p in words[:2]] == [words[0].text, words[1].text]
    with pytest.raises(InputError, match=r"ex\['a'\]: give a row number or a slice"):
        ex["a"]
