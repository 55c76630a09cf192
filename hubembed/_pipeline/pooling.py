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

from typing import Any, Optional, Tuple

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
    weights: Optional[np.ndarray] = None,
) -> np.ndarray:
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


# A text with more windows than this is pooled window by window (memory bounded by one batch), when the
# pooling allows it; fewer windows are stitched into one token sequence first (exactly as before).
STREAM_WINDOWS = 32
STREAMABLE = ("mean", "max", "mean_max", "mean_sqrt_len", "cls", "pooled", "attention")


class WindowPool:
    """Streaming pooling of one long text, window by window, equal to ``pool`` over the stitched windows (its
    token vectors are never held whole): running sum, count, max, [CLS] of the first window, [SEP] of the last,
    pooled output. ``combine``: the plan's layer combination (``layers.Combine``); a prompt's pieces (after [CLS] in
    every window) count once, from the first window, unless ``include_prompt=False`` (then [CLS] neither)."""

    def __init__(
        self, combine: Any, pooling: str, special_tokens: bool, n_windows: int, include_prompt: bool = True
    ) -> None:
        self.combine, self.pooling, self.special_tokens, self.n_windows = combine, pooling, special_tokens, n_windows
        self.include_prompt = include_prompt
        self.prompted = False  # the windows hold a prompt
        self.seen, self.weight = 0, 0.0
        self.sum: Any = 0.0
        self.pooled: Any = 0.0
        self.max: Optional[np.ndarray] = None
        # (start, [CLS] or [SEP] vector, its attention weight)
        self.first: Optional[Tuple[int, np.ndarray, float]] = None
        self.last: Optional[Tuple[int, np.ndarray, float]] = None
        self.closed = False  # the special tokens are added (result() can be called again)

    def add(self, row: Any, vec: np.ndarray, pooled: Optional[np.ndarray], received: Optional[np.ndarray]) -> None:
        """One window: ``row`` (a ``batching.Row``), its layers [k, S, H], pooled output, attention received."""
        x = self.combine.apply(vec)  # [S, H'] (special tokens at 0 and -1)
        lo, hi = row.keep
        h = row.head  # after [CLS] and the prompt
        weights = np.ones(len(x), np.float32) if received is None else received.astype(np.float32)
        self._take(x[h + lo : h + hi], weights[h + lo : h + hi])
        self.prompted = row.prompt is not None
        if row.start == 0 and self.prompted and self.include_prompt:  # the prompt's pieces, once
            self._take(x[1:h], weights[1:h])
        cls = (row.start, x[0], 1.0 if received is None else float(received[0]))
        sep = (row.start, x[-1], 1.0 if received is None else float(received[-1]))
        if self.first is None or row.start < self.first[0]:
            self.first = cls
        if self.last is None or row.start > self.last[0]:
            self.last = sep
        if pooled is not None:
            self.pooled = self.pooled + pooled
        self.seen += 1

    def _take(self, x: np.ndarray, w: np.ndarray) -> None:
        if not len(x):
            return
        self.sum = self.sum + (x * w.reshape((-1,) + (1,) * (x.ndim - 1))).sum(axis=0)
        self.weight += float(w.sum())
        m = x.max(axis=0)
        self.max = m if self.max is None else np.maximum(self.max, m)

    def result(self) -> np.ndarray:
        assert self.first is not None and self.last is not None, "result() before any window"
        if self.pooling == "cls":
            return self.first[1]
        if self.pooling == "pooled":
            return self.pooled / self.n_windows
        if self.special_tokens and not self.closed:  # [CLS] of the first window, [SEP] of the last: once
            dropped = self.prompted and not self.include_prompt  # [CLS] goes with the prompt
            for _, v, w in (self.last,) if dropped else (self.first, self.last):
                self._take(v[None], np.array([w], np.float32))
            self.closed = True
        if self.pooling == "max":
            # The windows' keep ranges tile a (many-window, so non-empty) text: _take has set it.
            assert self.max is not None, "max pooling before any token"
            return self.max
        mean = self.sum / max(self.weight, 1e-12)
        if self.pooling == "mean_sqrt_len":
            return self.sum / np.sqrt(max(self.weight, 1.0))
        if self.pooling == "mean_max":
            return np.concatenate([mean, self.max], axis=-1)
        return mean  # mean, attention (weights = attention received, as pooling.pool)
