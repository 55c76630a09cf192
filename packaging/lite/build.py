"""Build hubembed-lite: the hubembed package as it is, distributed without TensorFlow (int8 models only).

    python packaging/lite/build.py [--out dist/]

Why a second distribution: an extra can add dependencies, never remove them, and hubembed's own distribution
keeps TensorFlow (every Hub format, float32, Model Garden, export, convert and the Keras layer need it). The
lite wheel is built from the same source tree (nothing is forked): this script copies ``hubembed/`` next to
the metadata below and runs ``pip wheel``. What it runs: ``load(..., quantize="int8")`` and every command with
``--quantize int8`` on an int8 model already converted (a HUBEMBED_CACHE copied from a machine where the model
was loaded once with ``quantize="int8"``); anything else says it needs the full distribution before doing any
work. Install one of the two distributions, not both (they hold the same package).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SETUP_CFG = """\
[metadata]
name = hubembed-lite
version = attr: hubembed._version.__version__
description = hubembed without TensorFlow: embeddings from int8 models hubembed converted, run by LiteRT.
long_description = file: README.md
long_description_content_type = text/markdown
license = Apache-2.0

[options]
packages = find:
python_requires = >=3.9
install_requires =
    numpy
    tqdm
    ai-edge-litert>=2.1

[options.package_data]
hubembed = data/*.json, py.typed

[options.entry_points]
console_scripts =
    hubembed = hubembed.cli:run

[options.extras_require]
parquet =
    pyarrow
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61", "wheel"]
build-backend = "setuptools.build_meta"
"""


def build(out: str) -> str:
    """Build the wheel into ``out``; returns its path."""
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hubembed-lite-") as src:
        shutil.copytree(
            os.path.join(ROOT, "hubembed"),
            os.path.join(src, "hubembed"),
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        shutil.copy(os.path.join(HERE, "README.md"), os.path.join(src, "README.md"))
        with open(os.path.join(src, "setup.cfg"), "w", encoding="utf-8") as f:
            f.write(SETUP_CFG)
        with open(os.path.join(src, "pyproject.toml"), "w", encoding="utf-8") as f:
            f.write(PYPROJECT)
        before = set(os.listdir(out))
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", out, src],
            check=True,
        )
    made = sorted(set(os.listdir(out)) - before) or sorted(n for n in os.listdir(out) if n.startswith("hubembed_lite"))
    return os.path.join(out, made[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description="Build the hubembed-lite wheel (no TensorFlow; int8 models only).")
    ap.add_argument("--out", default=os.path.join(ROOT, "dist"))
    print(build(ap.parse_args().out))


if __name__ == "__main__":
    main()
