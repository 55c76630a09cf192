#!/usr/bin/env bash
# The peer of benchmarks/bench_int8.py: sentence-transformers' own int8 ONNX backend, in a venv of its own.
#
#   bash benchmarks/onnx_peer_venv.sh [VENV_DIR [MINILM_FOLDER]]
#
# VENV_DIR (default .venv-onnx at the repo root, git-ignored) gets a pinned set that can export ONNX:
# sentence-transformers 6.x cannot (optimum-onnx needs transformers < 4.58), so 5.7.0 with transformers 4.57.6,
# optimum 2.1.0, optimum-onnx 0.1.0, onnxruntime 1.32.0, and torch 2.13.0 (pinned: this machine's CPU wheel; a bare
# `torch` would fetch a multi-GB CUDA build). Skipped when the venv already imports that set.
# Then VENV_DIR/models/minilm-onnx: a copy of hubembed's embedded all-MiniLM-L6-v2 folder (MINILM_FOLDER, default
# found through the main venv), exported to ONNX locally by SentenceTransformer(folder, backend="onnx") (offline:
# nothing is downloaded), plus the dynamically quantized int8 models of
# sentence_transformers.backend.export_dynamic_quantized_onnx_model for the "avx2" and "avx512_vnni" configs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.venv-onnx}"
MINILM="${2:-}"
PY="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PINS=(torch==2.13.0 sentence-transformers==5.7.0 transformers==4.57.6 optimum==2.1.0 optimum-onnx==0.1.0
  onnxruntime==1.32.0)

have_pins() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as md
want = {"torch": "2.13.0", "sentence-transformers": "5.7.0", "transformers": "4.57.6", "optimum": "2.1.0",
        "optimum-onnx": "0.1.0", "onnxruntime": "1.32.0"}
for name, version in want.items():
    assert md.version(name).split("+")[0] == version, (name, md.version(name))
import onnxruntime  # noqa: F401
import optimum.onnxruntime  # noqa: F401
import sentence_transformers.backend  # noqa: F401
EOF
}

if have_pins; then
  echo "$VENV: the pinned set imports; not reinstalled"
else
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -qq "$@"; }
  pip install --upgrade pip wheel
  pip install torch==2.13.0 # first and alone: the CPU wheel on this machine's disk
  pip install "${PINS[@]}"
  have_pins || { echo "$VENV: the pinned set does not import" >&2; exit 1; }
fi
"$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null |
  grep -iE '^(torch|sentence-transformers|transformers|optimum|optimum-onnx|onnxruntime|onnx|numpy|tokenizers) '

if [ -z "$MINILM" ]; then
  MINILM="$("$ROOT/.venv/bin/python" -c 'from hubembed import registry; from hubembed._hub import embedded
print(embedded.source_dir(registry.get("minilm")))')"
fi
OUT="$VENV/models/minilm-onnx"
echo "minilm folder: $MINILM"
grep -qw avx512_vnni /proc/cpuinfo && echo "this CPU has AVX-512 VNNI" || echo "this CPU has no AVX-512 VNNI"
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
cp -r "$MINILM" "$OUT"
"$VENV/bin/python" - "$OUT" <<'EOF'
import os
import sys
import warnings

warnings.filterwarnings("ignore")
from sentence_transformers import SentenceTransformer
from sentence_transformers.backend import export_dynamic_quantized_onnx_model

folder = sys.argv[1]
model = SentenceTransformer(folder, device="cpu", backend="onnx")  # no onnx/model.onnx yet: exported here
model.save(folder)
for config in ("avx2", "avx512_vnni"):
    export_dynamic_quantized_onnx_model(model, config, folder)
for root, _, files in sorted(os.walk(folder)):
    for f in sorted(files):
        if f.endswith(".onnx"):
            p = os.path.join(root, f)
            print(f"wrote {os.path.relpath(p, folder)} ({os.path.getsize(p) / 2**20:.1f} MB) in {folder}")
EOF
