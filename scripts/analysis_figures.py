"""The analysis figures for docs/analysis.md: SST-2 probe table + plot, layer views on STS-B, token importance.

    python scripts/analysis_figures.py [--model minilm] [--out docs]

Features come from hubembed.analysis.features (cached: a rerun does not encode again).
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

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def sst2(split):
    rows = [
        line.rstrip("\n").rsplit("\t", 1) for line in open(os.path.join(DATA, "sst2", f"{split}.tsv"), encoding="utf-8")
    ]
    return [r[0] for r in rows], np.array([int(r[1]) for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "docs"))
    args = ap.parse_args(argv)

    import hubembed
    from hubembed import analysis, plots

    img = os.path.join(args.out, "img")
    enc = hubembed.load(args.model)
    tx, ty = sst2("train")
    dx, dy = sst2("dev")
    tf_, df_ = (analysis.features(enc, x, poolings=("cls", "mean", "max")) for x in (tx, dx))
    table = analysis.probe(tf_, ty, dev=(df_, dy))
    plots.probe_table(table, os.path.join(img, "sst2-probe.png"), title=f"SST-2: linear probe per layer ({args.model})")
    best = table.best()
    plots.pca(
        analysis.pca2(df_.get(best["layer"], best["pooling"])),
        os.path.join(img, "sst2-pca.png"),
        labels=np.where(dy == 1, "positive", "negative"),
        title=f"SST-2 dev, layer {best['layer']} {best['pooling']} pooling: 2-D PCA",
    )

    with open(os.path.join(DATA, "stsb", "stsb-en-test.csv"), encoding="utf-8") as f:
        sents = [r[0] for r in csv.reader(f)]
    fs = analysis.features(enc, sents, poolings=("cls", "mean"))
    sim = analysis.layer_similarity(fs, "cls")
    plots.layer_similarity(
        sim,
        fs.layers,
        os.path.join(img, "layer-similarity.png"),
        title=f"cosine between layers' [CLS] vectors, STS-B test ({args.model})",
    )
    change = analysis.layer_change(fs, "mean")
    plots.layer_change(
        change,
        fs.layers,
        os.path.join(img, "layer-change.png"),
        title=f"mean-pooled vectors: change per block, STS-B test ({args.model})",
    )
    text = "A man is playing a flute while a woman dances."
    pieces, w = analysis.token_importance(enc, text, layer=-1)
    plots.token_importance(
        pieces,
        w,
        os.path.join(img, "token-importance.png"),
        title=f"attention received in the last block ({args.model})",
    )

    lines = [
        f"# Analysis figures ({args.model})",
        "",
        "Made by `python scripts/analysis_figures.py` (and `scripts/stsb_whitening.py`,",
        "[stsb-whitening.md](stsb-whitening.md)).",
        "",
        "## SST-2: a linear probe per layer x pooling",
        "",
        "Frozen sentence vectors of all 6,920 training sentences, standardised, `LogisticRegression(C=1)`; "
        "5-fold cross-validation on train (mean ± std) and trained on all of train, scored on the 872 dev "
        "sentences (`hubembed probe --data sst2/train.tsv --dev sst2/dev.tsv --text-column 0 "
        "--label-column 1 --poolings cls,mean,max`).",
        "",
        table.to_markdown(),
        "",
        table.recommendation(),
        "",
        "![SST-2 probe](img/sst2-probe.png)",
        "![SST-2 PCA](img/sst2-pca.png)",
        "",
        "## Layer views on the 1,379 STS-B test first sentences",
        "",
        "Mean over sentences of the cosine between layer i's and layer j's [CLS] vector:",
        "",
        "| layer | " + " | ".join(str(x) for x in fs.layers) + " |",
        "| --- |" + " --- |" * len(fs.layers),
    ]
    for name, row in zip(fs.layers, sim):
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    steps = [f"{a}->{b}" for a, b in zip(fs.layers[:-1], fs.layers[1:])]
    lines += [
        "",
        "Mean-pooled vectors, change from one layer to the next: "
        + ", ".join(f"{s} {r:.3f}" for s, r in zip(steps, change["relative"]))
        + " (relative L2).",
        "",
        "![layer similarity](img/layer-similarity.png) ![layer change](img/layer-change.png)",
        "",
        f'Attention received in the last block by each piece of "{text}" (mean over heads and queries):',
        "",
        " ".join(f"`{p}` {x:.3f}" for p, x in zip(pieces, w)),
        "",
        "![token importance](img/token-importance.png)",
        "",
    ]
    with open(os.path.join(args.out, "analysis.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
