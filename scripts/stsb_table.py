"""STS-B Spearman x 100 (cosine similarity) per layer for cls, mean, max and attention pooling.

    python scripts/stsb_table.py [--model minilm] [--split test] [--out docs/stsb-layers.md]

cls/mean/max: one pass with layers="all", combine="none" (all layers at once). The embedding
output and attention pooling come from the Model Garden fallback; attention pooling of layer i
weights layer i's tokens by the attention they receive in layer i (one pass per layer).
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
    firsts, seconds = [r[0] for r in rows], [r[1] for r in rows]
    pairs = {
        "cls": dict(pooling="cls"),
        "mean": dict(pooling="mean"),
        "max": dict(pooling="max"),
        "mean_nospecial": dict(pooling="mean", special_tokens=False),
    }
    for name, kw in pairs.items():
        a = enc.embed(firsts, layers=["embeddings"] + list(range(L)), combine="none", **kw)  # [N, 1 + L, H]
        b = enc.embed(seconds, layers=["embeddings"] + list(range(L)), combine="none", **kw)
        table[name] = [spearman(a[:, i], b[:, i], gold) for i in range(L + 1)]
    for name, special in (("attention", True), ("attention_nospecial", False)):
        table[name] = [float("nan")] + [
            spearman(
                enc.embed(firsts, layers=i, pooling="attention", special_tokens=special),
                enc.embed(seconds, layers=i, pooling="attention", special_tokens=special),
                gold,
            )
            for i in range(L)
        ]
    pooled = spearman(enc.embed(firsts, pooling="pooled"), enc.embed(seconds, pooling="pooled"), gold)
    lines = [
        f"# STS-B {args.split}: Spearman x 100 of cosine similarity, per layer and pooling",
        "",
        f"Model `{args.model}` ({L} layers, hidden {enc.signature.hidden_size}); {len(rows)} pairs; "
        f"hubembed {hubembed.__version__}. Layers are 0-based Transformer blocks (HF hidden_states[i + 1]); "
        f"`embeddings` is the embedding-layer output (HF hidden_states[0]).",
        "Attention pooling weights each token by the attention it receives in the same layer (mean over heads "
        "and queries). The embedding row and attention pooling come from the Model Garden fallback.",
        "Made by `python scripts/stsb_table.py`.",
        "",
        "| layer | cls | mean | max | attention | mean, no [CLS]/[SEP] | attention, no [CLS]/[SEP] |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    cols = ("cls", "mean", "max", "attention", "mean_nospecial", "attention_nospecial")
    for i in range(L + 1):
        label = "embeddings" if i == 0 else str(i - 1)
        cells = " | ".join("-" if np.isnan(table[c][i]) else f"{table[c][i]:.2f}" for c in cols)
        lines.append(f"| {label} | {cells} |")
    lines += [
        "",
        "`-`: not defined (the embedding output has no attention; its [CLS] vector is the same for every "
        "text, so the correlation is undefined).",
        "",
        f"pooled_output (tanh pooler over the last layer's [CLS]): {pooled:.2f}",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
