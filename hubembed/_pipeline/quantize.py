"""Output quantization for storage and retrieval, as sentence-transformers' ``quantize_embeddings``.

| precision | dtype | per vector of D floats |
|---|---|---|
| float32 | float32 | D values (nothing done) |
| int8 / uint8 | int8 / uint8 | D codes: 256 buckets between each dimension's calibration minimum and maximum |
| binary / ubinary | int8 / uint8 | ceil(D / 8) bytes: the bits ``x > 0``, packed (binary: minus 128) |

int8/uint8 need the calibration ranges (``Ranges``: per-dimension min and max) of a calibration set, kept
(``Ranges.save``, ``.npz``) so a corpus and its queries share buckets; ``dequantize`` maps codes back to the
buckets' middles. Codes equal sentence-transformers' for the same vectors and ranges.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Dict, Optional, Type, Union

import numpy as np
from numpy.typing import ArrayLike

from hubembed.errors import InputError

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
CALIBRATED = ("int8", "uint8")


def check(precision: str) -> str:
    if not isinstance(precision, str):  # e.g. ranges given where the precision goes: name it, never print it
        what = type(precision).__name__ + (f" of shape {np.shape(precision)}" if hasattr(precision, "shape") else "")
        hint = " (ranges are the third argument: dequantize(codes, 'int8', ranges))" if _ranges_like(precision) else ""
        raise InputError(f"precision: a string ({', '.join(PRECISIONS)}), got a {what}{hint}")
    if precision not in PRECISIONS:
        raise InputError(f"precision={precision!r}; valid: {', '.join(PRECISIONS)}")
    return precision


def _ranges_like(value: object) -> bool:
    return isinstance(value, Ranges) or (hasattr(value, "shape") and len(np.shape(value)) == 2)


def width(precision: str, dim: int) -> int:
    """The stored width of a D-float vector."""
    return (dim + 7) // 8 if precision in ("binary", "ubinary") else dim


def dtype(precision: str) -> Type[np.generic]:
    types: Dict[str, Type[np.generic]] = {"float32": np.float32, "int8": np.int8, "binary": np.int8}
    return types.get(precision, np.uint8)


@dataclass(frozen=True, eq=False)
class Ranges:
    """Per-dimension calibration range [low, high] of int8/uint8 quantization."""

    low: np.ndarray  # [D] float32
    high: np.ndarray  # [D] float32

    @classmethod
    def fit(cls, calibration: ArrayLike) -> "Ranges":
        """The min and max of each dimension over calibration vectors [N, D] (N >= 2)."""
        x = np.asarray(calibration, np.float32)
        if x.ndim != 2 or len(x) < 2:
            raise InputError(
                f"calibration vectors must be [N, D] with N >= 2 (got shape {x.shape}): the ranges of one "
                f"vector would put every dimension at one end"
            )
        return cls(x.min(axis=0), x.max(axis=0))

    @classmethod
    def of(cls, value: RangesLike) -> "Ranges":
        """A Ranges, from itself, a path to a saved one, or a [2, D] array (sentence-transformers' ``ranges``)."""
        if isinstance(value, Ranges):
            return value
        if isinstance(value, str):
            try:
                with np.load(value) as f:
                    return cls(f["low"].astype(np.float32), f["high"].astype(np.float32))
            except (OSError, KeyError, ValueError) as e:
                raise InputError(f"ranges={value!r}: not a saved hubembed Ranges file ({e})") from None
        a = np.asarray(value, np.float32)
        if a.ndim != 2 or a.shape[0] != 2:
            raise InputError(f"ranges: a [2, D] array of per-dimension minima and maxima (got shape {a.shape})")
        return cls(a[0], a[1])

    def save(self, path: str) -> str:
        np.savez(path, low=self.low, high=self.high)
        return path if path.endswith(".npz") else path + ".npz"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.low.tobytes() + self.high.tobytes()).hexdigest()

    def _steps(self) -> np.ndarray:
        steps = (self.high - self.low) / 255
        return np.where(steps == 0, 1, steps).astype(np.float32)


# A Ranges, the path of a saved one (.npz), or a [2, D] array of minima and maxima.
RangesLike = Union[Ranges, str, ArrayLike]


def quantize(x: np.ndarray, precision: str, ranges: Optional[RangesLike] = None) -> np.ndarray:
    """Vectors [..., D] float -> codes of ``precision`` (int8/uint8 need ``ranges``)."""
    check(precision)
    x = np.asarray(x, np.float32)
    if precision == "float32":
        return x
    if precision in ("binary", "ubinary"):
        bits = np.packbits(x > 0, axis=-1)
        return (bits.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else bits
    if ranges is None:
        raise InputError(
            f"precision={precision!r} needs calibration ranges (ranges=Ranges.fit(calibration vectors) or a "
            f"saved one): each text's own range would make codes incomparable"
        )
    r = Ranges.of(ranges)
    if r.low.shape[-1] != x.shape[-1]:
        raise InputError(f"ranges are for {r.low.shape[-1]} dimensions, the vectors have {x.shape[-1]}")
    q = np.clip(np.floor((x - r.low) / r._steps()), 0, 255)
    return (q - 128).astype(np.int8) if precision == "int8" else q.astype(np.uint8)


def dequantize(codes: np.ndarray, precision: str, ranges: Optional[RangesLike] = None) -> np.ndarray:
    """int8/uint8 codes -> float32 vectors at their buckets' middles (float32: as given)."""
    check(precision)
    if precision == "float32":
        return np.asarray(codes, np.float32)
    if precision not in CALIBRATED:
        raise InputError(f"precision={precision!r} keeps only signs: it cannot be turned back into values")
    if ranges is None:
        raise InputError(f"dequantizing {precision} codes needs the ranges they were made with")
    r = Ranges.of(ranges)
    q = np.asarray(codes).astype(np.float32) + (128 if precision == "int8" else 0)
    return (r.low + (q + 0.5) * r._steps()).astype(np.float32)
