"""The peer of benchmarks/bench_int8.py: sentence-transformers' ONNX backend, one worker process per pipeline and round.

    .venv-onnx/bin/python benchmarks/onnx_peer.py --worker st-onnx-int8-vnni --n 1000 --t0 $(date +%s.%N)

Runs inside the peer venv that benchmarks/onnx_peer_venv.sh makes (sentence-transformers 5.7, optimum-onnx,
onnxruntime; hubembed is not installed there), on the models it exported into VENV/models/minilm-onnx. Same
protocol as bench_int8.py's own workers (bench_int8.measure, which prints `RESULT {json}`): import the
framework (torch, which sentence-transformers imports whichever backend it runs, and onnxruntime), load, warm
up, first and second pass per data set, memory from /proc/self/status, and with --quality the quality vectors
after all that. The int8 files are those export_dynamic_quantized_onnx_model writes: the "avx2" config
quantizes to uint8 (model_quint8_avx2.onnx), "avx512_vnni" to int8 (model_qint8_avx512_vnni.onnx).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_int8 import _status, measure  # noqa: E402  (stdlib-only at import time)

MODEL_DIR = os.path.join(os.path.dirname(HERE), ".venv-onnx", "models", "minilm-onnx")
FILES = {
    "st-onnx-int8-avx2": "onnx/model_quint8_avx2.onnx",
    "st-onnx-int8-vnni": "onnx/model_qint8_avx512_vnni.onnx",
    "st-onnx-f32": "onnx/model.onnx",
}


def builder(model_dir):
    def build(name):
        import onnxruntime  # noqa: F401
        import torch  # noqa: F401  (the framework: sentence-transformers imports it for every backend)

        rss = _status("VmRSS:")
        from sentence_transformers import SentenceTransformer

        path = os.path.join(model_dir, FILES[name])
        if not os.path.exists(path):
            raise SystemExit(f"{path}: missing; make it with: bash benchmarks/onnx_peer_venv.sh")
        st = SentenceTransformer(model_dir, device="cpu", backend="onnx", model_kwargs={"file_name": FILES[name]})
        loaded = str(st[0].auto_model.path)
        if os.path.realpath(loaded) != os.path.realpath(path):
            raise SystemExit(f"{name}: sentence-transformers loaded {loaded}, not {path}")
        return rss, lambda texts: st.encode(texts, batch_size=32, convert_to_numpy=True), None

    return build


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", required=True, choices=sorted(FILES))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--t0", type=float, required=True, help="the time the parent started this process")
    ap.add_argument("--model-dir", default=MODEL_DIR)
    ap.add_argument("--quality", help="an .npz path for the quality vectors (after the timed passes)")
    args = ap.parse_args(argv)
    return measure(builder(args.model_dir), args.worker, args.t0, args.n, args.quality)


if __name__ == "__main__":
    sys.exit(main())
