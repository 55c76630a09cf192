"""The result types of ``Encoder.encode`` and ``Encoder.internals``, and how per-text results are padded into them.

(``TokenEmbeddings`` and ``WordEmbeddings``, of ``embed_tokens`` / ``embed_words``, live with the span logic in
``hubembed._pipeline.tokens``; ``ExtractionInfo`` in ``hubembed._pipeline.info``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, cast

import numpy as np

from hubembed._pipeline.info import ExtractionInfo
from hubembed._pipeline.run import TextTokens
from hubembed._pipeline.spec import LayerPlan


def _brief(name: str, fields: Dict[str, Any]) -> str:
    """A one-line repr: arrays as their shape and dtype, not their values."""
    parts = []
    for k, v in fields.items():
        if isinstance(v, np.ndarray):
            parts.append(f"{k}=<{v.dtype} {list(v.shape)}>")
        elif isinstance(v, dict):
            parts.append(f"{k}={{{', '.join(v)}}}")
        elif v is not None and k != "info":
            parts.append(f"{k}={v!r}")
    return f"{name}({', '.join(parts)})"


@dataclass(repr=False)
class EncoderOutputs:
    """Outputs for N texts, padded to the longest of them (numpy).

    pooled [N, H] (None if not exported); sequence [N, S, H] (the last layer);
    layers [L, N, S, H] (None if not exported); mask [N, S] (1 = real token,
    [CLS]/[SEP] included); token_ids [N, S]; type_ids [N, S]; info (windows,
    truncation, empty texts). A text longer than the window is stitched from
    overlapping windows, so S can exceed seq_length.
    """

    pooled: Optional[np.ndarray]
    sequence: np.ndarray
    layers: Optional[np.ndarray]
    mask: np.ndarray
    token_ids: np.ndarray
    type_ids: np.ndarray
    info: ExtractionInfo
    embeddings: Optional[np.ndarray] = None  # [N, S, H]: the embedding-layer output (Model Garden backend)

    def __repr__(self) -> str:
        return _brief("EncoderOutputs", vars(self))


@dataclass(repr=False)
class Internals:
    """What happens inside the encoder for N texts (the Model Garden rebuild), padded to the longest.

    layer_indices: the blocks reported; embeddings [N, S, H]; layers [k, N, S, H];
    attention [k, N, heads, S, S] (query x key; rows sum to 1 over unmasked keys) or None;
    sublayers: name -> [k, N, S, H] ([k, N, S, I] for "intermediate"), see
    ``hubembed.garden.SUBLAYERS``, or None. Texts longer than one window are truncated
    (attention spans one window); ``info`` says which.
    """

    layer_indices: List[int]
    embeddings: np.ndarray
    layers: np.ndarray
    attention: Optional[np.ndarray]
    sublayers: Optional[dict]
    mask: np.ndarray
    token_ids: np.ndarray
    type_ids: np.ndarray
    info: ExtractionInfo

    def __repr__(self) -> str:
        return _brief("Internals", vars(self))


def pad(results: Sequence[TextTokens], k: int, H: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-text TextTokens -> layers [k, N, S, H], ids, mask, type ids [N, S], padded to the longest."""
    S = max((len(r.ids) for r in results), default=0)
    N = len(results)
    layers = np.zeros((k, N, S, H), np.float32)
    ids, mask, types = (np.zeros((N, S), np.int32) for _ in range(3))
    for t, r in enumerate(results):
        n = len(r.ids)
        layers[:, t, :n] = r.vectors
        ids[t, :n], mask[t, :n], types[t, :n] = r.ids, 1, r.type_ids
    return layers, ids, mask, types


def stack_pooled(results: Sequence[TextTokens], plan: LayerPlan, H: int) -> Optional[np.ndarray]:
    """The texts' pooled outputs [N, H], or None where the plan does not fetch them."""
    if not plan.need_pooled:
        return None
    # need_pooled: every text's rows were encoded with the pooled output, so none of them is None.
    pooled = cast(List[np.ndarray], [r.pooled for r in results])
    return np.stack(pooled) if results else np.zeros((0, H), np.float32)


class InternalsBuffer:
    """``Encoder.internals``' output arrays, filled batch by batch (``sublayer_names``: the rebuild's)."""

    def __init__(
        self,
        N: int,
        S: int,
        H: int,
        chosen: Sequence[int],
        heads: int,
        attention: bool,
        sublayer_names: Optional[Sequence[str]],
    ) -> None:
        k = len(chosen)
        self.chosen, self.attention, self.shape = list(chosen), attention, (k, N, S)
        self.emb = np.zeros((N, S, H), np.float32)
        self.layers = np.zeros((k, N, S, H), np.float32)
        self.att = np.zeros((k, N, heads, S, S), np.float32) if attention else None
        self.sub: Optional[Dict[str, Optional[np.ndarray]]] = (
            {name: None for name in sublayer_names} if sublayer_names is not None else None
        )
        self.ids, self.mask, self.types = (np.zeros((N, S), np.int32) for _ in range(3))

    def add(self, t: Sequence[int], packed: tuple, out: Dict[str, Any]) -> None:
        """One batch: ``t`` its text indices, ``packed`` (ids, mask, types, special), ``out`` the rebuild's."""
        ids, mask, types, _ = packed
        s = ids.shape[1]
        self.ids[t, :s], self.mask[t, :s], self.types[t, :s] = ids, mask, types
        self.emb[t, :s] = out["embeddings"].numpy()
        for j, layer in enumerate(self.chosen):
            self.layers[j, t, :s] = out["layers"][layer].numpy()
            if self.att is not None:
                self.att[j, t, :, :s, :s] = out["attention"][layer].numpy()
            if self.sub is not None:
                self._add_sublayers(j, t, s, layer, out)

    def _add_sublayers(self, j: int, t: Sequence[int], s: int, layer: int, out: Dict[str, Any]) -> None:
        assert self.sub is not None
        for name in self.sub:
            v = out["sublayers"][name][layer].numpy()
            arr = self.sub[name]
            if arr is None:
                arr = self.sub[name] = np.zeros(self.shape + (v.shape[-1],), np.float32)
            arr[j, t, :s] = v

    def result(self, info: ExtractionInfo) -> Internals:
        return Internals(self.chosen, self.emb, self.layers, self.att, self.sub, self.mask, self.ids, self.types, info)
