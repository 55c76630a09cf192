#!/usr/bin/env bash
# The main job on the embedded default model (all-MiniLM-L6-v2, converted on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
.venv/bin/hubembed inspect minilm
.venv/bin/hubembed embed --model minilm \
  "A man is playing a guitar." "A man plays the guitar." "The stock market fell sharply today."
