"""Session fixtures: the tiny Hub-format models (hubembed.testing) and the embedded minilm.

Nothing is downloaded. The embedded model is converted once per session into a
private cache folder (so the conversion itself is exercised on every run).
"""

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", message=".*pkg_resources.*")

import pytest  # noqa: E402

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
DATA = os.path.join(SHARED, "data")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{kind: encoder folder} for every hubembed.testing kind (same weights)."""
    from hubembed import testing

    return testing.build_all(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session", autouse=True)
def hubembed_cache(tmp_path_factory):
    """A private HUBEMBED_CACHE for the session (every test: the feature cache of extract lives there too)."""
    path = str(tmp_path_factory.mktemp("hubembed-cache"))
    old = os.environ.get("HUBEMBED_CACHE")
    os.environ["HUBEMBED_CACHE"] = path
    yield path
    if old is None:
        os.environ.pop("HUBEMBED_CACHE", None)
    else:
        os.environ["HUBEMBED_CACHE"] = old


@pytest.fixture(scope="session")
def minilm(hubembed_cache):
    """The embedded default, converted into the session cache and loaded."""
    import hubembed

    return hubembed.load("minilm")


@pytest.fixture(scope="session")
def minilm_source():
    from hubembed import registry
    from hubembed._hub import embedded

    return embedded.source_dir(registry.get("minilm"))


@pytest.fixture(scope="session")
def stsb_sentences():
    import csv

    with open(os.path.join(DATA, "stsb", "stsb-en-test.csv"), encoding="utf-8") as f:
        rows = list(csv.reader(f))
    start = 1 if rows and rows[0][0].lower().startswith("sentence") else 0
    return [s for r in rows[start:] for s in r[:2]]


@pytest.fixture(scope="session")
def tiny_encoders(tiny_models):
    """{kind: hubembed.Encoder} loaded once."""
    import hubembed

    return {kind: hubembed.load(path) for kind, path in tiny_models.items()}


@pytest.fixture(scope="session")
def garden_models(tmp_path_factory, tiny_models):
    """Encoders for the Model Garden fallback tests: the two kinds Model Garden's own exporter writes,
    and a TF1 module whose GELU is the tanh approximation (as the original BERT's)."""
    from hubembed import testing

    root = str(tmp_path_factory.mktemp("garden"))
    pre = os.path.join(os.path.dirname(tiny_models["tf2_dict"]), "preprocess")
    out = {kind: testing.build(kind, os.path.join(root, kind), preprocess_from=pre) for kind in testing.GARDEN_KINDS}
    out["tf1_tanh"] = testing.build(
        "tf1_hub", os.path.join(root, "tf1_tanh"), activation="gelu_tanh", seed=3, preprocess_from=pre
    )
    return out


@pytest.fixture(scope="session")
def mediapipe_python(tmp_path_factory):
    """The Python of a virtual environment with MediaPipe (PyPI ``mediapipe``) and nothing of hubembed or
    TensorFlow: where an on-device export is checked by a tool nobody here wrote."""
    import subprocess
    import sys

    venv = tmp_path_factory.mktemp("mediapipe") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", "mediapipe==1.2.3"], check=True, timeout=1200, capture_output=True)
    return str(venv / "bin" / "python")
