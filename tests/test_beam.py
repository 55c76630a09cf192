"""hubembed.beam: the extraction as an Apache Beam pipeline on the DirectRunner equals the local run, file by file."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import hubembed
from hubembed.errors import OutputError

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


@pytest.mark.parametrize("level,fmt", [("sentence", "npy"), ("words", "parquet")])
def test_direct_runner_output_equals_the_local_extract(tiny_models, tmp_path, level, fmt):
    model = tiny_models["tf2_dict"]
    src = _corpus(tmp_path / "c.txt")
    args = dict(model=model, level=level, format=fmt, shard_size=10, layers="-2:", cache=False)
    local = str(tmp_path / "local")
    hubembed.extract(src, local, quiet=True, **args)
    loads = beam.LOADS["count"]
    out = str(tmp_path / "beam")
    m = beam.extract(src, out, runner="DirectRunner", **args)
    assert beam.LOADS["count"] - loads == 1  # one worker: the model loaded once, for 6 shards
    assert m["summary"]["runner"] == "DirectRunner" and len(m["shards"]) == 6 and m["rows"] == 52
    _same_output(local, out)
    ex = hubembed.open_extraction(out, verify=True)
    assert ex.level == level and len(ex) == 52


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
