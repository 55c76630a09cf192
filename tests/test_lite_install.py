"""hubembed-lite (``packaging/lite/build.py``): the same package distributed without TensorFlow, installed into a
fresh virtual environment that never sees TensorFlow, embeds with an int8 model converted here (this session's
HUBEMBED_CACHE, as a user copies theirs), equal to this process's int8 vectors; what needs TensorFlow says so."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import hubembed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["A man is playing a guitar.", "Crème brûlée\u200b, naïve café!", "東京都 😀 don't", ""]


def _lite_venv(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "packaging", "lite"))
    try:
        import build
    finally:
        sys.path.pop(0)
    wheel = build.build(str(tmp_path / "dist"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", wheel], check=True, timeout=900, capture_output=True)
    listed = subprocess.run(pip[:-1] + ["list", "--format", "json"], check=True, capture_output=True, text=True)
    return venv, {p["name"].lower() for p in json.loads(listed.stdout)}


@pytest.mark.slow
def test_the_lite_distribution_embeds_without_tensorflow_in_a_fresh_venv(tmp_path):
    expected = hubembed.load("minilm", quantize="int8").embed(TEXTS, pooling="cls", layers="-2:", normalize=True)
    venv, installed = _lite_venv(tmp_path)
    assert "hubembed-lite" in installed and "ai-edge-litert" in installed
    assert not installed & {"tensorflow", "tensorflow-cpu", "tensorflow-text", "tf-keras", "keras", "torch"}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    script = (
        "import json, sys, numpy as np, hubembed\n"
        "enc = hubembed.load('minilm', quantize='int8')\n"
        "np.save(sys.argv[2], enc.embed(json.loads(sys.argv[1]), pooling='cls', layers='-2:', normalize=True))\n"
        "print(hubembed.__file__, any(m.startswith('tensorflow') for m in sys.modules))\n"
    )
    out = tmp_path / "lite.npy"
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script, json.dumps(TEXTS), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    where, tf_loaded = run.stdout.split()
    assert where.startswith(str(venv)) and tf_loaded == "False"  # the installed wheel, not this checkout
    assert np.abs(np.load(out) - expected).max() <= 1e-6
    cli = subprocess.run(
        [str(venv / "bin" / "hubembed"), "embed", "--model", "minilm", "--quantize", "int8", "hello world"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert cli.returncode == 0 and "dim 384" in cli.stdout, cli.stderr[-2000:]
    float32 = subprocess.run(
        [str(venv / "bin" / "hubembed"), "embed", "--model", "minilm", "hello world"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert float32.returncode == 1 and "Traceback" not in float32.stderr
    assert "needs TensorFlow" in float32.stderr and "pip install hubembed" in float32.stderr
