"""Select + combine layers.

Layer numbering (one convention everywhere): the L Transformer blocks, 0-based,
negative from the end, exactly like ``encoder_outputs``. The embedding-layer
output is not numbered; where a backend can give it, ask for it by name
(``"embeddings"``). Hugging Face ``hidden_states[i + 1]`` == hubembed layer ``i``.

Specs: ``-1``, ``3``, ``[0, 4, -1]``, ``"-4:"``, ``"2:5"``, ``"all"``, ``"3"``,
``"embeddings"``, ``["embeddings", 0]``.

Combinations (``COMBINES``), over the k selected layers ``x_i``:
``none`` (keep them apart: a layer axis), ``concat`` (k*H wide), ``mean``,
``sum``, ``weighted`` (sum of w_i x_i, weights as given) and ``scalar_mix``
(gamma * sum softmax(w)_i x_i, as ELMo / AllenNLP's ScalarMix).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np

from hubembed.errors import InputError

EMBEDDINGS = "embeddings"
COMBINES = ("none", "concat", "mean", "sum", "weighted", "scalar_mix")
LayerSpec = Union[int, str, Sequence[Union[int, str]]]


def _valid(num_layers: int) -> str:
    return f"valid: {-num_layers}..{num_layers - 1}, a list of those, a slice like '-4:', 'all' or 'embeddings'"


def _index(value: int, num_layers: int) -> int:
    if not -num_layers <= value < num_layers:
        raise InputError(f"layer {value} requested; this encoder has {num_layers} layers ({_valid(num_layers)})")
    return value % num_layers


def resolve(spec: LayerSpec, num_layers: int) -> List[Union[int, str]]:
    """A layer spec -> the selected layers as non-negative indices (or "embeddings"), in order."""
    if num_layers is None or num_layers < 1:
        raise InputError("the number of layers of this encoder is unknown; only layers=-1 can be used")
    if isinstance(spec, (bool, np.bool_)):
        raise InputError(f"layers={spec!r}: {_valid(num_layers)}")
    if isinstance(spec, (int, np.integer)):
        return [_index(int(spec), num_layers)]
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s == "all":
            return list(range(num_layers))
        if s == EMBEDDINGS:
            return [EMBEDDINGS]
        if re.fullmatch(r"-?\d+", s):
            return [_index(int(s), num_layers)]
        m = re.fullmatch(r"(-?\d*):(-?\d*)", s)
        if m:
            start = int(m.group(1)) if m.group(1) else None
            stop = int(m.group(2)) if m.group(2) else None
            picked = list(range(num_layers))[slice(start, stop)]
            if not picked:
                raise InputError(f"layers={spec!r} selects no layer of {num_layers} ({_valid(num_layers)})")
            return picked
        raise InputError(f"layers={spec!r} is not a layer spec ({_valid(num_layers)})")
    if isinstance(spec, (list, tuple, range)):
        if len(spec) == 0:
            raise InputError(f"layers=[] selects nothing ({_valid(num_layers)})")
        out: List[Union[int, str]] = []
        for item in spec:
            if isinstance(item, str) and item.strip().lower() == EMBEDDINGS:
                out.append(EMBEDDINGS)
            elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                out.append(_index(int(item), num_layers))
            else:
                raise InputError(f"layers contains {item!r} ({_valid(num_layers)})")
        return out
    raise InputError(f"layers={spec!r} ({type(spec).__name__}) is not a layer spec ({_valid(num_layers)})")


@dataclass(frozen=True)
class Combine:
    """How the selected layers become one array."""

    how: str = "mean"
    weights: Optional[tuple] = None
    gamma: float = 1.0

    @classmethod
    def make(cls, how: str, n_layers: int, weights=None, gamma: float = 1.0) -> "Combine":
        if how not in COMBINES:
            raise InputError(f"combine={how!r}; valid: {', '.join(COMBINES)}")
        if how in ("weighted", "scalar_mix"):
            if weights is None:
                raise InputError(f"combine={how!r} needs weights= (one per selected layer: {n_layers})")
            weights = tuple(float(w) for w in np.asarray(weights, dtype=np.float64).ravel())
            if len(weights) != n_layers:
                raise InputError(f"combine={how!r}: {len(weights)} weights for {n_layers} selected layers")
        elif weights is not None:
            raise InputError(f"weights= only applies to combine='weighted' or 'scalar_mix', not {how!r}")
        return cls(how, weights, float(gamma))

    def coefficients(self) -> Optional[np.ndarray]:
        """Per-layer factors for the linear combinations (None for none/concat)."""
        if self.how == "weighted":
            return np.asarray(self.weights, np.float32)
        if self.how == "scalar_mix":
            w = np.asarray(self.weights, np.float64)
            e = np.exp(w - w.max())
            return (self.gamma * e / e.sum()).astype(np.float32)
        return None

    def width(self, hidden: int, n_layers: int) -> int:
        return hidden * n_layers if self.how == "concat" else hidden

    def apply(self, stacked: np.ndarray) -> np.ndarray:
        """[k, ..., H] -> [..., H'] (``none``: [..., k, H]; a single layer: [..., H])."""
        k = stacked.shape[0]
        if self.how == "none":
            return stacked[0] if k == 1 else np.moveaxis(stacked, 0, -2)
        if self.how == "concat":
            return np.concatenate(list(stacked), axis=-1)
        if self.how == "mean":
            return stacked[0] if k == 1 else stacked.mean(axis=0)
        if self.how == "sum":
            return stacked[0] if k == 1 else stacked.sum(axis=0)
        coeffs = self.coefficients()
        return np.tensordot(coeffs, stacked, axes=(0, 0)).astype(np.float32)
