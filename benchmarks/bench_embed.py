"""Sentence-embedding throughput, side by side in one run.

Pipelines, all on the same all-MiniLM-L6-v2 weights, batches of 32:
  recipe    the TF Hub tutorial recipe: preprocess(strings) (pads to 128) + encoder, hub.load'ed SavedModels
  hubembed  hubembed.load("minilm").embed(texts) (mean pooling, defaults)
  st        sentence-transformers encode(batch_size=32), torch CPU

Each pipeline is warmed up once, then timed in interleaved rounds (recipe, hubembed, st, recipe, ...);
the best round of each is reported, because timings on a shared 2-core machine swing when something
else runs. Ratios are hubembed / peer.

    python benchmarks/bench_embed.py [--n 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def stsb(n):
    with open(os.path.join(DATA, "stsb", "stsb-en-test.csv"), encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return [s for r in rows for s in r[:2]][:n]


def sst2(n):
    with open(os.path.join(DATA, "sst2", "test.tsv"), encoding="utf-8") as f:
        return [line.split("\t")[0] for line in f if line.strip()][:n]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000, help="sentences per data set")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    import tensorflow as tf
    import tensorflow_hub as hub
    import torch
    from sentence_transformers import SentenceTransformer

    import hubembed
    from hubembed import registry
    from hubembed._hub import embedded

    enc = hubembed.load("minilm")
    folder = embedded.ensure(registry.get("minilm"))
    pre_sm = hub.load(os.path.join(folder, "preprocess"))
    enc_sm = hub.load(os.path.join(folder, "encoder"))
    st = SentenceTransformer(embedded.source_dir(registry.get("minilm")), device="cpu")

    def recipe(texts):
        out = []
        for i in range(0, len(texts), 32):
            inputs = pre_sm(tf.constant(texts[i : i + 32]))
            out.append(enc_sm(inputs, training=False)["pooled_output"].numpy())
        return np.concatenate(out)

    pipelines = {
        "recipe": recipe,
        "hubembed": lambda texts: enc.embed(texts, batch_size=32),
        "st": lambda texts: st.encode(texts, batch_size=32, convert_to_numpy=True),
    }
    print(
        f"# hubembed {hubembed.__version__}, tensorflow {tf.__version__}, torch {torch.__version__}, "
        f"{os.cpu_count()} cores; all-MiniLM-L6-v2; batch 32; best of {args.rounds} interleaved rounds"
    )
    for name, texts in (("STS-B test", stsb(args.n)), ("SST-2 test", sst2(args.n))):
        tokens = sum(len(r) for r in enc.preprocessor.token_ids(texts))
        for fn in pipelines.values():  # warm-up: loading, tracing
            fn(texts[:64])
        best = {k: float("inf") for k in pipelines}
        for _ in range(args.rounds):
            for k, fn in pipelines.items():
                t0 = time.perf_counter()
                fn(texts)
                best[k] = min(best[k], time.perf_counter() - t0)
        ours = enc.embed(texts)
        ref = SentenceTransformer(modules=[st[0], st[1]], device="cpu").encode(texts, batch_size=32)
        agree = float(np.abs(ours - ref).max())
        rate = {k: len(texts) / v for k, v in best.items()}
        print(f"\n{name}: {len(texts)} sentences, {tokens / len(texts):.1f} word pieces each")
        print(f"  {'pipeline':<10} {'sentences/s':>12}")
        for k in pipelines:
            print(f"  {k:<10} {rate[k]:>12.1f}")
        print(f"  hubembed / recipe = {rate['hubembed'] / rate['recipe']:.2f}x   (target >= 4)")
        print(f"  hubembed / st     = {rate['hubembed'] / rate['st']:.2f}x   (target >= 1.0)")
        print(f"  max |hubembed - st mean pooling| = {agree:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
