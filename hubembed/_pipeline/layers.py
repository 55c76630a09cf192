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
from typing import List, Optional, Sequence, Tuple, Union, cast

import numpy as np
from numpy.typing import ArrayLike

from hubembed.errors import InputError

EMBEDDINGS = "embeddings"
COMBINES = ("none", "concat", "mean", "sum", "weighted", "scalar_mix")
LayerSpec = Union[int, np.integer, str, Sequence[Union[int, np.integer, str]]]


def _valid(num_layers: int) -> str:
    return f"valid: {-num_layers}..{num_layers - 1}, a list of those, a slice like '-4:', 'all' or 'embeddings'"


def _index(value: int, num_layers: int) -> int:
    if not -num_layers <= value < num_layers:
        hint = (
            f"; Hugging Face's hidden_states[{value}] is hubembed's layer {value - 1} (hidden_states[0] is "
            f"'embeddings')"
            if value == num_layers
            else ""
        )
        raise InputError(f"layer {value} requested; this encoder has {num_layers} layers ({_valid(num_layers)}){hint}")
    return value % num_layers


def names_embeddings(spec: LayerSpec) -> bool:
    """Whether a layer spec asks for the embedding output (told by its form, without the model)."""
    items = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    return any(str(item).strip() == EMBEDDINGS for item in items)


def select(spec: LayerSpec, num_layers: Optional[int]) -> List[Union[int, str]]:
    """A layer spec -> the selected layers as non-negative indices (or "embeddings"), in order.

    A list (or a comma-separated string, flair's "-1,-2,-3,-4") is the concatenation of its items' layers,
    each item any spec but a list: ``["embeddings", "all"]`` is the embedding output and every block.
    """
    if num_layers is None or num_layers < 1:
        raise InputError("the number of layers of this encoder is unknown; only layers=-1 can be used")
    if isinstance(spec, (bool, np.bool_)):
        raise InputError(f"layers={spec!r}: {_valid(num_layers)}")
    if isinstance(spec, (int, np.integer)):
        return [_index(int(spec), num_layers)]
    if isinstance(spec, str):
        parts = [p for p in spec.split(",") if p.strip()] if "," in spec else [spec]
        if not parts:
            raise InputError(f"layers={spec!r} selects nothing ({_valid(num_layers)})")
        return [i for p in parts for i in _select_one(p, num_layers)]
    if isinstance(spec, (list, tuple, range)):
        if len(spec) == 0:
            raise InputError(f"layers=[] selects nothing ({_valid(num_layers)})")
        out: List[Union[int, str]] = []
        for item in spec:
            if (
                isinstance(item, bool)
                or not isinstance(item, (int, np.integer, str))
                or (isinstance(item, str) and not _ITEM.fullmatch(item.strip().lower()))
            ):
                raise InputError(f"layers contains {item!r} ({_valid(num_layers)})")
            out += select(item, num_layers)
        return out
    raise InputError(f"layers={spec!r} ({type(spec).__name__}) is not a layer spec ({_valid(num_layers)})")


_ITEM = re.compile(rf"all|{EMBEDDINGS}|-?\d+|-?\d*:-?\d*")  # one list item: "all", "embeddings", "3", "2:5"


def _select_one(spec: str, num_layers: int) -> List[Union[int, str]]:
    """One string item: "all", "embeddings", "3", "-1" or a slice "2:5" / "-4:"."""
    s = spec.strip().lower()
    if s == "all":
        return list(range(num_layers))
    if s == EMBEDDINGS:
        return [EMBEDDINGS]
    if re.fullmatch(r"-?\d+", s):
        return [_index(int(s), num_layers)]
    m = re.fullmatch(r"(-?\d*):(-?\d*)", s)
    if not m:
        raise InputError(f"layers={spec!r} is not a layer spec ({_valid(num_layers)})")
    start, stop = (int(g) if g else None for g in m.groups())
    for bound in (start, stop):
        if bound is not None and not -num_layers <= bound <= num_layers:
            raise InputError(
                f"layers={spec!r}: {bound} is out of range for an encoder of {num_layers} layers "
                f"(a slice's bounds: {-num_layers}..{num_layers}; {_valid(num_layers)})"
            )
    picked: List[Union[int, str]] = list(range(num_layers)[slice(start, stop)])
    if not picked:
        raise InputError(f"layers={spec!r} selects no layer of {num_layers} ({_valid(num_layers)})")
    return picked


_FORMS = "valid: an index (-1: the last), a list of them, a slice like '-4:' or '2:5', 'all' or 'embeddings'"


def check_syntax(spec: LayerSpec) -> None:
    """The form of a layer spec, checked without the model (``select`` checks it against the model's layers).

    Raises:
        InputError: not an index, a slice, "all", "embeddings", a comma-separated string or a list of those.
    """
    if isinstance(spec, (bool, np.bool_)) or not isinstance(spec, (int, np.integer, str, list, tuple, range)):
        raise InputError(f"layers={spec!r} ({type(spec).__name__}) is not a layer spec ({_FORMS})")
    if isinstance(spec, str):
        parts = [p.strip().lower() for p in spec.split(",") if p.strip()]
        if not parts or not all(_ITEM.fullmatch(p) for p in parts):
            raise InputError(f"layers={spec!r} is not a layer spec ({_FORMS})")
    elif isinstance(spec, (list, tuple, range)):
        if len(spec) == 0:
            raise InputError(f"layers=[] selects nothing ({_FORMS})")
        for item in spec:
            if isinstance(item, (list, tuple, range)):
                raise InputError(f"layers contains {item!r}: a list of indices, slices or names, not nested lists")
            check_syntax(item)


def count(spec: LayerSpec) -> Optional[int]:
    """How many layers ``spec`` selects, when that does not depend on the model (else None).

    ``3``, ``"embeddings"``, ``"-4:"``, ``"2:5"``, ``[0, "-2:"]`` and ``"-1,-2"`` say it; ``"all"``, ``"2:"`` and
    ``":3"``-style slices from a positive start to the end do not. (Checked against the model later: a spec
    that names more layers than the model has is refused then.)
    """
    if isinstance(spec, (bool, np.bool_)):
        return None
    if isinstance(spec, (int, np.integer)):
        return 1
    if isinstance(spec, (list, tuple, range)):
        return _total([count(item) for item in spec])
    if not isinstance(spec, str):
        return None
    parts = [p.strip().lower() for p in spec.split(",") if p.strip()]
    return _total([_count_one(p) for p in parts])


def _total(counts: List[Optional[int]]) -> Optional[int]:
    """The sum of the counts; None when there are none or one is unknown."""
    known = [c for c in counts if c is not None]
    return None if not counts or len(known) < len(counts) else sum(known)


def _count_one(s: str) -> Optional[int]:
    if s == EMBEDDINGS or re.fullmatch(r"-?\d+", s):
        return 1
    m = re.fullmatch(r"(-?\d*):(-?\d*)", s)
    if not m:
        return None
    start, stop = (int(g) if g else None for g in m.groups())
    if start is not None and stop is not None and (start < 0) == (stop < 0):
        return max(stop - start, 0)
    if start is not None and start < 0 and stop is None:
        return -start
    return None


def check_combine(how: str, weights: Optional[ArrayLike], n_layers: Optional[int]) -> Optional[Tuple[float, ...]]:
    """A combination's checks (the one place both the spec and the plan use); the weights as a tuple.

    ``n_layers``: how many layers are selected, or None when not known yet (the count is checked once it is).
    """
    if how not in COMBINES:
        raise InputError(f"combine={how!r}; valid: {', '.join(COMBINES)}")
    if how not in ("weighted", "scalar_mix"):
        if weights is not None:
            raise InputError(f"weights= only applies to combine='weighted' or 'scalar_mix', not {how!r}")
        return None
    per = f": {n_layers}" if n_layers is not None else ""
    if weights is None:
        raise InputError(f"combine={how!r} needs weights= (one per selected layer{per})")
    values = tuple(float(w) for w in np.asarray(weights, dtype=np.float64).ravel())
    if n_layers is not None and len(values) != n_layers:
        raise InputError(f"combine={how!r}: {len(values)} weights for {n_layers} selected layers")
    return values


@dataclass(frozen=True)
class Combine:
    """How the selected layers become one array."""

    how: str = "mean"
    weights: Optional[Tuple[float, ...]] = None
    gamma: float = 1.0

    @classmethod
    def make(cls, how: str, n_layers: int, weights: Optional[ArrayLike] = None, gamma: float = 1.0) -> "Combine":
        return cls(how, check_combine(how, weights, n_layers), float(gamma))

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
        coeffs = cast(np.ndarray, self.coefficients())  # "weighted" or "scalar_mix" here: never None
        return np.tensordot(coeffs, stacked, axes=(0, 0)).astype(np.float32)
