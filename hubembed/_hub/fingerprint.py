"""The content fingerprint of a model's weights: the same weights, the same value, wherever they were loaded from."""

from __future__ import annotations

import hashlib

import numpy as np


def weights_fingerprint(obj: object) -> str:
    """sha256 over the model's variables (sorted names, dtypes, shapes, bytes): the same weights, the same value."""

    h = hashlib.sha256()
    for v in sorted(getattr(obj, "variables", None) or [], key=lambda v: v.name):
        a = v.numpy()
        h.update(f"{v.name}|{a.dtype}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
