#!/usr/bin/env bash
# Install hubembed with its dev extras into .venv and run the whole test suite (lint and format check first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh dev,garden,beam,parquet,analysis,plot,spark,int8
.venv/bin/ruff check hubembed tests scripts benchmarks examples packaging
.venv/bin/ruff format --check hubembed tests scripts benchmarks examples packaging
# Types on the per-text pipeline and the corpus stage (the seams between stages; settings in pyproject.toml).
.venv/bin/mypy --follow-imports=silent hubembed/_pipeline hubembed/_corpus
.venv/bin/python -m pytest "$@"
