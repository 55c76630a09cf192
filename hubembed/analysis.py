"""Which layer, which pooling, which fix: measurements instead of folklore.

    feats = analysis.features(enc, texts, layers="all", poolings=("cls", "mean"))   # the encoder runs once
    table = analysis.probe(feats, labels, dev=(dev_feats, dev_labels))              # logistic regression per cell
    print(table.to_markdown()); table.best()
    analysis.anisotropy(feats.get(-1, "mean"))       # mean cosine of random pairs, top-PC variance, isotropy
    w = analysis.Whitening.fit(corpus_vectors, k=256); w.save("w.npz")
    enc.embed(texts, transform="w.npz")              # or hubembed extract --transform w.npz
    analysis.layer_similarity(feats, "cls"); analysis.layer_change(feats, "mean"); analysis.pca2(X)
    analysis.token_importance(enc, "a text", layer=-1)

Features are cached on disk (``$HUBEMBED_CACHE/analysis``) by weights fingerprint, texts and
spec, so a second probe on the same texts does not run the encoder. Probes use scikit-learn
(``pip install 'hubembed[analysis]'``): standardised features, ``LogisticRegression``,
stratified k-fold cross-validation, and a held-out accuracy when a dev set is given; one thread a fit,
``n_jobs`` fits at once (joblib's processes), a tqdm bar of the fits on a terminal.
Plots: ``hubembed.plots`` (matplotlib).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from hubembed import garden
from hubembed._pipeline import batching
from hubembed._pipeline import layers as layer_spec
from hubembed._pipeline.pooling import received_attention
from hubembed._pipeline.spec import EmbedSpec
from hubembed._pipeline.transform import Whitening, as_transform  # noqa: F401 (public here)
from hubembed._util import cache_root, optional, write_atomic
from hubembed.errors import HubEmbedError, InputError

log = logging.getLogger("hubembed")


# -- features ------------------------------------------------------------------
@dataclass
class Features:
    """Sentence vectors for every (layer, pooling): ``data[pooling]`` is [N, k, H] over ``layers``."""

    layers: List[Union[int, str]]
    data: Dict[str, np.ndarray]
    spec: dict = field(default_factory=dict)

    @property
    def poolings(self) -> List[str]:
        return list(self.data)

    def __len__(self) -> int:
        return len(next(iter(self.data.values())))

    def index(self, layer) -> int:
        if layer in self.layers:
            return self.layers.index(layer)
        blocks = [i for i in self.layers if isinstance(i, int)]
        if isinstance(layer, int) and layer < 0 and blocks and max(blocks) + 1 + layer in self.layers:
            return self.layers.index(max(blocks) + 1 + layer)
        raise InputError(f"layer {layer!r} is not in these features (layers: {self.layers})")

    def get(self, layer, pooling: str) -> np.ndarray:
        if pooling not in self.data:
            raise InputError(f"pooling {pooling!r} is not in these features (poolings: {', '.join(self.data)})")
        return self.data[pooling][:, self.index(layer)]


def _cache_root() -> str:

    return os.path.join(cache_root(), "analysis")


DEFAULT_LAYERS = ("embeddings", "all")  # the embedding output and every block


def _same_layers(a, b) -> bool:
    return (list(a) if isinstance(a, (list, tuple)) else a) == (list(b) if isinstance(b, (list, tuple)) else b)


def features(
    encoder,
    texts: Sequence[str],
    *,
    layers=DEFAULT_LAYERS,
    poolings: Sequence[str] = ("cls", "mean"),
    special_tokens: bool = True,
    batch_size: int = batching.BATCH_SIZE,
    cache: bool = True,
    long: str = "window",
    stride: Optional[int] = None,
) -> Features:
    """Every (layer, pooling) vector of ``texts`` in one encoder pass (``Encoder.features``), cached on disk.

    Args:
        layers: a layer spec, as everywhere ("all" is every block); the default, ``("embeddings", "all")``, adds
            the embedding-layer output (through the Model Garden fallback; the blocks only where that cannot run).
        poolings: per layer, any of cls, mean, max, mean_max, mean_sqrt_len, weightedmean.
        special_tokens, long, stride: as ``hubembed.EmbedSpec``; batch_size: as ``Encoder.embed``.
        cache: keep the features on disk ($HUBEMBED_CACHE/analysis) by weights, texts and spec.
    """

    texts = list(texts)
    if _same_layers(layers, DEFAULT_LAYERS):
        try:
            encoder.plan(EmbedSpec(layers=["embeddings"], combine="none"))
            if encoder.backend != "hub":
                garden.require()
        except HubEmbedError as e:  # the embedding output needs the rebuild: the blocks only
            log.info("features without the embedding output (%s)", str(e).splitlines()[0])
            layers = "all"
    indices = encoder.plan(EmbedSpec(layers=layers, combine="none", long=long, stride=stride)).indices
    names = ["embeddings" if i == layer_spec.EMBEDDINGS else int(i) for i in indices]
    spec = {
        "model": encoder.handle,
        "layers": names,
        "poolings": list(poolings),
        "special_tokens": special_tokens,
        "seq_length": encoder.seq_length,
    }
    if (long, stride) != ("window", None):
        spec.update(long=long, stride=stride)
    if getattr(encoder, "quantize", None):  # int8/bf16 features are their own (float32 keys stay as they were)
        spec["quantize"] = encoder.quantize
    path = None
    if cache:
        h = hashlib.sha256(json.dumps({**spec, "weights": encoder.weights_sha256}, sort_keys=True).encode())
        for t in texts:
            h.update(t.encode("utf-8", "surrogatepass") + b"\0")
        path = os.path.join(_cache_root(), h.hexdigest()[:32] + ".npz")
        if os.path.exists(path):
            with np.load(path) as z:
                log.info("features of %d texts from the cache (%s)", len(texts), path)
                return Features(names, {p: z[p] for p in poolings}, spec)
    log.info(
        "features of %d texts: %d layers x %d poolings, one encoder pass%s",
        len(texts),
        len(names),
        len(poolings),
        f" (then cached: {path})" if path else "",
    )
    data = encoder.features(
        texts,
        layers=layers,
        poolings=poolings,
        special_tokens=special_tokens,
        batch_size=batch_size,
        long=long,
        stride=stride,
    )
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **data)
        write_atomic(path, buf.getvalue())
    return Features(names, data, spec)


# -- probes --------------------------------------------------------------------
def _sklearn():
    optional("sklearn", "Linear probes")


@dataclass
class ProbeTable:
    """Accuracy of a linear probe per (layer, pooling): cross-validated on the training texts, and on dev."""

    rows: List[dict]
    folds: int
    n_train: int
    n_dev: Optional[int] = None

    def best(self) -> dict:
        """The cell with the best cross-validated accuracy (chosen on the training texts only, so the dev
        accuracy reported with it is not a selection on dev)."""
        return max(self.rows, key=lambda r: r["cv_mean"])

    def recommendation(self) -> str:
        b = self.best()
        dev = f"; dev accuracy {b['dev']:.4f}" if self.n_dev else ""
        return (
            f"recommended: layer {b['layer']} with {b['pooling']} pooling ({self.folds}-fold cv accuracy "
            f"{b['cv_mean']:.4f} ± {b['cv_std']:.4f}{dev}; C={b.get('C')})"
        )

    def to_markdown(self) -> str:
        poolings = list(dict.fromkeys(r["pooling"] for r in self.rows))
        layers = list(dict.fromkeys(r["layer"] for r in self.rows))
        cell = {(r["layer"], r["pooling"]): r for r in self.rows}
        what = "dev accuracy (cv mean ± std)" if self.n_dev else f"{self.folds}-fold cv accuracy"
        lines = [f"| layer | {' | '.join(poolings)} |", "| --- |" + " --- |" * len(poolings)]
        for layer in layers:
            vals = []
            for p in poolings:
                r = cell[(layer, p)]
                cv = f"{100 * r['cv_mean']:.2f} ± {100 * r['cv_std']:.2f}"
                vals.append(f"{100 * r['dev']:.2f} ({cv})" if self.n_dev else cv)
            lines.append(f"| {layer} | {' | '.join(vals)} |")
        return (
            f"{what}, x 100; {self.n_train} training texts"
            + (f", {self.n_dev} dev" if self.n_dev else "")
            + "\n\n"
            + "\n".join(lines)
        )


PROBE_CS = (0.001, 0.01, 0.1, 1.0, 10.0)


def _probe_cs(C) -> tuple:
    if isinstance(C, str) and C == "auto":
        return PROBE_CS
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0:
        raise InputError(f"C={C!r}; valid: 'auto' (chosen per cell by cross-validation) or a number > 0")
    return (float(C),)


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Below this many numbers per cell (texts x dims), worker processes (seconds to start) cost more than they save:
# with one thread per fit, SST-2's 14 cells x 25 fits take about as long on 2 shared cores at 2,500 texts x 384
# dims either way, in this process or in two workers.
PARALLEL_MIN = 1_000_000


def _n_jobs(n_jobs, feats: Features) -> int:
    if n_jobs is None:
        return cpu_count() if len(feats) * min(a.shape[-1] for a in feats.data.values()) >= PARALLEL_MIN else 1
    if isinstance(n_jobs, (int, np.integer)) and not isinstance(n_jobs, bool) and n_jobs == -1:
        return cpu_count()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
        raise InputError(
            f"n_jobs={n_jobs!r}; valid: a number of fits at once >= 1, -1 (every core: {cpu_count()}) or None (every "
            f"core, one for features under {PARALLEL_MIN:,} numbers a cell)"
        )
    return int(n_jobs)


def _labels(labels, what: str = "labels") -> np.ndarray:
    y = np.asarray(list(labels))
    if y.ndim != 1 or len(y) < 2:
        raise InputError(f"{what}: one per text expected, got shape {y.shape}")
    if y.dtype.kind == "O":
        raise InputError(f"{what}: classes of one type expected (strings, or integers), got {_few_values(y)}")
    if y.dtype.kind in "fU" and _fractional(y):
        raise InputError(
            f"{what}: numbers with decimals ({_few_values(y)}): a score rather than a class? A probe classifies: "
            f"its labels are classes (strings or integers); bin a score into classes first"
        )
    return y


def _fractional(y: np.ndarray) -> bool:
    """Whether labels are numbers (floats, or strings that all read as numbers) not all whole: a score."""
    try:
        v = y.astype(np.float64)
    except ValueError:  # strings that are not all numbers: class names
        return False
    return bool(not np.all(np.isfinite(v)) or np.any(v % 1))


def _few_values(y, k: int = 3) -> str:
    return ", ".join(repr(v.item() if hasattr(v, "item") else v)[:40] for v in list(dict.fromkeys(y.tolist()))[:k])


def _probe_labels(labels, n: int, folds: int) -> Tuple[np.ndarray, int]:
    """The training labels, checked before any fit, and the folds their smallest class allows."""
    y = _labels(labels)
    if len(y) != n:
        raise InputError(f"{len(y)} labels for {n} texts")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise InputError(f"labels: a probe needs at least two classes; all {len(y)} are {_few_values(y)}")
    single = classes[counts < 2]
    if len(single):
        raise InputError(
            f"labels: {len(classes)} distinct value(s) over {len(y)} texts ({len(single)} of them only once, e.g. "
            f"{_few_values(single)}): a probe needs classes of at least 2 texts each. Are these the labels (swapped "
            f"with the texts? a score rather than a class?)"
        )
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise InputError(f"folds={folds!r}; valid: a number of cross-validation folds >= 2")
    if counts.min() < folds:
        log.info("probe: %d folds (the smallest class has %d texts), not %d", counts.min(), counts.min(), folds)
    return y, int(min(folds, counts.min()))


def _dev_labels(dev, classes: np.ndarray) -> np.ndarray:
    feats, labels = dev
    y_dev = _labels(labels, "dev labels")
    if len(y_dev) != len(feats):
        raise InputError(f"dev: {len(y_dev)} labels for {len(feats)} texts")
    seen = np.isin(y_dev, classes)
    if not seen.any():
        raise InputError(
            f"dev labels: none is a class of the training labels (dev: {_few_values(y_dev)}; training: "
            f"{_few_values(classes)}): the same column, of the same type (1 and '1' differ)?"
        )
    if not seen.all():
        log.warning(
            "dev labels: %d of %d are no class of the training labels (e.g. %s): they count as errors",
            (~seen).sum(),
            len(y_dev),
            _few_values(y_dev[~seen]),
        )
    return y_dev


def _fit_score(X, y, test_X, test_y, Cs, max_iter: int, train=None, test=None) -> List[float]:
    """Accuracy on (test_X, test_y) of ``StandardScaler`` + ``LogisticRegression(C)`` fitted on (X, y), for each C
    in Cs, the scaler fitted once; ``train``/``test``: rows of X, y (one fold). One thread (BLAS and OpenMP), so
    the numbers do not depend on the cores nor on how many fits run at once."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    if train is not None:
        X, y, test_X, test_y = X[train], y[train], X[test], y[test]
    with threadpool_limits(limits=1):
        scaler = StandardScaler().fit(X)
        X, test_X = scaler.transform(X), scaler.transform(test_X)
        return [float(LogisticRegression(C=c, max_iter=max_iter).fit(X, y).score(test_X, test_y)) for c in Cs]


class _Fits:
    """Runs fits ``n_jobs`` at a time (joblib's processes; in this process for 1), ticking a tqdm bar of fits."""

    def __init__(self, total: int, n_jobs: int, progress: Optional[bool]):
        from joblib import Parallel
        from tqdm.auto import tqdm

        self.parallel = Parallel(n_jobs=n_jobs, **_return_as())
        disable = None if progress is None else not progress  # None: shown when stderr is a terminal
        self.bar = tqdm(total=total, desc="probe", unit=" fits", disable=disable, dynamic_ncols=True)

    def run(self, tasks: Iterable[Tuple[object, tuple, dict]]) -> dict:
        """{key: scores} of tasks (key, args, kwargs) of ``_fit_score``, in the order they finish."""
        from joblib import delayed

        out = {}
        for key, scores in self.parallel(delayed(_keyed)(key, args, kwargs) for key, args, kwargs in tasks):
            out[key] = scores
            self.bar.update(len(scores))
        return out

    def __enter__(self) -> "_Fits":
        self.parallel.__enter__()  # one pool for the cross-validation and the dev fits
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        self.parallel.__exit__(*exc)


def _return_as() -> dict:
    """Results as they finish (joblib >= 1.4), else in order (1.3), else all at the end (older joblib)."""
    import joblib

    version = tuple(int(v) for v in re.findall(r"\d+", joblib.__version__)[:2])
    if version >= (1, 4):
        return {"return_as": "generator_unordered"}
    return {"return_as": "generator"} if version >= (1, 3) else {}


def _keyed(key, args, kwargs):
    return key, _fit_score(*args, **kwargs)


def _plan_line(feats: Features, Cs: tuple, folds: int, dev: bool, n_jobs: int) -> str:
    cells = len(feats.layers) * len(feats.poolings)
    dims = "/".join(str(d) for d in sorted({a.shape[-1] for a in feats.data.values()}))
    extra = f" (+ {cells} on all of them, scored on dev)" if dev else ""
    return (
        f"probing {cells} cells x {len(Cs)} C x {folds} folds = {cells * len(Cs) * folds} fits{extra} on "
        f"{len(feats)} texts, {dims} dims, n_jobs={n_jobs}"
    )


def probe(
    feats: Features,
    labels,
    *,
    dev: Optional[Tuple[Features, Sequence]] = None,
    folds: int = 5,
    C: Union[float, str] = "auto",
    seed: int = 0,
    max_iter: int = 2000,
    n_jobs: Optional[int] = None,
    progress: Optional[bool] = None,
) -> ProbeTable:
    """A logistic-regression probe for every (layer, pooling) of ``feats``.

    Standardised features, ``LogisticRegression(C)``, ``folds``-fold stratified cross-validation on the
    training texts; with ``dev=(features, labels)`` also trained on all of them and scored on dev. The labels
    are checked before any fit (classes of at least 2 texts; no float scores; dev labels among the classes).

    Args:
        C: the inverse regularisation; "auto" (default) chooses it per cell by the same cross-validation among
            ``PROBE_CS`` (a fixed C overfits small training sets: C=1 at 1,000 SST-2 texts picks a cell 7
            points worse on dev than C=0.01), and each row reports the C chosen.
        n_jobs: fits at once, in joblib worker processes (1: in this process; -1: every core, ``cpu_count()``).
            Default None: every core, but 1 for small features (texts x dims < ``PARALLEL_MIN``, where starting
            the workers would cost more than it saves). Every fit runs on one thread, so the table is the same
            whatever ``n_jobs``.
        progress: a tqdm bar of the fits on stderr; None (default): when stderr is a terminal.
    """
    _sklearn()
    from sklearn.model_selection import StratifiedKFold

    y, folds = _probe_labels(labels, len(feats), folds)
    y_dev = _dev_labels(dev, np.unique(y)) if dev is not None else None
    Cs, jobs = _probe_cs(C), _n_jobs(n_jobs, feats)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros((len(y), 1)), y))
    cells = [(layer, p) for p in feats.poolings for layer in feats.layers]
    total = len(cells) * (len(Cs) * folds + (dev is not None))
    log.info("%s", _plan_line(feats, Cs, folds, dev is not None, jobs))

    def cv_tasks():
        for layer, p in cells:
            X = _cell(feats, {"layer": layer, "pooling": p})  # one copy per cell, shared by its folds
            for f, (train, test) in enumerate(splits):
                yield (layer, p, f), (X, y, None, None, Cs, max_iter), {"train": train, "test": test}

    with _Fits(total, jobs, progress) as fits:
        cv = fits.run(cv_tasks())
        rows = [_cv_row(layer, p, [cv[(layer, p, f)] for f in range(folds)], Cs) for layer, p in cells]
        if dev is not None:
            scored = fits.run(
                ((r["layer"], r["pooling"]), (_cell(feats, r), y, _cell(dev[0], r), y_dev, (r["C"],), max_iter), {})
                for r in rows
            )
            for r in rows:
                r["dev"] = scored[(r["layer"], r["pooling"])][0]
    return ProbeTable(rows, folds, len(y), len(y_dev) if y_dev is not None else None)


def _cv_row(layer, pooling: str, per_fold: List[List[float]], Cs: tuple) -> dict:
    """A cell's row: the C with the best mean accuracy over the folds (the first of equals: the strongest
    regularisation), and that C's mean and std."""
    per_c = np.array(per_fold).T  # [C, folds]
    best = max(range(len(Cs)), key=lambda i: per_c[i].mean())
    scores = per_c[best]
    return {
        "layer": layer,
        "pooling": pooling,
        "cv_mean": float(scores.mean()),
        "cv_std": float(scores.std()),
        "C": Cs[best],
    }


def _cell(feats: Features, row: dict) -> np.ndarray:
    return np.ascontiguousarray(feats.get(row["layer"], row["pooling"]))


# -- anisotropy ----------------------------------------------------------------
def anisotropy(X: np.ndarray, *, pairs: int = 5000, k: int = 10, seed: int = 0) -> dict:
    """How much sentence vectors crowd into a narrow cone.

    mean_cosine: mean cosine similarity of random pairs of different texts (0 for isotropic vectors);
    top1_variance / topk_variance: share of the variance in the first / first k principal components;
    isotropy: min_c Z(c) / max_c Z(c) over the principal directions c, Z(c) = sum_i exp(c . x_i)
    (Mu & Viswanath 2018; 1 = isotropic), computed on the vectors as given (not centred).
    """
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or len(X) < 3:
        raise InputError(f"anisotropy: [N >= 3, D] vectors expected, got shape {X.shape}")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(X), pairs)
    j = (i + rng.integers(1, len(X), pairs)) % len(X)
    norms = np.linalg.norm(X, axis=1) + 1e-12
    cos = np.sum(X[i] * X[j], axis=1) / (norms[i] * norms[j])
    centred = X - X.mean(0)
    sv = np.linalg.svd(centred, compute_uv=False) ** 2
    var = sv / sv.sum()
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    logz = np.array([np.logaddexp.reduce(X @ c) for c in vt])
    return {
        "mean_cosine": float(cos.mean()),
        "top1_variance": float(var[0]),
        "topk_variance": float(var[:k].sum()),
        "k": int(min(k, len(var))),
        "isotropy": float(np.exp(logz.min() - logz.max())),
        "n": int(len(X)),
    }


# -- layer views ---------------------------------------------------------------
def _unit(X):
    return X / (np.linalg.norm(X, axis=-1, keepdims=True) + 1e-12)


def layer_similarity(feats: Features, pooling: str = "cls") -> np.ndarray:
    """[k, k]: mean over texts of the cosine between layer i's and layer j's vector of the same text."""
    U = _unit(feats.data[pooling].astype(np.float64))  # [N, k, H]
    return np.einsum("nih,njh->ij", U, U) / len(U)


def layer_change(feats: Features, pooling: str = "mean") -> Dict[str, np.ndarray]:
    """Between adjacent layers: mean L2 distance, and mean relative distance |v_i+1 - v_i| / |v_i|."""
    X = feats.data[pooling].astype(np.float64)
    d = np.linalg.norm(X[:, 1:] - X[:, :-1], axis=-1)
    return {"l2": d.mean(0), "relative": (d / (np.linalg.norm(X[:, :-1], axis=-1) + 1e-12)).mean(0)}


def pca2(X: np.ndarray) -> np.ndarray:
    """[N, 2]: the vectors projected on their first two principal components."""
    X = np.asarray(X, np.float64)
    c = X - X.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:2].T


def token_importance(encoder, text: str, *, layer=-1) -> Tuple[List[str], np.ndarray]:
    """The word pieces of ``text`` ([CLS] and [SEP] included) and the attention each receives in ``layer``:
    mean over heads and over the text's tokens as queries (Model Garden rebuild); sums to 1."""

    inner = encoder.internals([text], layers=[layer], attention=True)
    att = inner.attention[0]  # [1, heads, S, S]
    mask = inner.mask.astype(bool)
    w = received_attention(att, mask)[0]
    n = int(mask[0].sum())
    pieces = encoder.word_tokenizer().piece_strings(inner.token_ids[0][:n])
    w = np.asarray(w[:n], np.float64)
    return pieces, w / w.sum()
