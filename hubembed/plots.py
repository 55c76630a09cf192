"""Plots of ``hubembed.analysis`` results, written to PNG or SVG (by the file's extension).

matplotlib is optional (``pip install 'hubembed[plot]'``). Figures are made with
``matplotlib.figure.Figure`` (no pyplot state, no backend switch: headless servers and notebooks
alike). Every function takes the result of the matching analysis function and a path, writes
the figure, and returns the path (in a notebook: ``IPython.display.Image(path)``).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from hubembed._util import optional
from hubembed.errors import InputError

IMAGE_FORMATS = (".png", ".svg")


def _figure(figsize):
    fig = optional("matplotlib.figure", "Plots").Figure(figsize=figsize)
    return fig, fig.subplots()


def _save(fig, path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMAGE_FORMATS:
        raise InputError(f"plot {path!r}: unknown extension; valid: {', '.join(IMAGE_FORMATS)}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _layer_labels(layers) -> list:
    return ["emb" if x == "embeddings" else str(x) for x in layers]


def probe_table(table, path: str, title: Optional[str] = None) -> str:
    """Accuracy per layer, a line per pooling (dev accuracy if the probe had a dev set, else cv with ±std)."""
    fig, ax = _figure((6.4, 4))
    layers = list(dict.fromkeys(r["layer"] for r in table.rows))
    x = np.arange(len(layers))
    for p in dict.fromkeys(r["pooling"] for r in table.rows):
        rows = [r for r in table.rows if r["pooling"] == p]
        cv = np.array([r["cv_mean"] for r in rows]) * 100
        sd = np.array([r["cv_std"] for r in rows]) * 100
        if table.n_dev:
            (line,) = ax.plot(x, [r["dev"] * 100 for r in rows], marker="o", label=f"{p} (dev)")
            ax.plot(x, cv, ls=":", color=line.get_color(), label=f"{p} ({table.folds}-fold cv)")
        else:
            ax.errorbar(x, cv, yerr=sd, marker="o", capsize=3, label=p)
    b = table.best()
    ax.axvline(layers.index(b["layer"]), color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, _layer_labels(layers))
    ax.set_xlabel("layer (emb = embedding output; blocks 0-based)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or f"linear probe per layer ({table.n_train} training texts)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def layer_similarity(matrix: np.ndarray, layers: Sequence, path: str, title: str = "cosine between layers") -> str:
    fig, ax = _figure((6.0, 5.0))
    im = ax.imshow(matrix, vmin=min(0.0, float(matrix.min())), vmax=1.0, cmap="viridis")
    labels = _layer_labels(layers)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{matrix[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if matrix[i, j] < 0.6 else "black",
            )
    fig.colorbar(im, ax=ax, shrink=0.85)
    ax.set_title(title, fontsize=10, wrap=True)
    return _save(fig, path)


def layer_change(change: dict, layers: Sequence, path: str, title: str = "change between adjacent layers") -> str:
    fig, ax1 = _figure((6.4, 3.6))
    labels = _layer_labels(layers)
    steps = [f"{a}→{b}" for a, b in zip(labels[:-1], labels[1:])]
    ax1.bar(steps, change["l2"], color="tab:blue", alpha=0.7, label="mean L2 distance")
    ax1.set_ylabel("mean L2 distance")
    ax2 = ax1.twinx()
    ax2.plot(steps, change["relative"], color="tab:red", marker="o", label="relative |Δ| / |v|")
    ax2.set_ylabel("relative change")
    ax1.set_title(title, fontsize=10)
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="upper center", fontsize=8)
    ax1.set_ylim(0, max(change["l2"]) * 1.3)
    return _save(fig, path)


def pca(
    xy: np.ndarray, path: str, labels: Optional[Sequence] = None, title: str = "2-D PCA of sentence vectors"
) -> str:
    fig, ax = _figure((5.2, 4.4))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6)
    else:
        labels = np.asarray(labels)
        for v in np.unique(labels):
            m = labels == v
            ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, label=str(v))
        ax.legend(title="label", fontsize=8)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    return _save(fig, path)


def token_importance(
    pieces: Sequence[str], weights: np.ndarray, path: str, title: str = "attention received per token"
) -> str:
    fig, ax = _figure((max(4.0, 0.45 * len(pieces)), 3.2))
    ax.bar(range(len(pieces)), weights, color="tab:purple")
    ax.set_xticks(range(len(pieces)), pieces, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("share of attention")
    ax.set_title(title)
    return _save(fig, path)


def anisotropy(rows: Sequence[dict], path: str, title: str = "anisotropy per layer") -> str:
    """rows: [{"layer", "raw": anisotropy(), "fixed": anisotropy()}...]: mean cosine before and after a fix."""
    fig, ax = _figure((6.4, 3.6))
    labels = _layer_labels([r["layer"] for r in rows])
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["raw"]["mean_cosine"] for r in rows], 0.4, label="raw")
    if all("fixed" in r for r in rows):
        ax.bar(x + 0.2, [r["fixed"]["mean_cosine"] for r in rows], 0.4, label="after the fix")
    ax.set_xticks(x, labels)
    ax.set_ylabel("mean cosine of random pairs")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)
