"""hubembed.beam: the extraction as an Apache Beam pipeline on the DirectRunner equals the local run, file by file."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import hubembed
from hubembed.errors import InputError, OutputError

pytest.importorskip("apache_beam", reason="the beam extra (scripts/test.sh installs it)")

from hubembed import beam  # noqa: E402


def _corpus(path, n=57):
    words = "the quick brown fox jumps over lazy dog good movie great film".split()
    lines = [
        "" if i % 11 == 4 else " ".join(words[(i * 7 + j) % len(words)] for j in range(1 + i % 9)) for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _same_output(a, b):
    ma, mb = (json.load(open(os.path.join(d, "manifest.json"))) for d in (a, b))
    ha, hb = dict(ma["header"]), dict(mb["header"])
    assert ha.pop("versions") and hb.pop("versions")
    assert ha == hb
    assert ma["shards"] == mb["shards"] and ma["skipped"] == mb["skipped"] and ma["rows"] == mb["rows"]
    assert ma["complete"] and mb["complete"]
    names = sorted(f for f in os.listdir(a))
    assert names == sorted(os.listdir(b))
    for f in names:
        if f != "manifest.json":
            assert open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read(), f
    return ma


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, proc, log_path, seconds: float = 300) -> None:
    import socket
    import time

    end = time.time() + seconds
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"a Beam service exited: {open(log_path).read()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"a Beam service did not open port {port}: {open(log_path).read()[-2000:]}")


@pytest.fixture(scope="module")
def portable(tmp_path_factory):
    """Beam's portable runner, offline: its own job service and an external SDK worker pool (both from the
    apache-beam wheel) on free loopback ports, started in another directory than the tests'. The pool starts
    ``python`` from PATH: this interpreter's folder comes first. Yields the pipeline options that use them."""
    where = tmp_path_factory.mktemp("beam_services")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    job, pool = _free_port(), _free_port()
    log_path = where / "services.log"
    log = open(log_path, "w")
    commands = [
        ["apache_beam.runners.portability.local_job_service_main", "--port", str(job)],
        ["apache_beam.runners.worker.worker_pool_main", "--service_port", str(pool)],
    ]
    procs = [
        subprocess.Popen([sys.executable, "-m", *c], cwd=where, env=env, stdout=log, stderr=subprocess.STDOUT)
        for c in commands
    ]
    try:
        for port, proc in zip((job, pool), procs):
            _wait_for(port, proc, log_path)
        yield [
            f"--job_endpoint=localhost:{job}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool}",
        ]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["DirectRunner", "PortableRunner"])
@pytest.mark.parametrize("level,fmt", [("sentence", "npy"), ("words", "parquet")])
def test_beam_output_equals_the_local_extract(tiny_models, tmp_path, level, fmt, runner, request, monkeypatch):
    """File by file; on the portable runner with relative paths (the launcher's directory, not the workers'),
    the model loaded by the worker, not in this process."""
    model = tiny_models["tf2_dict"]
    src = _corpus(tmp_path / "c.txt")
    args = dict(model=model, level=level, format=fmt, shard_size=10, layers="-2:", cache=False)
    local = str(tmp_path / "local")
    hubembed.extract(src, local, quiet=True, **args)
    loads = beam.LOADS["count"]
    if runner == "PortableRunner":
        monkeypatch.chdir(tmp_path)
        m = beam.extract("c.txt", "beam", runner=runner, pipeline_args=request.getfixturevalue("portable"), **args)
        assert beam.LOADS["count"] == loads and m["summary"]["model_loads_this_run"] >= 1  # in a worker
    else:
        m = beam.extract(src, str(tmp_path / "beam"), runner=runner, **args)
        assert beam.LOADS["count"] - loads == 1  # one worker: the model loaded once, for 6 shards
        assert m["summary"]["model_loads_this_run"] == 1
    assert m["summary"]["runner"] == runner and len(m["shards"]) == 6 and m["rows"] == 52
    out = str(tmp_path / "beam")
    _same_output(local, out)
    ex = hubembed.open_extraction(out, verify=True)
    assert ex.level == level and len(ex) == 52


@pytest.mark.slow
def test_the_cli_on_the_portable_runner_with_relative_paths(tiny_models, tmp_path, portable):
    model = tiny_models["tf2_dict"]
    _corpus(tmp_path / "c.txt", 30)
    cmd = [sys.executable, "-m", "hubembed", "extract", "c.txt", "-o", "o", "--model", model, "--shard-size", "8"]
    r = subprocess.run(
        cmd + ["--runner", "PortableRunner", *portable], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "27 rows in 4 npy shards (sentence level" in r.stdout
    local = str(tmp_path / "local")
    hubembed.extract(str(tmp_path / "c.txt"), local, model=model, shard_size=8, quiet=True, cache=False)
    _same_output(local, str(tmp_path / "o"))


@pytest.mark.slow
def test_a_wrong_column_and_repeated_ids_are_refused_before_the_model_loads(tmp_path, monkeypatch):
    """Issue 29, items 2 and 3, on Beam: the launcher reads the input's columns and ids before the model loads."""
    from hubembed import beam as hbeam
    from hubembed._load import LoadOptions

    monkeypatch.setattr(LoadOptions, "load", lambda self: pytest.fail("the model loaded"))
    src = tmp_path / "c.tsv"
    src.write_text("a fine film\tx1\nawful\tx2\nfine\tx1\n", encoding="utf-8")
    with pytest.raises(InputError, match="id 'x1' repeats line 1's"):
        hbeam.extract(str(src), str(tmp_path / "o1"), column="0", id_column="1", runner="DirectRunner")
    with pytest.raises(InputError, match="column 5 asked for"):
        hbeam.extract(str(src), str(tmp_path / "o2"), column="5", runner="DirectRunner")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_the_cli_runner_flag_and_an_occupied_output(tiny_models, tmp_path):
    model = tiny_models["tf2_dict"]
    src = _corpus(tmp_path / "c.txt", 30)
    out = str(tmp_path / "o")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "hubembed",
            "extract",
            src,
            "-o",
            out,
            "--model",
            model,
            "--shard-size",
            "8",
            "--runner",
            "DirectRunner",
            "--direct_num_workers=2",
            "--direct_running_mode=multi_processing",
            "--format",
            "parquet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "27 rows in 4 parquet shards (sentence level" in r.stdout
    local = str(tmp_path / "local")
    hubembed.extract(src, local, model=model, shard_size=8, format="parquet", quiet=True, cache=False)
    _same_output(local, out)
    np.testing.assert_array_equal(hubembed.open_extraction(out).vectors(), hubembed.open_extraction(local).vectors())
    with pytest.raises(OutputError, match="already holds an extraction; a Beam run does not resume"):
        beam.extract(src, out, model=model)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "hubembed",
            "extract",
            src,
            "-o",
            str(tmp_path / "x"),
            "--model",
            model,
            "--direct_num_workers=2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "unrecognized arguments: --direct_num_workers=2" in r.stderr


TEXTS = [" ".join("the quick brown fox jumps over the lazy dog".split()[: 1 + i % 9]) + f" {i}" for i in range(40)]


def _close_to(ref: dict, model_id: str, key_of=lambda r: r.example, result_of=lambda r: r):
    """A Beam matcher (it runs inside the pipeline, on pickled copies): every text once, each vector as ``ref``."""

    def check(results):
        got = {key_of(r): result_of(r) for r in results}
        assert sorted(got) == sorted(ref), (sorted(got)[:3], len(got))
        for k, r in got.items():
            assert r.model_id == model_id and np.abs(r.inference - ref[k]).max() <= 1e-5, k

    return check


@pytest.mark.slow
def test_run_inference_with_the_model_handler_equals_embed(tiny_models, tiny_encoders):
    import apache_beam as ab
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
    from apache_beam.testing.util import assert_that

    path, enc = tiny_models["tf2_dict"], tiny_encoders["tf2_dict"]
    cls = dict(zip(TEXTS, enc.embed(TEXTS, pooling="cls", layers="-2:")))
    mean = dict(zip(TEXTS, enc.embed(TEXTS, pooling="mean", layers="-2:")))
    by_key = {t.split()[-1]: v for t, v in cls.items()}
    loads = beam.LOADS["count"]
    handler = beam.ModelHandler(path, pooling="cls", layers="-2:", max_batch_size=16)
    with ab.Pipeline() as p:
        texts = p | ab.Create(TEXTS)
        assert_that(texts | "plain" >> RunInference(handler), _close_to(cls, path))
        keyed = texts | ab.Map(lambda t: (t.split()[-1], t)) | "keyed" >> RunInference(KeyedModelHandler(handler))
        assert_that(keyed, _close_to(by_key, path, lambda kv: kv[0], lambda kv: kv[1]), label="keyed check")
        args = {"pooling": "mean"}
        assert_that(texts | "mean" >> RunInference(handler, inference_args=args), _close_to(mean, path), "mean check")
    assert 1 <= beam.LOADS["count"] - loads <= 3  # at most one load per RunInference, in this one process


def test_the_model_handler_checks_its_options_before_the_pipeline_runs(tiny_models):
    from apache_beam.ml.inference.base import RunInference

    from hubembed.errors import InputError

    with pytest.raises(InputError, match="pooling='avg'"):
        beam.ModelHandler(tiny_models["tf2_dict"], pooling="avg")
    handler = beam.ModelHandler(tiny_models["tf2_dict"])
    import apache_beam as ab

    p = ab.Pipeline()
    with pytest.raises(InputError, match=r"inference_args \['colour'\]: not spec fields"):
        p | ab.Create(["x"]) | RunInference(handler, inference_args={"colour": "red"})  # when it is applied
    assert handler.get_num_bytes(["ab", "é"]) == 4 and handler.get_metrics_namespace() == "hubembed"
    handler.update_model_path("minilm")
    assert handler.model == "minilm"


@pytest.mark.slow
def test_run_inference_on_two_worker_processes_loads_the_model_once_per_worker(tiny_models, tiny_encoders, tmp_path):
    """DirectRunner in multi-processing mode: the handler is pickled to 2 worker processes, each loads the model
    once (Beam's own load counter), and the vectors written by the workers equal Encoder.embed."""
    import apache_beam as ab
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    path, enc = tiny_models["tf2_dict"], tiny_encoders["tf2_dict"]
    out = str(tmp_path / "vectors")
    opts = PipelineOptions(["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    p = ab.Pipeline(options=opts)
    (
        p
        | ab.Create(TEXTS)
        | RunInference(beam.ModelHandler(path, max_batch_size=8))
        | ab.Map(lambda r: json.dumps([r.example, r.inference.tolist(), os.getpid()]))
        | ab.io.WriteToText(out)
    )
    result = p.run()
    result.wait_until_finish()
    rows = [json.loads(line) for f in os.listdir(tmp_path) if f.startswith("vectors") for line in open(tmp_path / f)]
    pids = {pid for _, _, pid in rows}
    assert sorted(t for t, _, _ in rows) == sorted(TEXTS) and os.getpid() not in pids and 1 <= len(pids) <= 2
    ref = dict(zip(TEXTS, enc.embed(TEXTS)))
    assert max(np.abs(np.asarray(v) - ref[t]).max() for t, v, _ in rows) <= 1e-5
    loads = result.metrics().query(
        MetricsFilter().with_namespace("hubembed").with_name("load_model_latency_milli_secs")
    )
    assert sum(d.committed.count for d in loads["distributions"]) == len(pids)
