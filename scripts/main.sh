#!/usr/bin/env bash
# The main job on the embedded default model (all-MiniLM-L6-v2, converted on first use): inspect it, then
# embed a corpus to disk (SST-2 dev, 872 sentences from ../shared/data) as resumable shards + a manifest.
#   bash scripts/main.sh [OUT]      (default OUT: out/sst2-dev; a second run resumes/refuses instead of redoing)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
OUT="${1:-out/sst2-dev}"
.venv/bin/hubembed inspect minilm
.venv/bin/hubembed extract ../shared/data/sst2/dev.tsv --column 0 -o "$OUT" --model minilm --resume
.venv/bin/python - "$OUT" <<'PY'
import sys
import hubembed
ex = hubembed.open_extraction(sys.argv[1], verify=True)
h = ex.header
print(f"{ex!r}\n  model {h['model']} (weights sha256 {h['weights_sha256'][:12]}...), spec {h['spec']}")
print(f"  row 0 (id {ex.ids()[0]}): {ex[0][:5]} ...")
PY
