"""STS-B Spearman x 100 per layer, raw vs centred vs whitened (BERT-whitening), and the anisotropy behind it.

    python scripts/stsb_whitening.py [--model minilm] [--out docs/stsb-whitening.md] [--plot docs/img/...png]

Mean pooling, every layer (embedding output included) from one pass of hubembed.analysis.features;
"first+last" is the mean of the first and last blocks' mean-pooled vectors (mean pooling is linear, so
this equals first_last_avg pooling). The fixes are fitted on the STS-B *train* sentences (no test text
seen) and applied to the test pairs; cosine similarity against the gold scores.
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
from stsb_table import spearman  # noqa: E402 (the same cosine Spearman as the layer table)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def read(split):
    with open(os.path.join(DATA, "stsb", f"stsb-en-{split}.csv"), encoding="utf-8") as f:
        return list(csv.reader(f))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "docs", "stsb-whitening.md"))
    ap.add_argument("--plot", default=os.path.join(HERE, "..", "docs", "img", "stsb-anisotropy.png"))
    ap.add_argument("--ks", type=int, nargs="+", default=[256, 128, 64])
    args = ap.parse_args(argv)

    import hubembed
    from hubembed import analysis, plots

    enc = hubembed.load(args.model)
    test, train = read("test"), read("train")
    gold = [float(r[2]) for r in test]
    fit_texts = sorted({s for r in train for s in r[:2]})
    fa = analysis.features(enc, [r[0] for r in test], poolings=("mean",))
    fb = analysis.features(enc, [r[1] for r in test], poolings=("mean",))
    ft = analysis.features(enc, fit_texts, poolings=("mean",))
    views = {str(layer): (fa.get(layer, "mean"), fb.get(layer, "mean"), ft.get(layer, "mean")) for layer in fa.layers}
    first, last = fa.layers[1], fa.layers[-1]
    views["first+last"] = tuple((f.get(first, "mean") + f.get(last, "mean")) / 2 for f in (fa, fb, ft))
    cols = ["raw", "centred", "whitened"] + [f"whitened k={k}" for k in args.ks]
    lines = [
        f"# STS-B test: whitening ({args.model}, mean pooling)",
        "",
        f"Spearman x 100 of cosine similarity on the {len(test)} STS-B test pairs. Fixes fitted on the "
        f"{len(fit_texts)} distinct STS-B train sentences (`hubembed.analysis.Whitening`); mean cosine of "
        f"random test sentence pairs before and after whitening. Made by `python scripts/stsb_whitening.py`.",
        "",
        "| layer | " + " | ".join(cols) + " | mean cosine raw | whitened |",
        "| --- |" + " --- |" * (len(cols) + 2),
    ]
    aniso = []
    for name, (a, b, fit) in views.items():
        fixes = [None, analysis.Whitening.fit(fit, method="center"), analysis.Whitening.fit(fit)] + [
            analysis.Whitening.fit(fit, k=k) for k in args.ks
        ]
        scores = [spearman(a if w is None else w(a), b if w is None else w(b), gold) for w in fixes]
        both = np.concatenate([a, b])
        raw, fixed = analysis.anisotropy(both), analysis.anisotropy(fixes[2](both))
        aniso.append({"layer": name, "raw": raw, "fixed": fixed})
        label = "emb" if name == "embeddings" else name
        lines.append(
            f"| {label} | "
            + " | ".join(f"{s:.2f}" for s in scores)
            + f" | {raw['mean_cosine']:.3f} | {fixed['mean_cosine']:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    plots.anisotropy(aniso, args.plot, title=f"STS-B test sentences, {args.model}: mean cosine of random pairs")
    sys.stdout.write(text + f"\nwritten: {args.out}, {args.plot}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
