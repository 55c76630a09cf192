#!/usr/bin/env bash
# Install hubembed with its dev extras into .venv and run the whole test suite (lint and format check first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh dev,garden,beam,parquet,analysis,plot,spark,int8
.venv/bin/ruff check hubembed tests scripts benchmarks examples
.venv/bin/ruff format --check hubembed tests scripts benchmarks examples
.venv/bin/python -m pytest "$@"
