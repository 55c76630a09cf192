#!/usr/bin/env bash
# The second TensorFlow minor on Python 3.12 (Colab's): hubembed's user-facing paths on TensorFlow 2.21 in
# .venv-tf2.21, with Model Garden installed as the README says for 2.21 (scripts/venv.sh, TF=2.21).
# scripts/test.sh runs the whole suite on 2.20 first, then this. Extra pytest arguments pass through.
#   bash scripts/test_second_minor.sh [-x ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYENV_VERSION="${PYENV_VERSION:-3.12.1}"
TF=2.21 VENV=.venv-tf2.21 PYTHON="${PYTHON_SECOND:-python3.12}" \
  bash scripts/venv.sh test,garden,beam,parquet,analysis,plot,spark,int8,kaggle,projector,ann
.venv-tf2.21/bin/python - <<'PY'
import sys, tensorflow as tf, tensorflow_text, tf_keras
print(f"second minor: Python {sys.version.split()[0]}, tensorflow {tf.__version__}, "
      f"tensorflow-text {tensorflow_text.__version__}, tf-keras {tf_keras.__version__}")
assert tf.__version__.startswith("2.21."), tf.__version__
PY
# Load (registry, folders, the loopback download), inspect, every embed output kind, extract + resume,
# HubFeatureLayer fit/save/load in Keras 3 and tf_keras, the Model Garden fallback, export, int8 (with and
# without TensorFlow), the CLI, and every README example.
.venv-tf2.21/bin/python -m pytest -p no:cacheprovider "$@" \
  tests/hub/test_registry.py tests/hub/test_inspect_window.py tests/hub/test_download.py \
  tests/pipeline/test_run.py tests/pipeline/test_int8.py \
  tests/corpus/test_extract.py tests/keras/test_keras.py tests/test_garden.py \
  tests/formats/test_export.py tests/test_tf_free.py tests/test_cli.py tests/test_readme.py
