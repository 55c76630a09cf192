"""Every notebook in notebooks/ runs end to end (offline, on the embedded model) and is stored without outputs."""

import glob
import os

import pytest

NOTEBOOKS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "notebooks", "*.ipynb")))
pytestmark = pytest.mark.slow


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_stored_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path}: strip the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_end_to_end(path, minilm, monkeypatch, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    # Small settings for the test run; the kernel inherits the session's HUBEMBED_CACHE (minilm converted).
    monkeypatch.setenv("HUBEMBED_NOTEBOOK_TRAIN", "300")
    monkeypatch.setenv("HUBEMBED_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("HUBEMBED_NOTEBOOK_PAIRS", "200")
    monkeypatch.setenv("HUBEMBED_NOTEBOOK_FIT", "600")
    monkeypatch.setenv("HUBEMBED_NOTEBOOK_FIGS", str(tmp_path / "figures"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(path)}}
    ).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Error" not in "".join(o.get("ename", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    name = os.path.basename(path)
    figures = sorted(os.listdir(tmp_path / "figures")) if (tmp_path / "figures").exists() else []
    for fig in figures:
        assert open(tmp_path / "figures" / fig, "rb").read(4) == b"\x89PNG", fig
    expected = {
        "quickstart.ipynb": [
            "quickstart done",
            "pooled_output   (3, 384)",
            "encoder_outputs (6, 3,",
            "text[13:20] = 'naïveté'",
        ],
        "layers_pooling_stsb.ipynb": ["stsb notebook done", "best on STS-B: layer"],
        "probes_sst2.ipynb": ["probes notebook done", "recommended: layer"],
        "whitening.ipynb": ["whitening notebook done", "extract with the transform: dim 128 whiten"],
    }
    for marker in expected.get(name, []):
        assert marker in text, (name, marker, text[-2000:])
    pngs = {
        "layers_pooling_stsb.ipynb": ["layer_change.png", "layer_similarity.png", "token_importance.png"],
        "probes_sst2.ipynb": ["sst2_pca.png", "sst2_probe.png"],
        "whitening.ipynb": ["anisotropy.png"],
    }
    assert figures == pngs.get(name, figures)
    if name == "keras_classifier.ipynb":
        assert "dev accuracy, frozen encoder:" in text and "dev accuracy, top 2 blocks fine-tuned:" in text
        assert "blocks fine-tuned: ['4', '5']" in text and "max |reloaded - original|" in text
