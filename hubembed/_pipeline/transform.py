"""Transform: a linear map fitted on a corpus, applied to sentence vectors after pooling.

``Whitening`` (re-exported by ``hubembed.analysis``, where it is fitted and measured) is part of
the embedding path: ``EmbedSpec(transform=...)`` applies it before ``normalize``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from typing import Optional, Union

import numpy as np

from hubembed.errors import InputError

log = logging.getLogger("hubembed")


class Whitening:
    """A linear fix for anisotropy, fitted on a corpus: x -> (x - mean) @ W.

    method="center": W = I (subtract the mean only); "whiten": W = U diag(1/sqrt(s)) from the SVD of the
    covariance (BERT-whitening, Su et al. 2021), keeping the first ``k`` dimensions if given.
    """

    METHODS = ("center", "whiten")

    def __init__(
        self, mean: np.ndarray, W: np.ndarray, method: str, k: Optional[int], n: int, about: Optional[dict] = None
    ) -> None:
        self.mean, self.W, self.method, self.k, self.n = mean, W, method, k, n
        self.about = about or {}

    @classmethod
    def fit(
        cls, X: np.ndarray, *, k: Optional[int] = None, method: str = "whiten", about: Optional[dict] = None
    ) -> "Whitening":
        if method not in cls.METHODS:
            raise InputError(f"method={method!r}; valid: {', '.join(cls.METHODS)}")
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or len(X) < 2:
            raise InputError(f"Whitening.fit: [N >= 2, D] vectors expected, got shape {X.shape}")
        D = X.shape[1]
        if k is not None and not 1 <= k <= D:
            raise InputError(f"k={k}; valid: 1..{D} (the vectors' width), or None for all")
        mu = X.mean(0)
        if method == "center":
            W = np.eye(D)[:, :k] if k else np.eye(D)
        else:
            cov = np.cov((X - mu).T)
            u, s, _ = np.linalg.svd(cov)
            W = (u / np.sqrt(s + 1e-9))[:, :k] if k else u / np.sqrt(s + 1e-9)
        if method == "whiten" and len(X) < D:
            log.warning(
                "whitening fitted on %d vectors of width %d: the covariance is singular; fit on "
                "more texts, or pass k <= %d",
                len(X),
                D,
                len(X) - 1,
            )
        return cls(mu.astype(np.float32), W.astype(np.float32), method, k, len(X), about)

    def check_width(self, width: int) -> None:
        """Raises InputError unless vectors of ``width`` are what this transform was fitted on."""
        if width != self.mean.shape[0]:
            raise InputError(
                f"this {self.method} transform was fitted on vectors of width {self.mean.shape[0]}; "
                f"these are {width} wide (another layer combination or pooling?)"
            )

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float32)
        self.check_width(X.shape[-1])
        return (X - self.mean) @ self.W

    transform = __call__

    @property
    def out_dim(self) -> int:
        return int(self.W.shape[1])

    def describe(self) -> dict:
        """Deprecated name of ``to_dict`` (``describe`` gives text elsewhere in hubembed)."""

        warnings.warn("Whitening.describe() is now Whitening.to_dict()", DeprecationWarning, stacklevel=2)
        return self.to_dict()

    def to_dict(self) -> dict:
        h = hashlib.sha256(self.mean.tobytes() + self.W.tobytes()).hexdigest()
        return {
            "method": self.method,
            "k": self.k,
            "dim": int(self.mean.shape[0]),
            "out_dim": self.out_dim,
            "fitted_on": self.n,
            "sha256": h,
            **({"about": self.about} if self.about else {}),
        }

    def save(self, path: str) -> str:
        if not path.endswith(".npz"):
            path += ".npz"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        meta = {"method": self.method, "k": self.k, "n": self.n, "about": self.about}
        np.savez(path, mean=self.mean, W=self.W, meta=np.array(json.dumps(meta)))
        return path

    @classmethod
    def load(cls, path: str) -> "Whitening":
        try:
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                return cls(z["mean"], z["W"], meta["method"], meta["k"], meta["n"], meta.get("about"))
        except FileNotFoundError:
            raise InputError(f"transform {path!r} does not exist (save one with Whitening.save)") from None
        except (KeyError, ValueError, OSError) as e:
            raise InputError(f"{path!r} is not a hubembed transform ({e})") from None

    def __repr__(self) -> str:
        return f"Whitening(method={self.method!r}, k={self.k}, dim={self.mean.shape[0]}, fitted_on={self.n})"


# What ``EmbedSpec(transform=...)`` takes: None, a fitted Whitening, or the path of a saved one.
TransformLike = Union[Whitening, str, "os.PathLike[str]", None]


def as_transform(transform: TransformLike) -> Optional[Whitening]:
    """None, a Whitening, or the path of a saved one."""
    if transform is None or isinstance(transform, Whitening):
        return transform
    if isinstance(transform, (str, os.PathLike)):
        return Whitening.load(os.fspath(transform))
    raise InputError(f"transform={transform!r}; valid: a hubembed.analysis.Whitening or the path of a saved one")
