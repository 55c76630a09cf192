"""--keep-text: each row's text stored with its vector (npy: part-N.text.json; parquet: a text column; tfrecord: a text
feature), recorded in the manifest, checked at resume and by verification, read back by ex.texts(), ex.text(i),
as_dataset, feature_spec and the projector."""

import inspect
import json
import os
import shutil

import numpy as np
import pytest

import hubembed
from hubembed import cli
from hubembed._corpus.job import CorpusJob
from hubembed.errors import InputError, OutputError

TEXTS = [
    "hello world",
    "the cat sat on the mat",
    "good movie , great film !",
    "Unbelievable naïveté — déjà vu \u2028 with a line separator",
    "hello world",
    "a",
    'a "quoted" text, with a tab\there',
]
FORMATS = ("npy", "parquet", "tfrecord")


@pytest.fixture(scope="module")
def tiny(tiny_encoders):
    return tiny_encoders["tf2_dict"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("keep") / "c.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return str(path)


def _extract(tiny, corpus, out, **kw):
    args = dict(encoder=tiny, shard_size=3, quiet=True, cache=False)
    return hubembed.extract(corpus, str(out), **{**args, **kw})


@pytest.fixture(scope="module")
def kept(tiny, corpus, tmp_path_factory):
    """{format: folder} extracted with keep_text (3 shards), and the same without it."""
    root = tmp_path_factory.mktemp("kept")
    out = {}
    for fmt in FORMATS:
        _extract(tiny, corpus, root / fmt, format=fmt, keep_text=True)
        _extract(tiny, corpus, root / f"{fmt}-plain", format=fmt)
        out[fmt], out[fmt + "-plain"] = str(root / fmt), str(root / f"{fmt}-plain")
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_texts_are_stored_with_the_vectors_in_every_format(kept, fmt):
    ex = hubembed.open_extraction(kept[fmt], verify=True)
    plain = hubembed.open_extraction(kept[fmt + "-plain"])
    assert ex.header["keep_text"] is True and "keep_text" not in plain.header
    assert ex.has_text and not plain.has_text
    assert ex.texts() == TEXTS and [ex.text(i) for i in range(len(ex))] == TEXTS and ex.text(-1) == TEXTS[-1]
    np.testing.assert_array_equal(ex.vectors(), plain.vectors())  # the same numbers, the text beside them
    assert ex.ids() == plain.ids() == [str(i) for i in range(1, 8)]
    assert len(ex.shards) == 3


def test_npy_texts_are_a_json_file_per_shard_listed_with_its_checksum(kept):
    ex = hubembed.open_extraction(kept["npy"])
    for i, s in enumerate(ex.shards):
        assert s["text_file"] == f"part-{i:05d}.text.json" and set(s["sha256"]) == {"file", "ids_file", "text_file"}
        with open(os.path.join(kept["npy"], s["text_file"]), encoding="utf-8") as f:
            assert json.load(f) == TEXTS[s["first_row"] : s["first_row"] + s["rows"]]
    plain = hubembed.open_extraction(kept["npy-plain"])
    assert all("text_file" not in s for s in plain.shards)
    assert not [f for f in os.listdir(kept["npy-plain"]) if f.endswith(".text.json")]


def test_parquet_and_tfrecord_hold_a_text_column_or_feature(kept):
    import pyarrow.parquet as pq
    import tensorflow as tf

    t = pq.read_table(os.path.join(kept["parquet"], "part-00000.parquet"))
    assert t.column_names == ["id", "text", "vector"] and t.column("text").to_pylist() == TEXTS[:3]
    assert pq.read_table(os.path.join(kept["parquet-plain"], "part-00000.parquet")).column_names == ["id", "vector"]
    ex = hubembed.open_extraction(kept["tfrecord"])
    spec = hubembed.tfdata.feature_spec(ex)
    assert set(spec) == {"id", "text", "vector"}
    assert set(hubembed.tfdata.feature_spec(kept["tfrecord-plain"])) == {"id", "vector"}
    raw = tf.data.TFRecordDataset(os.path.join(kept["tfrecord"], "part-00001.tfrecord"))
    parsed = [tf.io.parse_single_example(r, spec) for r in raw]
    assert [p["text"].numpy().decode("utf-8") for p in parsed] == TEXTS[3:6]


@pytest.mark.parametrize("fmt", FORMATS)
def test_as_dataset_gives_the_text_column(kept, fmt):
    ex = hubembed.open_extraction(kept[fmt])
    rows = list(ex.as_dataset(columns=["id", "text", "vector"]).as_numpy_iterator())
    assert [r["text"].decode("utf-8") for r in rows] == TEXTS
    np.testing.assert_array_equal(np.stack([r["vector"] for r in rows]), ex.vectors())
    with pytest.raises(InputError, match="'text' not in a sentence-level extraction"):
        hubembed.open_extraction(kept[fmt + "-plain"]).as_dataset(columns="text")


def test_without_keep_text_texts_are_refused_with_the_way_to_keep_them(kept):
    ex = hubembed.open_extraction(kept["npy-plain"])
    with pytest.raises(InputError, match="extract it again with --keep-text"):
        ex.texts()
    with pytest.raises(InputError, match="keep_text=True"):
        ex.text(0)
    with pytest.raises(InputError, match="row 7 of an extraction of 7 rows"):
        hubembed.open_extraction(kept["npy"]).text(7)


def test_the_projector_labels_points_with_the_kept_text(kept, tmp_path):
    for fmt in FORMATS:
        record = hubembed.to_projector([kept[fmt]], str(tmp_path / fmt))
        e = record["embeddings"][0]
        assert e["metadata_columns"][:2] == ["text", "id"], fmt
        with open(os.path.join(tmp_path / fmt, e["metadata"]), encoding="utf-8") as f:
            lines = f.read().split("\n")
        assert lines[3].split("\t")[:2] == ["good movie , great film !", "3"], fmt  # a header, then row 0
        cell = lines[4].split("\t")[0]  # one line: the line separator made a space
        assert cell.startswith("Unbelievable naïveté — déjà vu ") and cell.endswith(" with a line separator"), fmt


def test_token_and_word_rows_always_hold_their_text(tiny, corpus, tmp_path):
    m = _extract(tiny, corpus, tmp_path / "words", level="words", format="parquet", keep_text=True)
    assert "keep_text" not in m["header"]  # nothing more is stored: the rows hold their text already
    ex = hubembed.open_extraction(str(tmp_path / "words"))
    assert ex.has_text and ex.texts() == TEXTS and ex.text(3) == TEXTS[3] == ex[3].text


def test_a_resume_with_another_keep_text_is_refused_before_the_model_loads(
    tiny, tiny_models, corpus, kept, tmp_path, monkeypatch
):
    from hubembed._load import LoadOptions

    monkeypatch.setattr(LoadOptions, "load", lambda self: pytest.fail("the model was loaded"))
    for src, keep, there in (("npy", False, True), ("npy-plain", True, False)):
        out = tmp_path / src
        shutil.copytree(kept[src], out)
        before = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out)}
        with pytest.raises(OutputError, match=rf"cannot resume .*keep_text \({there} there, {keep} now\)"):
            _extract(tiny, corpus, out, keep_text=keep, resume=True)  # an encoder given
        with pytest.raises(OutputError, match=rf"cannot resume .*keep_text \({there} there, {keep} now\)"):
            hubembed.extract(
                corpus, str(out), model=tiny_models["tf2_dict"], shard_size=3, keep_text=keep, resume=True, quiet=True
            )
        assert {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out)} == before


def test_a_damaged_or_missing_text_file_fails_verification_and_resume_redoes_it(tiny, corpus, kept, tmp_path):
    out = tmp_path / "damaged"
    shutil.copytree(kept["npy"], out)
    text_file = os.path.join(out, "part-00001.text.json")
    with open(text_file, "w", encoding="utf-8") as f:
        json.dump(["edited", "texts", "here"], f)
    with pytest.raises(OutputError, match="part-00001.text.json does not match its checksum"):
        hubembed.open_extraction(str(out), verify=True)
    m = _extract(tiny, corpus, out, keep_text=True, resume=True)
    assert m["summary"]["rows_this_run"] == 4  # shards 1 and 2 redone: the first that fails and all after it
    ex = hubembed.open_extraction(str(out), verify=True)
    assert ex.texts() == TEXTS
    os.remove(os.path.join(out, "part-00002.text.json"))
    _extract(tiny, corpus, out, keep_text=True, resume=True)
    assert hubembed.open_extraction(str(out), verify=True).texts() == TEXTS
    for name in sorted(os.listdir(kept["npy"])):  # byte for byte an uninterrupted run's shards
        if name != "manifest.json":
            assert open(os.path.join(out, name), "rb").read() == open(os.path.join(kept["npy"], name), "rb").read()


def test_the_cli_option(tiny_models, corpus, tmp_path, capsys):
    out = str(tmp_path / "cli")
    args = ["extract", corpus, "-o", out, "--model", tiny_models["tf2_dict"], "--keep-text", "--format", "parquet"]
    assert cli.main(args + ["-q", "--no-cache"]) == 0
    assert hubembed.open_extraction(out).texts() == TEXTS
    helps = {a.dest: a.help for a in cli.build_parser()._subparsers._group_actions[0].choices["extract"]._actions}
    assert "text" in helps["keep_text"]


@pytest.mark.slow
def test_every_front_end_takes_keep_text_through_the_corpus_job():
    from hubembed import beam, spark

    for front in (hubembed.extract, beam.extract, spark.extract):
        p = inspect.signature(front).parameters["keep_text"]
        assert p.default is False and p.kind is inspect.Parameter.KEYWORD_ONLY, front
    job = CorpusJob.from_arguments({"out": "o", "keep_text": True, "model": "minilm"})
    assert job.settings.keep_text is True
    with pytest.raises(InputError, match="keep_text='yes'; valid: True or False"):
        CorpusJob.make("o", keep_text="yes")


@pytest.mark.slow
def test_beam_keeps_the_text_as_the_local_run(tiny_models, corpus, tmp_path):
    pytest.importorskip("apache_beam")
    from hubembed import beam

    args = dict(model=tiny_models["tf2_dict"], shard_size=3, cache=False, keep_text=True)
    hubembed.extract(corpus, str(tmp_path / "local"), quiet=True, **args)
    m = beam.extract(corpus, str(tmp_path / "beam"), runner="DirectRunner", **args)
    assert m["header"]["keep_text"] is True
    local, remote = (json.load(open(os.path.join(tmp_path, d, "manifest.json"))) for d in ("local", "beam"))
    assert local["shards"] == remote["shards"]  # text files and their checksums included
    assert hubembed.open_extraction(str(tmp_path / "beam"), verify=True).texts() == TEXTS


@pytest.mark.slow
def test_spark_keeps_the_text_as_the_local_run(tiny_models, corpus, tmp_path, monkeypatch):
    pytest.importorskip("pyspark")
    import sys

    from pyspark.sql import SparkSession

    from hubembed import spark as hspark

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    args = dict(model=tiny_models["tf2_dict"], shard_size=3, keep_text=True)
    hubembed.extract(corpus, str(tmp_path / "local"), quiet=True, cache=False, **args)
    session = (
        SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.local.dir", str(tmp_path / "spark-local"))
        .getOrCreate()
    )
    try:
        df = session.createDataFrame([(t,) for t in TEXTS], "text string")
        m = hspark.extract(df, str(tmp_path / "spark"), **args)
    finally:
        session.stop()
    local = json.load(open(os.path.join(tmp_path, "local", "manifest.json")))
    assert m["header"]["keep_text"] is True and m["shards"] == local["shards"]  # the same files, text files included
    assert hubembed.open_extraction(str(tmp_path / "spark"), verify=True).texts() == TEXTS
