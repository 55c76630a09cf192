#!/usr/bin/env bash
# Install hubembed with its dev extras into .venv (TensorFlow 2.20) and run the whole test suite (lint and
# format check first); then the user-facing paths on TensorFlow 2.21 and Python 3.12 (scripts/test_second_minor.sh;
# SECOND_MINOR=0 leaves it out). Extra arguments pass to the first pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
TF=2.20 bash scripts/venv.sh dev,garden,beam,parquet,analysis,plot,spark,int8,kaggle,projector,ann
.venv/bin/ruff check hubembed tests scripts benchmarks examples packaging
.venv/bin/ruff format --check hubembed tests scripts benchmarks examples packaging
# Types on the per-text pipeline and the corpus stage (the seams between stages; settings in pyproject.toml).
.venv/bin/mypy --follow-imports=silent hubembed/_pipeline hubembed/_corpus
# Debian's chromium for the Embedding Projector's browser test (does nothing when it is installed).
bash scripts/chromium.sh
.venv/bin/python -m pytest "$@"
if [ "${SECOND_MINOR:-1}" != "0" ]; then
  bash scripts/test_second_minor.sh -q -ra --durations=10
fi
