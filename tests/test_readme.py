"""The README's Python examples run as written: every ```python block, in order, in one namespace."""

import csv
import os
import re
import subprocess

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.join(os.path.dirname(__file__), "..")
DATA = os.path.join(ROOT, "..", "shared", "data")
OFFLINE = {'"bert_en_uncased_L-12_H-768_A-12"': '"minilm"'}  # tfhub.dev cannot be reached from the tests


def blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def sst2(name, n):
    with open(os.path.join(DATA, "sst2", name), encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if len(r) >= 2 and r[1] in ("0", "1")][:n]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def _in_mediapipe(python, block, cwd):
    """A block for MediaPipe runs where MediaPipe is installed (without hubembed or TensorFlow)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [python, "-c", block + "\nprint(len(vector))"], capture_output=True, text=True, cwd=str(cwd), env=env
    )
    assert run.returncode == 0 and run.stdout.split()[-1] == "384", run.stderr[-2000:]


def test_every_python_example_of_the_readme_runs(minilm, tmp_path, monkeypatch, mediapipe_python):
    texts, labels = sst2("train.tsv", 120)
    dev_texts, dev_labels = sst2("dev.tsv", 60)
    (tmp_path / "corpus.txt").write_text("\n".join(texts[:20]) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    ns = dict(texts=texts, labels=labels, dev_texts=dev_texts, dev_labels=dev_labels, corpus_texts=texts + dev_texts)
    code = blocks()
    assert len(code) >= 7
    for i, block in enumerate(code):
        for a, b in OFFLINE.items():
            block = block.replace(a, b)
        if "from mediapipe" in block:
            _in_mediapipe(mediapipe_python, block, tmp_path)
            continue
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), ns)
        except Exception as e:  # name the block, keep the cause
            raise AssertionError(f"README python block {i} failed: {e!r}\n{block}") from e
    # What the examples claim they give.
    assert ns["vecs"].shape == (len(texts), 384) and ns["info"].n_tokens.shape == (len(texts),)
    assert ns["ex"].header and len(ns["ex"]) == 20
    assert os.path.isfile("probe.png") and os.path.isfile("whitening.npz")
    assert len(ns["pieces"]) == len(ns["share"]) and abs(sum(ns["share"]) - 1) < 1e-6
