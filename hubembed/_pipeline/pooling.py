"""Pool: token vectors -> one vector per text, always masked.

Every pooling takes token vectors ``x [B, S, H]`` (or ``[B, S, k, H]`` when layers
are kept apart), the padding mask ``mask [B, S]`` (True on real tokens, [CLS] and
[SEP] included) and ``special [B, S]`` (True on [CLS]/[SEP]). With
``special_tokens=False`` the special positions do not count in mean/max/...;
a text with no token left pools to zeros (and is flagged as empty upstream).

| pooling | vector |
| --- | --- |
| cls | the [CLS] position |
| pooled | the model's ``pooled_output`` (handled by the caller) |
| mean | masked mean |
| max | masked max |
| mean_max | [mean, max] (2H wide) |
| mean_sqrt_len | masked sum / sqrt(count), as sentence-transformers |
| weightedmean | masked mean, the token at (1-based) position i weighted by i, as sentence-transformers' |
| first_last_avg | masked mean of (first block + last block) / 2 (the layer choice is part of it) |
| attention | tokens weighted by the attention they receive in one block (mean over heads and unmasked |
|           | queries), masked, renormalised |

``attention`` needs attention probabilities, which Hub encoders do not export: the
Model Garden fallback gives them (``received_attention`` turns them into weights).
"""

from __future__ import annotations

import numpy as np

from hubembed.errors import InputError

POOLINGS = (
    "cls",
    "pooled",
    "mean",
    "max",
    "mean_max",
    "mean_sqrt_len",
    "weightedmean",
    "first_last_avg",
    "attention",
)


def check(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise InputError(f"pooling={pooling!r}; valid: {', '.join(POOLINGS)}")
    return pooling


def width(pooling: str, hidden: int) -> int:
    return 2 * hidden if pooling == "mean_max" else hidden


def token_weights(mask: np.ndarray, special: np.ndarray, special_tokens: bool) -> np.ndarray:
    """[B, S] float32: 1 where a token counts."""
    keep = mask.astype(bool)
    if not special_tokens:
        keep = keep & ~special.astype(bool)
    return keep.astype(np.float32)


def _expand(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[B, S] -> broadcastable to x ([B, S, H] or [B, S, k, H])."""
    return w.reshape(w.shape + (1,) * (x.ndim - 2))


def received_attention(probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[B, heads, S_query, S_key] attention probabilities -> [B, S]: the attention each token receives,
    averaged over heads and over unmasked queries; 0 on padding."""
    m = mask.astype(np.float32)
    per_query = probs.mean(axis=1) * m[:, :, None]  # [B, Sq, Sk], masked queries dropped
    return per_query.sum(axis=1) / np.maximum(m.sum(axis=1, keepdims=True), 1.0) * m


def pool(
    x: np.ndarray,
    mask: np.ndarray,
    special: np.ndarray,
    pooling: str,
    special_tokens: bool = True,
    weights: np.ndarray = None,
):
    """Pool token vectors; returns [B, H] (or [B, k, H]; [B, 2H] for mean_max).

    weights [B, S]: per-token weights for pooling="attention" (see ``received_attention``).
    """
    if pooling == "cls":
        return x[:, 0]
    w = token_weights(mask, special, special_tokens)
    if pooling == "attention":
        if weights is None:
            raise InputError("pooling='attention' needs attention weights (from the Model Garden fallback)")
        w = w * weights.astype(np.float32)
        total = w.sum(axis=1, keepdims=True)
        w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 0.0)
        return (x * _expand(w, x)).sum(axis=1)
    if pooling == "weightedmean":  # sentence-transformers' WeightedMean: position i (1-based) weighs i
        w = w * np.arange(1, x.shape[1] + 1, dtype=np.float32)[None, :]
        total = w.sum(axis=1).reshape((-1,) + (1,) * (x.ndim - 2))
        return (x * _expand(w, x)).sum(axis=1) / np.maximum(total, 1e-9)
    we = _expand(w, x)
    count = w.sum(axis=1).reshape((-1,) + (1,) * (x.ndim - 2))  # [B, 1...]: broadcasts over [B, (k,) H]
    if pooling in ("mean", "first_last_avg"):
        return (x * we).sum(axis=1) / np.maximum(count, 1.0)
    if pooling == "mean_sqrt_len":
        return (x * we).sum(axis=1) / np.sqrt(np.maximum(count, 1.0))
    if pooling == "max":
        return _masked_max(x, we)
    if pooling == "mean_max":
        mean = (x * we).sum(axis=1) / np.maximum(count, 1.0)
        return np.concatenate([mean, _masked_max(x, we)], axis=-1)
    raise InputError(f"pooling={pooling!r} is not a token pooling (valid: {', '.join(POOLINGS)})")


def _masked_max(x: np.ndarray, we: np.ndarray) -> np.ndarray:
    # Not in place: the caller's array is left untouched.
    out = np.where(we > 0, x, -np.inf).max(axis=1)
    return np.where(np.isfinite(out), out, 0.0).astype(x.dtype)


def l2_normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
