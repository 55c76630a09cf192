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
def test_notebook_runs_end_to_end(path, minilm, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    # Small settings for the test run; the kernel inherits the session's HUBEMBED_CACHE (minilm converted).
    monkeypatch.setenv("HUBEMBED_NOTEBOOK_TRAIN", "300")
    monkeypatch.setenv("HUBEMBED_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Error" not in "".join(o.get("ename", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    if os.path.basename(path) == "keras_classifier.ipynb":
        assert "dev accuracy, frozen encoder:" in text and "dev accuracy, top 2 blocks fine-tuned:" in text
        assert "blocks fine-tuned: ['4', '5']" in text and "max |reloaded - original|" in text
