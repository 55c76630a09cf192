"""The exported SavedModel against ``Encoder.embed``: first pass in fresh processes, warm second pass.

    python benchmarks/bench_export.py [--rounds 3] [--n 1000]

minilm (all-MiniLM-L6-v2) is exported once with ``layers="-4:", combine="mean", pooling="mean",
normalize=True`` (a temporary folder); the same spec is given to ``Encoder.embed``. Pipelines:

  hubembed        hubembed.load("minilm").embed(texts, spec=spec)             (hubembed's defaults: token budget)
  export          tf.saved_model.load(out)(tf.constant(texts)): one call       (the graph sorts and chunks inside)
  hubembed b32    embed called on batches of 32 texts in input order            (what a serving client sends)
  export b32      the SavedModel called on the same batches of 32

The export's processes import tensorflow and tensorflow_text only (hubembed is never imported there).
Each round starts one fresh process per pipeline, interleaved: import + load, a warm-up call on 64 STS-B dev
sentences (process start -> these first vectors: "start-up"), then a first pass over --n STS-B test
sentences that process has never seen, and a second pass over the same ones. Best of --rounds per column.
Ratios are sentences per second, each export pipeline over its hubembed twin (> 1: the export is faster). A
shared 2-core machine swings when something else runs: the load average is printed first; compare ratios, not
absolute times.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

T0 = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")
SPEC = dict(layers="-4:", combine="mean", pooling="mean", normalize=True)
PIPELINES = ("hubembed", "export", "hubembed b32", "export b32")
BASE = {"export": "hubembed", "export b32": "hubembed b32"}  # each export pipeline against its hubembed twin


def stsb(split):
    with open(os.path.join(DATA, "stsb", f"stsb-en-{split}.csv"), encoding="utf-8") as f:
        rows = list(csv.reader(f))
    start = 1 if rows and rows[0][0].lower().startswith("sentence") else 0
    return [s for r in rows[start:] for s in r[:2]]


# -- one fresh process per pipeline and round ----------------------------------------------------------------
def _export_fn(out, batch):
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

    model = tf.saved_model.load(out)

    def embed(texts):
        if batch is None:
            return model(tf.constant(texts)).numpy()
        return np.concatenate([model(tf.constant(texts[i : i + batch])).numpy() for i in range(0, len(texts), batch)])

    return embed


def _hubembed_fn(batch):
    import numpy as np

    import hubembed

    enc = hubembed.load("minilm")
    spec = hubembed.EmbedSpec(**SPEC)

    def embed(texts):
        if batch is None:
            return enc.embed(texts, spec=spec)
        return np.concatenate([enc.embed(texts[i : i + batch], spec=spec) for i in range(0, len(texts), batch)])

    return embed


def child(name, out, n):
    """Time one pipeline in this (fresh) process; print the timings as JSON."""
    batch = 32 if name.endswith("b32") else None
    if name.startswith("hubembed"):
        embed = _hubembed_fn(batch)
    else:
        sys.meta_path.insert(0, _NoHubembed())  # the export's process runs without hubembed
        embed = _export_fn(out, batch)
    loaded = time.perf_counter() - T0
    embed(stsb("dev")[:64])
    startup = time.perf_counter() - T0
    texts = stsb("test")[:n]
    t = time.perf_counter()
    first = embed(texts)
    first_s = time.perf_counter() - t
    t = time.perf_counter()
    embed(texts)
    second_s = time.perf_counter() - t
    path = os.path.join(os.path.dirname(out), f"{name.replace(' ', '_')}.npy")
    __import__("numpy").save(path, first)
    print(json.dumps({"loaded": loaded, "startup": startup, "first": first_s, "second": second_s, "vectors": path}))


class _NoHubembed:
    """A meta-path finder that makes ``import hubembed`` fail."""

    def find_spec(self, name, path=None, target=None):
        if name == "hubembed" or name.startswith("hubembed."):
            raise ImportError(f"{name} is blocked in the export's process")
        return None


def run_child(name, out, n):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--out", out, "--n", str(n)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"{name}: {r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# -- the parent ---------------------------------------------------------------------------------------------
def export_once(folder):
    import hubembed

    enc = hubembed.load("minilm")
    t = time.perf_counter()
    out = enc.export(os.path.join(folder, "minilm-export"), **SPEC)
    return out, time.perf_counter() - t


def report(best, n, export_s):
    import numpy as np

    print(f"\nexport written in {export_s:.1f} s; {n} STS-B test sentences; best of each column\n")
    print(f"  {'pipeline':<14}{'loaded s':>10}{'start-up s':>12}{'1st pass /s':>13}{'2nd pass /s':>13}")
    for k in PIPELINES:
        b = best[k]
        print(f"  {k:<14}{b['loaded']:>10.2f}{b['startup']:>12.2f}{n / b['first']:>13.1f}{n / b['second']:>13.1f}")
    print()
    for k, twin in BASE.items():
        b, base = best[k], best[twin]
        print(
            f"  {k + ' / ' + twin:<26} first pass {base['first'] / b['first']:.2f}x, "
            f"second pass {base['second'] / b['second']:.2f}x, start-up {base['startup'] / b['startup']:.2f}x"
        )
    print("  (> 1: the export is faster)")
    ref = np.load(best["hubembed"]["vectors"])
    for k in PIPELINES[1:]:
        print(f"  max |{k} - hubembed| = {np.abs(np.load(best[k]['vectors']) - ref).max():.2e}")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--child", choices=PIPELINES)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.out, args.n)
    import tensorflow as tf

    import hubembed

    print(
        f"# hubembed {hubembed.__version__}, tensorflow {tf.__version__}, {os.cpu_count()} cores, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; all-MiniLM-L6-v2, spec {SPEC}"
    )
    folder = tempfile.mkdtemp(prefix="bench-export-")
    try:
        out, export_s = export_once(folder)
        best = {k: None for k in PIPELINES}
        for _ in range(args.rounds):
            for k in PIPELINES:
                r = run_child(k, out, args.n)
                best[k] = r if best[k] is None else {m: min(best[k][m], r[m]) for m in r if m != "vectors"}
                best[k]["vectors"] = r["vectors"]
        report(best, args.n, export_s)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
