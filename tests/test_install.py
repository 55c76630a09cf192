"""Installing hubembed keeps the TensorFlow the user has.

A fresh virtual environment on Python 3.12 (Colab's) gets TensorFlow 2.21's stack first, as a notebook or an
image already has it; then hubembed is installed from this checkout, then Model Garden the way the README
says for 2.21. `pip list` before and after: no package the user had changes version. And the README's
warning is checked, not assumed: Model Garden's release pins TensorFlow 2.20, which 2.21 does not satisfy.
"""

import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "3.12"
STACK = ["tensorflow==2.21.*", "tensorflow-text==2.21.*", "tf-keras==2.21.*", "setuptools<81"]
TF_STACK = ("tensorflow", "tensorflow-text", "tf-keras", "keras")


def _interpreter() -> str:
    """Python 3.12 from PATH or pyenv; under CI a missing interpreter fails the test instead of skipping it."""
    env = dict(os.environ, PYENV_VERSION=os.environ.get("PYENV_VERSION", "3.12.1"))
    found = shutil.which(f"python{PYTHON}")
    if found:
        ok = subprocess.run([found, "--version"], env=env, capture_output=True, text=True)
        if ok.returncode == 0 and ok.stdout.startswith(f"Python {PYTHON}"):
            return found
    if os.environ.get("CI"):
        pytest.fail(f"python{PYTHON} is needed for the install test (pyenv or the system's)")
    pytest.skip(f"no python{PYTHON} on this machine")


def _pip(venv, *args, timeout=1800):
    cmd = [os.path.join(venv, "bin", "python"), "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _packages(venv):
    listed = json.loads(_pip(venv, "list", "--format=json"))
    return {p["name"].lower().replace("_", "-"): p["version"] for p in listed}


def _changed(before, after):
    return {name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version}


@pytest.fixture(scope="module")
def user_venv(tmp_path_factory):
    """A fresh venv with TensorFlow 2.21's stack, as the user has it."""
    python = _interpreter()
    venv = str(tmp_path_factory.mktemp("install") / "venv")
    env = dict(os.environ, PYENV_VERSION=os.environ.get("PYENV_VERSION", "3.12.1"))
    subprocess.run([python, "-m", "venv", venv], check=True, env=env)
    _pip(venv, "install", "-q", *STACK)
    return venv


@pytest.mark.slow
def test_installing_hubembed_and_model_garden_changes_none_of_the_users_tensorflow(user_venv):
    before = _packages(user_venv)
    assert before["tensorflow"].startswith("2.21.") and before["tf-keras"].startswith("2.21.")

    _pip(user_venv, "install", "-q", ROOT)
    after = _packages(user_venv)
    assert "hubembed" in after
    assert _changed(before, after) == {}, "installing hubembed changed the user's packages"

    # Model Garden on 2.21, exactly as the README says: what its BERT code imports, then the release itself
    # without its TensorFlow pin.
    _pip(user_venv, "install", "-q", f"{ROOT}[garden-deps]")
    _pip(user_venv, "install", "-q", "--no-deps", "tf-models-official==2.20.0")
    final = _packages(user_venv)
    assert _changed(before, final) == {}, "installing Model Garden changed the user's packages"
    assert {name: final[name] for name in TF_STACK} == {name: before[name] for name in TF_STACK}

    probe = (
        "import tensorflow as tf, hubembed, hubembed.garden\n"
        "from official.nlp import modeling\n"
        "print(tf.__version__, hubembed.__version__, modeling.networks.BertEncoderV2.__name__)"
    )
    run = subprocess.run(
        [os.path.join(user_venv, "bin", "python"), "-c", probe], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    tf_version, _, network = run.stdout.split()
    assert tf_version == before["tensorflow"] and network == "BertEncoderV2"


@pytest.mark.slow
def test_model_gardens_release_pins_tensorflow_2_20_as_the_readme_warns(user_venv):
    """Why 2.21 takes Model Garden with --no-deps: the release's own metadata (as pip reads it) pins 2.20,
    which the user's 2.21 does not satisfy, so pip would downgrade TensorFlow to satisfy it."""
    from packaging.requirements import Requirement

    report = os.path.join(os.path.dirname(user_venv), "report.json")
    _pip(
        user_venv,
        *("install", "-q", "--dry-run", "--no-deps", "--ignore-installed", "--report", report),
        "tf-models-official==2.20.0",  # installed by the test above: --ignore-installed reads the release anyway
    )
    with open(report) as f:
        (planned,) = json.load(f)["install"]
    pins = [Requirement(r) for r in planned["metadata"]["requires_dist"]]
    tf_pin = next(r for r in pins if r.name == "tensorflow")
    installed = _packages(user_venv)["tensorflow"]
    assert str(tf_pin.specifier) == "~=2.20.0"
    assert installed.startswith("2.21.") and not tf_pin.specifier.contains(installed)
