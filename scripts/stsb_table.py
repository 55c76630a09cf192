"""STS-B Spearman x 100 (cosine similarity) for cls, pooled, mean and max pooling over every layer.

    python scripts/stsb_table.py [--model minilm] [--split test] [--out docs/stsb-layers.md]

Each pooling is one pass over the sentences with layers="all", combine="none" (all layers at once).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def spearman(a: np.ndarray, b: np.ndarray, gold) -> float:
    from scipy.stats import spearmanr

    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return 100 * spearmanr((a * b).sum(-1), gold).correlation


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--split", default="test", choices=("train", "dev", "test"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "stsb-layers.md"))
    args = ap.parse_args(argv)

    import hubembed

    with open(os.path.join(DATA, "stsb", f"stsb-en-{args.split}.csv"), encoding="utf-8") as f:
        rows = list(csv.reader(f))
    gold = [float(r[2]) for r in rows]
    enc = hubembed.load(args.model)
    L = enc.signature.num_layers
    table = {}
    for pooling in ("cls", "mean", "max"):
        a = enc.embed([r[0] for r in rows], layers="all", combine="none", pooling=pooling)  # [N, L, H]
        b = enc.embed([r[1] for r in rows], layers="all", combine="none", pooling=pooling)
        table[pooling] = [spearman(a[:, i], b[:, i], gold) for i in range(L)]
    pooled = spearman(enc.embed([r[0] for r in rows], pooling="pooled"),
                      enc.embed([r[1] for r in rows], pooling="pooled"), gold)
    lines = [
        f"# STS-B {args.split}: Spearman x 100 of cosine similarity, per layer and pooling",
        "",
        f"Model `{args.model}` ({L} layers, hidden {enc.signature.hidden_size}); {len(rows)} pairs; "
        f"hubembed {hubembed.__version__}. Layers are 0-based Transformer blocks (HF hidden_states[i + 1]).",
        "Made by `python scripts/stsb_table.py`.",
        "",
        "| layer | cls | mean | max |",
        "| --- | --- | --- | --- |",
    ]
    for i in range(L):
        lines.append(f"| {i} | {table['cls'][i]:.2f} | {table['mean'][i]:.2f} | {table['max'][i]:.2f} |")
    lines += ["", f"pooled_output (tanh pooler over the last layer's [CLS]): {pooled:.2f}", ""]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
