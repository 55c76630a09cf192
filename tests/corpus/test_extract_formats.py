"""hubembed extract: npy / Parquet / TFRecord shards, token- and word-level output, the feature cache,
the input fingerprint checked at resume."""

import json
import os

import numpy as np
import pytest

import hubembed
from hubembed.errors import InputError, OutputError

TEXTS = [
    "hello world",
    "the cat sat on the mat",
    "good movie , great film !",
    "Unbelievable naïveté — déjà vu",
    "hello world",
    "a",
    "the quick brown fox jumps over the lazy dog " * 3,
]


@pytest.fixture(scope="module")
def tiny(tiny_encoders):
    return tiny_encoders["tf2_dict"]


def _txt(path, texts):
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return str(path)


def test_sentence_vectors_in_every_format_are_the_same(tiny, tmp_path):
    src = _txt(tmp_path / "c.txt", TEXTS)
    ref = tiny.embed(TEXTS, layers="-2:", pooling="max")
    got = {}
    for fmt in ("npy", "parquet", "tfrecord"):
        out = str(tmp_path / fmt)
        m = hubembed.extract(
            src, out, encoder=tiny, format=fmt, layers="-2:", pooling="max", shard_size=3, quiet=True, cache=False
        )
        ex = hubembed.open_extraction(out, verify=True)
        assert m["header"]["spec"]["format"] == fmt and ex.format == fmt and ex.level == "sentence"
        assert sorted(os.listdir(out)) == ["manifest.json"] + sorted(
            f for s in m["shards"] for k, f in s.items() if k in ("file", "ids_file")
        )
        assert ex.ids() == [str(i) for i in range(1, len(TEXTS) + 1)] and len(ex.shards) == 3
        got[fmt] = ex.vectors()
        np.testing.assert_allclose(got[fmt], ref, atol=1e-5, err_msg=fmt)
        np.testing.assert_array_equal(ex.by_id("4"), got[fmt][3])
        np.testing.assert_array_equal(np.stack(list(ex)), got[fmt])
    np.testing.assert_array_equal(got["npy"], got["parquet"])
    np.testing.assert_array_equal(got["npy"], got["tfrecord"])
    import pyarrow.parquet as pq

    t = pq.read_table(os.path.join(tmp_path, "parquet", "part-00000.parquet"))
    import pyarrow as pa

    vt = t.schema.field("vector").type
    assert t.column_names == ["id", "vector"] and pa.types.is_fixed_size_list(vt) and vt.list_size == 16
    assert vt.value_type == pa.float32()
    m = hubembed.extract(
        src, str(tmp_path / "pq16"), encoder=tiny, format="parquet", dtype="float16", quiet=True, cache=False
    )
    assert m["header"]["spec"]["dtype"] == "float16"
    v16 = hubembed.open_extraction(str(tmp_path / "pq16")).vectors()
    assert v16.dtype == np.float16
    np.testing.assert_allclose(v16.astype(np.float32), tiny.embed(TEXTS), atol=2e-3)


def test_token_and_word_level_output_with_offsets(tiny, tmp_path):
    import pyarrow.parquet as pq
    import tensorflow as tf

    src = _txt(tmp_path / "c.txt", TEXTS)
    toks = tiny.embed_tokens(TEXTS, layers=-1)
    words = tiny.embed_words(TEXTS, layers=-1, subword="mean")
    for fmt in ("parquet", "tfrecord"):
        out_t, out_w = str(tmp_path / ("tok-" + fmt)), str(tmp_path / ("word-" + fmt))
        hubembed.extract(src, out_t, encoder=tiny, level="tokens", format=fmt, shard_size=4, quiet=True)
        m = hubembed.extract(src, out_w, encoder=tiny, level="words", subword="mean", format=fmt, quiet=True)
        assert m["header"]["spec"]["subword"] == "mean" and m["header"]["spec"]["level"] == "words"
        et, ew = hubembed.open_extraction(out_t, verify=True), hubembed.open_extraction(out_w, verify=True)
        assert len(et) == len(ew) == len(TEXTS) and len(et.shards) == 2
        for i, (te, we) in enumerate(zip(toks, words)):
            rt, rw = et[i], ew.by_id(str(i + 1))
            assert rt.id == str(i + 1) and rt.text == TEXTS[i] and rt.pieces == te.tokens
            np.testing.assert_array_equal(rt.token_ids, te.ids)
            np.testing.assert_array_equal(rt.spans, te.spans)
            np.testing.assert_allclose(rt.vectors, te.vectors, atol=1e-5)
            assert rw.pieces == we.words and [rw.text[s:e] for s, e in rw.spans] == we.words
            np.testing.assert_allclose(rw.vectors, we.vectors, atol=1e-5)
        with pytest.raises(InputError, match="tokens-level output .* iterate over it"):
            et.vectors()
    # The files are standard: pyarrow and tf.data read them without hubembed.
    t = pq.read_table(os.path.join(tmp_path, "tok-parquet", "part-00000.parquet"))
    assert t.column_names == ["id", "text", "tokens", "token_ids", "start", "end", "vectors"]
    import pyarrow as pa

    vt = t.schema.field("vectors").type
    assert pa.types.is_list(vt) and pa.types.is_fixed_size_list(vt.value_type) and vt.value_type.list_size == 16
    row = t.slice(1, 1).to_pylist()[0]
    assert [row["text"][s:e].lower() for s, e in zip(row["start"], row["end"])] == [
        p.replace("##", "") for p in row["tokens"]
    ]
    spec = {
        "id": tf.io.FixedLenFeature([], tf.string),
        "tokens": tf.io.VarLenFeature(tf.string),
        "vectors": tf.io.VarLenFeature(tf.float32),
        "dim": tf.io.FixedLenFeature([], tf.int64),
    }
    first = next(
        iter(
            tf.data.TFRecordDataset(os.path.join(tmp_path, "tok-tfrecord", "part-00000.tfrecord")).map(
                lambda r: tf.io.parse_single_example(r, spec)
            )
        )
    )
    assert first["id"].numpy() == b"1" and int(first["dim"]) == 16
    np.testing.assert_allclose(tf.sparse.to_dense(first["vectors"]).numpy().reshape(-1, 16), toks[0].vectors, atol=1e-5)


def test_format_combinations_that_cannot_be_written_are_refused(tiny, tmp_path):
    src = _txt(tmp_path / "c.txt", TEXTS)
    with pytest.raises(InputError, match="npy holds one array per shard: use --format parquet or tfrecord"):
        hubembed.extract(src, str(tmp_path / "o"), encoder=tiny, level="tokens", format="npy")
    with pytest.raises(InputError, match="TFRecord float lists are float32"):
        hubembed.extract(src, str(tmp_path / "o"), encoder=tiny, format="tfrecord", dtype="float16")
    with pytest.raises(InputError, match="format='csv'; valid: npy, parquet, tfrecord"):
        hubembed.extract(src, str(tmp_path / "o"), encoder=tiny, format="csv")
    with pytest.raises(InputError, match="level='chars'; valid: sentence, tokens, words"):
        hubembed.extract(src, str(tmp_path / "o"), encoder=tiny, level="chars")
    with pytest.raises(InputError, match="combine='none' .* use combine='concat'"):
        hubembed.extract(src, str(tmp_path / "o"), encoder=tiny, format="parquet", layers="-2:", combine="none")
    assert not os.path.exists(tmp_path / "o")


def test_the_feature_cache_skips_texts_seen_before(tiny, tmp_path, monkeypatch):
    cache = str(tmp_path / "features")
    first, second = TEXTS[:4], TEXTS[2:] + ["brand new text", "good movie , great film !"]
    encoded = []
    real = type(tiny).embed

    def counting(self, texts, **kw):
        if texts != ["probe"]:
            encoded.extend(texts)
        return real(self, texts, **kw)

    monkeypatch.setattr(type(tiny), "embed", counting)
    m1 = hubembed.extract(_txt(tmp_path / "a.txt", first), str(tmp_path / "a"), encoder=tiny, cache=cache, quiet=True)
    assert sorted(encoded) == sorted(set(first)) and m1["summary"]["texts_from_cache_this_run"] == 0
    encoded.clear()
    m2 = hubembed.extract(_txt(tmp_path / "b.txt", second), str(tmp_path / "b"), encoder=tiny, cache=cache, quiet=True)
    new = sorted(set(second) - set(first))
    assert sorted(encoded) == new  # only texts never seen: cached ones and repeats are not encoded again
    s = m2["summary"]
    assert s["texts_encoded_this_run"] == len(new) and s["texts_from_cache_this_run"] == len(set(second) & set(first))
    assert s["texts_duplicates_this_run"] == len(second) - len(set(second))
    ref = tiny.embed(second)
    np.testing.assert_allclose(hubembed.open_extraction(str(tmp_path / "b")).vectors(), ref, atol=1e-5)
    encoded.clear()  # another spec is another cache: everything is encoded
    hubembed.extract(str(tmp_path / "b.txt"), str(tmp_path / "c"), encoder=tiny, cache=cache, pooling="cls", quiet=True)
    assert sorted(encoded) == sorted(set(second))
    assert len([f for f in os.listdir(cache) if f.endswith(".sqlite")]) == 2
    encoded.clear()
    hubembed.extract(str(tmp_path / "b.txt"), str(tmp_path / "d"), encoder=tiny, cache=False, quiet=True)
    assert sorted(encoded) == sorted(set(second))  # cache=False: neither read nor written


def test_resume_refuses_an_input_that_changed_under_finished_shards(tiny, tmp_path):
    lines = [f"sentence number {i} about a cat" for i in range(30)]
    src = _txt(tmp_path / "c.txt", lines)
    out = str(tmp_path / "o")
    full = hubembed.extract(src, out, encoder=tiny, shard_size=10, quiet=True, cache=False)
    assert all(len(s["input_sha256"]) == 64 for s in full["shards"])

    def interrupt():  # what a run killed after its second shard leaves
        m = json.load(open(os.path.join(out, "manifest.json")))
        m["shards"], m["complete"], m["rows"] = m["shards"][:2], False, 20
        m.pop("summary")
        json.dump(m, open(os.path.join(out, "manifest.json"), "w"))

    interrupt()
    _txt(tmp_path / "c.txt", lines[:3] + ["an edited line"] + lines[4:])
    with pytest.raises(OutputError, match="input changed .* shard 0, rows 0..9"):
        hubembed.extract(src, out, encoder=tiny, shard_size=10, quiet=True, resume=True, cache=False)
    _txt(tmp_path / "c.txt", lines)
    m = hubembed.extract(src, out, encoder=tiny, shard_size=10, quiet=True, resume=True, cache=False)
    assert m["summary"]["rows_this_run"] == 10 and m["rows"] == 30
    np.testing.assert_array_equal(
        hubembed.open_extraction(out).vectors()[:20],
        np.concatenate([np.load(os.path.join(out, f"part-0000{i}.npy")) for i in (0, 1)]),
    )
    np.testing.assert_allclose(hubembed.open_extraction(out, verify=True).vectors(), tiny.embed(lines), atol=1e-5)
