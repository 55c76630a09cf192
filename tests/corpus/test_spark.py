"""hubembed.spark on a real Spark cluster: ``local-cluster[2,1,1024]`` starts a master, two workers and two executor
JVMs (one core each), each with its own Python worker, so the UDF runs in processes that are not this one."""

import json
import os
import sys

import numpy as np
import pytest

import hubembed
from hubembed.errors import InputError

pytestmark = pytest.mark.slow

pytest.importorskip("pyspark", reason="the spark extra (scripts/test.sh installs it)")

from hubembed import spark as hspark  # noqa: E402

WORDS = "the quick brown fox jumps over lazy dog good movie great film a bit long but fine".split()
LAYERS = "-2:"  # two layers mixed: more than the defaults


def _texts(n=48):
    texts = [" ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(1 + i % 13)) for i in range(n)]
    texts[min(7, n - 1)] = ""  # embedded as embed embeds it: [CLS] [SEP] only
    texts[min(11, n - 1)] = " ".join(WORDS * 9)  # longer than the tiny model's 64-piece window: split and stitched
    return texts


def _wait_for_executors(session, n: int, seconds: float = 300) -> None:
    """Both executors registered before a job runs, so the first tasks go to both."""
    import time

    tracker = session.sparkContext._jsc.sc().statusTracker()
    end = time.time() + seconds
    while len(tracker.getExecutorInfos()) < n + 1:  # the driver is listed too
        if time.time() > end:
            raise RuntimeError(f"{len(tracker.getExecutorInfos()) - 1} of {n} executors registered")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """A SparkSession on a local cluster of two executors. Executors ignore spark.pyspark.python: PYSPARK_PYTHON
    in the environment the JVM starts with names this interpreter (and so this hubembed)."""
    import shutil

    from pyspark.sql import SparkSession

    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "SPARK_LOCAL_IP")}
    os.environ.update(PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    session = (
        SparkSession.builder.master("local-cluster[2,1,1024]")
        .appName("hubembed-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.local.dir", str(tmp_path_factory.mktemp("spark-local")))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        _wait_for_executors(session, 2)
        yield session
    finally:
        app = session.sparkContext.applicationId
        session.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        # A local cluster's workers keep their executors' folders under $SPARK_HOME/work: this run's go.
        from pyspark.find_spark_home import _find_spark_home

        work = os.path.join(_find_spark_home(), "work")
        shutil.rmtree(os.path.join(work, app), ignore_errors=True)
        if os.path.isdir(work) and not os.listdir(work):
            os.rmdir(work)


def _frame(spark, texts, partitions=4):
    rows = [(i, t) for i, t in enumerate(texts)]
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, partitions), "id long, text string")


def test_vectors_equal_encoder_embed_and_each_worker_loads_the_model_once(spark, tiny_models, tiny_encoders):
    from pyspark.sql import functions as F

    texts = _texts()
    df = _frame(spark, texts + [None]).withColumn("part", F.spark_partition_id())
    out = hspark.embed(df, model=tiny_models["tf2_dict"], layers=LAYERS, pooling="mean", worker_column="worker")
    assert dict(out.dtypes)["vector"] == "array<float>"
    rows = sorted(out.collect(), key=lambda r: r.id)
    want = tiny_encoders["tf2_dict"].embed(texts, layers=LAYERS, pooling="mean")
    got = np.array([r.vector for r in rows[: len(texts)]], np.float32)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert rows[-1].text is None and rows[-1].vector is None  # a null text, a null vector

    parts = {r.part for r in rows}
    workers = {r.worker.pid: set() for r in rows}
    for r in rows:
        workers[r.worker.pid].add(r.part)
    assert len(parts) == 4, parts
    assert len(workers) >= 2 and os.getpid() not in workers, workers  # both executors' Python workers, not this one
    assert {r.worker.model_loads for r in rows} == {1}  # every task of every worker: the one load
    assert max(len(p) for p in workers.values()) >= 2  # a worker ran several tasks and loaded once


def test_a_layer_axis_and_quantized_codes_keep_embeds_values(spark, tiny_models, tiny_encoders):
    texts = _texts(16)
    df = _frame(spark, texts, partitions=2)
    enc, model = tiny_encoders["tf2_dict"], tiny_models["tf2_dict"]
    layered = hspark.embed(df, model=model, layers=[0, -1], combine="none", pooling="cls")
    codes = hspark.embed(df, model=model, output_column="bits", precision="binary")
    assert dict(layered.dtypes)["vector"] == "array<array<float>>" and dict(codes.dtypes)["bits"] == "array<tinyint>"
    got = np.array([r.vector for r in sorted(layered.collect(), key=lambda r: r.id)], np.float32)
    np.testing.assert_allclose(got, enc.embed(texts, layers=[0, -1], combine="none", pooling="cls"), atol=1e-5)
    bits = np.array([r.bits for r in sorted(codes.collect(), key=lambda r: r.id)], np.int8)
    np.testing.assert_array_equal(bits, enc.embed(texts, precision="binary"))
    int8 = hspark.embed(df, model=model, quantize="int8", layers=-2)  # the int8 model, loaded in each worker
    got = np.array([r.vector for r in sorted(int8.collect(), key=lambda r: r.id)], np.float32)
    np.testing.assert_allclose(got, hubembed.load(model, quantize="int8").embed(texts, layers=-2), atol=1e-5)
    with pytest.raises(InputError, match="quantize='int4'"):
        hspark.embed(df, model=model, quantize="int4")


def test_bad_arguments_fail_on_the_driver_before_any_job(spark, tiny_models, tmp_path):
    sc = spark.sparkContext
    df = _frame(spark, _texts(8), partitions=2)
    model = tiny_models["tf2_dict"]
    sc.setLocalProperty("spark.jobGroup.id", "hubembed-refusals")
    try:
        with pytest.raises(InputError, match="pooling='bogus'"):
            hspark.embed(df, model=model, pooling="bogus")
        with pytest.raises(InputError, match="column='missing'"):
            hspark.embed(df, "missing", model=model)
        with pytest.raises(InputError, match="column='id' holds bigint"):
            hspark.embed(df, "id", model=model)
        with pytest.raises(InputError, match="output_column='text'"):
            hspark.embed(df, model=model, output_column="text")
        with pytest.raises(InputError, match="batch_size=0"):
            hspark.embed(df, model=model, batch_size=0)
        with pytest.raises(InputError, match="layer"):  # the model has 3: found by the driver's check
            hspark.embed(df, model=model, layers=7)
        with pytest.raises(InputError, match="pooling='bogus'"):
            hspark.extract(df, str(tmp_path / "out"), model=model, pooling="bogus")
        assert not (tmp_path / "out").exists()
        assert sc.statusTracker().getJobIdsForGroup("hubembed-refusals") == []
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)


def test_repeated_ids_are_refused_before_the_model_loads(spark, tmp_path, monkeypatch):
    """Issue 29, item 3, on Spark: ids from id_column that repeat were accepted; refused now, before any model."""
    rows = [(f"text {i}", f"id{i % 3}") for i in range(7)]
    df = spark.createDataFrame(rows, "text string, doc string")
    monkeypatch.setattr(hspark, "_encoder", lambda *a, **k: pytest.fail("the model loaded"))
    with pytest.raises(InputError, match=r"id_column='doc': ids repeat, e.g. .*'id0' \(3 rows\)"):
        hspark.extract(df, str(tmp_path / "out"), id_column="doc")
    assert not (tmp_path / "out").exists()


def _same_output(a, b):
    ma, mb = (json.load(open(os.path.join(d, "manifest.json"))) for d in (a, b))
    ha, hb = dict(ma["header"]), dict(mb["header"])
    for h in (ha, hb):
        h.pop("versions"), h.pop("input")
    assert ha == hb
    assert ma["shards"] == mb["shards"] and ma["skipped"] == mb["skipped"] and ma["rows"] == mb["rows"]
    assert ma["complete"] and mb["complete"]
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    for f in names:
        if f != "manifest.json":
            assert open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read(), f


@pytest.mark.parametrize("level,fmt", [("sentence", "npy"), ("words", "parquet")])
def test_extract_writes_the_files_of_the_local_extract(spark, tiny_models, tmp_path, level, fmt):
    """A DataFrame of a text file's lines (empty ones skipped, as the file's) gives hubembed.extract's shards."""
    texts = _texts(57)
    texts[20] = "   "
    src = tmp_path / "c.txt"
    src.write_text("\n".join(texts) + "\n")
    args = dict(model=tiny_models["tf2_dict"], level=level, format=fmt, shard_size=10, layers=LAYERS)
    hubembed.extract(str(src), str(tmp_path / "local"), quiet=True, cache=False, **args)
    df = spark.createDataFrame(spark.sparkContext.parallelize([(t,) for t in texts], 3), "text string")
    m = hspark.extract(df, str(tmp_path / "spark"), **args)
    _same_output(str(tmp_path / "local"), str(tmp_path / "spark"))
    assert m["header"]["input"] == {"format": "spark", "column": "text", "id_column": None, "on_empty": "skip"}
    assert m["summary"]["runner"] == "spark"
    assert m["summary"]["model_loads_this_run"] <= m["summary"]["python_workers_this_run"]  # at most one each
    ex = hubembed.open_extraction(str(tmp_path / "spark"))
    assert len(ex) == 55 and ex.ids()[:3] == ["1", "2", "3"]
