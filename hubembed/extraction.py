"""Run rows through the encoder and stitch them back into per-text token vectors.

``text_tokens`` is the one pipeline every extraction uses: rows (``batching``)
are encoded batch by batch (length-sorted, each padded to its own length); the
selected layers are kept; each text's rows are stitched into its token vectors
(``TextTokens``) and yielded as soon as the text is complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from hubembed import batching
from hubembed import layers as layer_spec
from hubembed import pooling as pooling_mod
from hubembed.errors import InputError

log = logging.getLogger("hubembed")


@dataclass
class LayerPlan:
    """Which layers to fetch and how to combine them."""

    indices: List[Union[int, str]]
    combine: layer_spec.Combine
    need_pooled: bool = False

    def describe(self) -> dict:
        return {"layers": self.indices, "combine": self.combine.how,
                "weights": list(self.combine.weights) if self.combine.weights else None,
                "gamma": self.combine.gamma}


def layer_plan(signature, layers, combine: str, weights, gamma: float, pooling: Optional[str]) -> LayerPlan:
    """Resolve a layer spec against what the encoder exports."""
    L = signature.num_layers
    if pooling == "first_last_avg":
        if not (layers == -1 or layers is None) or combine not in ("mean", None):
            raise InputError("pooling='first_last_avg' chooses its layers itself (the first and last blocks, "
                             "averaged); leave layers and combine at their defaults")
        indices, how = [0, L - 1], "mean"
    else:
        indices, how = layer_spec.resolve(-1 if layers is None else layers, L), combine
    if layer_spec.EMBEDDINGS in indices:
        raise InputError("the embedding-layer output ('embeddings') is not exported by TF Hub encoders; "
                         "the Model Garden fallback can rebuild it")
    if not signature.has_encoder_outputs and any(i != L - 1 for i in indices):
        raise InputError(
            f"layers {indices} requested, but {signature.handle} does not export encoder_outputs "
            f"(only its last layer, {L - 1}); the Model Garden fallback can rebuild the others")
    return LayerPlan(indices, layer_spec.Combine.make(how, len(indices), weights, gamma),
                     need_pooled=pooling == "pooled")


@dataclass
class TextTokens:
    """One text's stitched token vectors: [CLS] content... [SEP] (pair... [SEP])."""

    ids: np.ndarray        # [T]
    special: np.ndarray    # [T] bool: [CLS]/[SEP]
    type_ids: np.ndarray   # [T]
    vectors: np.ndarray    # [k, T, H]: the selected layers
    pooled: Optional[np.ndarray]  # [H], mean over windows
    n_windows: int
    truncated: int


@dataclass
class ExtractionInfo:
    """What happened to each text: tokens, windows, truncation, emptiness."""

    n_tokens: np.ndarray    # content tokens (without [CLS]/[SEP])
    n_windows: np.ndarray
    truncated: np.ndarray   # content tokens dropped
    empty: np.ndarray       # no content token (empty or whitespace-only text)
    spec: dict = field(default_factory=dict)

    @property
    def split_rows(self) -> List[int]:
        return np.flatnonzero(self.n_windows > 1).tolist()

    @property
    def truncated_rows(self) -> List[int]:
        return np.flatnonzero(self.truncated > 0).tolist()

    @property
    def empty_rows(self) -> List[int]:
        return np.flatnonzero(self.empty).tolist()

    def summary(self) -> str:
        n = len(self.n_tokens)
        parts = [f"{n} texts, {int(self.n_tokens.sum())} tokens"]
        if self.split_rows:
            parts.append(f"{len(self.split_rows)} split into windows (rows {_few(self.split_rows)}; "
                         f"up to {int(self.n_windows.max())} windows, {int(self.n_tokens.max())} tokens)")
        if self.truncated_rows:
            parts.append(f"{len(self.truncated_rows)} truncated (rows {_few(self.truncated_rows)}; "
                         f"up to {int(self.truncated.max())} tokens dropped)")
        if self.empty_rows:
            parts.append(f"{len(self.empty_rows)} empty (rows {_few(self.empty_rows)}: only [CLS]/[SEP])")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"texts": len(self.n_tokens), "tokens": int(self.n_tokens.sum()), "split_rows": self.split_rows,
                "truncated_rows": self.truncated_rows, "empty_rows": self.empty_rows, **self.spec}

    def report(self) -> None:
        """Log what was not plain (never silent)."""
        if self.truncated_rows:
            log.warning("hubembed: %s", self.summary())
        elif self.split_rows or self.empty_rows:
            log.info("hubembed: %s", self.summary())


def _few(rows: Sequence[int], k: int = 5) -> str:
    s = ", ".join(str(r) for r in rows[:k])
    return s + (f", ... ({len(rows)} in all)" if len(rows) > k else "")


def run_batches(encoder, rows: Sequence[batching.Row], plan: LayerPlan, *, batch_size: int,
                max_tokens: Optional[int]) -> Iterator[Tuple[List[int], tuple, np.ndarray, Optional[np.ndarray]]]:
    """Yield (row indices, packed arrays, selected layers [k, B, S, H], pooled [B, H] or None)."""
    import tensorflow as tf

    special = encoder.preprocessor.special
    for idx in batching.plan(rows, batch_size=batch_size, max_tokens=max_tokens,
                             seq_length=encoder.seq_length):
        batch = [rows[i] for i in idx]
        packed = batching.pack(batch, special, encoder.seq_length)
        out = encoder.backend(tf.constant(packed[0]), tf.constant(packed[1]), tf.constant(packed[2]))
        if out["layers"] is not None:
            acts = np.stack([out["layers"][i].numpy() for i in plan.indices])
        else:  # only the last layer exists (checked by layer_plan)
            acts = out["sequence"].numpy()[None].repeat(len(plan.indices), axis=0)
        pooled = out["pooled"].numpy() if plan.need_pooled and out["pooled"] is not None else None
        if plan.need_pooled and pooled is None:
            raise InputError(f"{encoder.handle} exports no pooled_output; use pooling='cls' or 'mean'")
        yield idx, packed, acts, pooled


def text_tokens(encoder, rows: Sequence[batching.Row], n_windows: np.ndarray, truncated: np.ndarray,
                plan: LayerPlan, *, batch_size: int, max_tokens: Optional[int]) -> Iterator[Tuple[int, TextTokens]]:
    """Yield (text index, TextTokens) for every text, as soon as all its rows are encoded."""
    pending: Dict[int, list] = {}
    for idx, (ids, mask, types, special), acts, pooled in run_batches(
            encoder, rows, plan, batch_size=batch_size, max_tokens=max_tokens):
        for b, i in enumerate(idx):
            row = rows[i]
            length = int(mask[b].sum())
            part = (row, ids[b, :length], special[b, :length], types[b, :length], acts[:, b, :length],
                    None if pooled is None else pooled[b])
            if row.n_windows == 1:
                yield row.text, TextTokens(part[1], part[2], part[3], part[4], part[5], 1, int(truncated[row.text]))
                continue
            pending.setdefault(row.text, []).append(part)
            if len(pending[row.text]) == row.n_windows:
                yield row.text, _stitch(pending.pop(row.text), int(truncated[row.text]))


def _stitch(parts: list, truncated: int) -> TextTokens:
    """Windows -> one sequence: [CLS] of the first window, each token from its best window, last [SEP]."""
    parts.sort(key=lambda p: p[0].start)
    first, last = parts[0], parts[-1]
    vec = [first[4][:, :1]]
    ids = [first[1][:1]]
    for row, pids, _, _, pvec, _ in parts:
        lo, hi = row.keep
        vec.append(pvec[:, 1 + lo:1 + hi])  # +1: skip [CLS]
        ids.append(pids[1 + lo:1 + hi])
    vec.append(last[4][:, -1:])
    ids.append(last[1][-1:])
    ids = np.concatenate(ids)
    special = np.zeros(len(ids), bool)
    special[[0, -1]] = True
    pooled = None if first[5] is None else np.mean([p[5] for p in parts], axis=0)
    return TextTokens(ids, special, np.zeros(len(ids), np.int32), np.concatenate(vec, axis=1), pooled,
                      len(parts), truncated)


def pool_text(tt: TextTokens, plan: LayerPlan, pooling: str, special_tokens: bool) -> np.ndarray:
    """One text's vector: combine its layers, then pool."""
    if pooling == "pooled":
        return tt.pooled
    x = plan.combine.apply(tt.vectors)[None]  # [1, T, H'] (or [1, T, k, H])
    mask = np.ones((1, x.shape[1]), bool)
    return pooling_mod.pool(x, mask, tt.special[None], pooling, special_tokens)[0]
