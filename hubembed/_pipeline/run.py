"""Run rows through a backend and stitch them back into per-text token vectors.

``text_tokens`` is the one pipeline every extraction uses: rows (``batching``)
are encoded batch by batch (length-sorted, each padded to its own length) by a
backend (``backends``: the Hub model or the Model Garden rebuild); the selected
layers are kept; each text's rows are stitched into its token vectors
(``TextTokens``) and yielded as soon as the text is complete. It receives the
backend and plain values (special token ids, sequence length), not the Encoder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from hubembed._pipeline import batching, tokens
from hubembed._pipeline import pooling as pooling_mod
from hubembed._pipeline.info import ExtractionInfo
from hubembed._pipeline.spec import LayerPlan
from hubembed._pipeline.texts import split_pairs

log = logging.getLogger("hubembed")


@dataclass
class TextTokens:
    """One text's stitched token vectors: [CLS] (prompt...) content... [SEP] (pair... [SEP])."""

    ids: np.ndarray  # [T]
    special: np.ndarray  # [T] bool: [CLS]/[SEP]
    type_ids: np.ndarray  # [T]
    vectors: np.ndarray  # [k, T, H]: the selected layers
    pooled: Optional[np.ndarray]  # [H], mean over windows
    n_windows: int
    truncated: int
    attention: Optional[np.ndarray] = None  # [T]: attention each token receives (pooling="attention")
    prompt: Optional[int] = None  # the prompt's pieces, after [CLS] (None: no prompt)

    @property
    def head(self) -> int:
        """The position of the first content token: after [CLS] and the prompt."""
        return 1 + (self.prompt or 0)


def text_rows(
    preprocessor: Any,
    seq_length: int,
    texts: Sequence,
    *,
    long: str,
    stride: Optional[int],
    word_ids: Optional[List[Any]] = None,
    prompt: Optional[str] = None,
) -> Tuple[List[batching.Row], ExtractionInfo]:
    """Texts (or (a, b) pairs) -> the rows the encoder runs (a window each; long texts in overlapping windows or
    truncated), and what happened to each text (tokens, windows, truncation, empty). ``word_ids``: the texts'
    word-piece ids when already tokenized (word spans); ``preprocessor``: the paired one (``token_ids``);
    ``prompt``: a text put before each (tokenized once; ``hubembed._pipeline.prompts``)."""
    firsts, seconds = split_pairs(texts)
    ids = word_ids if word_ids is not None else tokens.token_ids(preprocessor, firsts)
    pair_ids = tokens.token_ids(preprocessor, seconds) if seconds is not None else None
    prompt_ids = None if prompt is None else tokens.token_ids(preprocessor, [prompt])[0]
    rows, n_windows, truncated = batching.make_rows(
        ids, seq_length, long=long, stride=stride, pairs=pair_ids, prompt=prompt_ids
    )
    n_tok = np.array([len(a) for a in ids], np.int64)
    if pair_ids is not None:
        n_tok += np.array([len(b) for b in pair_ids], np.int64)
    return rows, ExtractionInfo(n_tok, n_windows, truncated, n_tok == 0)


@dataclass(frozen=True)
class Packing:
    """How rows become batches: the special token ids, the longest row, and the batch limits."""

    special: dict
    seq_length: int
    batch_size: int
    max_tokens: Optional[int]


def run_batches(backend: Any, rows: Sequence[batching.Row], plan: LayerPlan, packing: Packing) -> Iterator[tuple]:
    """Yield (row indices, packed arrays, selected layers [k, B, S, H], pooled [B, H] or None,
    attention received per token [B, S] or None).

    One batch ahead runs on a worker thread while the caller pools and stitches the one before (TensorFlow
    releases the GIL while it computes), so the Python work per batch hides behind the encoder.
    """
    from concurrent.futures import ThreadPoolExecutor

    batches = batching.plan(
        rows, batch_size=packing.batch_size, max_tokens=packing.max_tokens, seq_length=packing.seq_length
    )

    def encode(idx: np.ndarray) -> tuple:
        packed = batching.pack([rows[i] for i in idx], packing.special, packing.seq_length)
        return (idx, packed) + _encode_batch(backend, plan, packed)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hubembed-encode") as pool:
        ahead = pool.submit(encode, batches[0]) if batches else None
        for k in range(len(batches)):
            current = ahead
            assert current is not None  # submitted for batch k (batches[0] before the loop, k + 1 in it)
            ahead = pool.submit(encode, batches[k + 1]) if k + 1 < len(batches) else None
            try:
                result = current.result()
            except BaseException:
                if ahead is not None:
                    ahead.cancel()
                raise
            yield result


def _encode_batch(backend: Any, plan: LayerPlan, packed: tuple) -> tuple:
    """(selected layers [k, B, S, H], pooled [B, H] or None, attention received [B, S] or None) for one batch."""
    out = backend(packed[0], packed[1], packed[2], plan=plan)  # int32 arrays: each backend takes them as they are
    acts = out.stack(plan.indices)
    pooled = np.asarray(out.pooled) if plan.need_pooled else None
    received = None
    if plan.attention_layer is not None:
        received = pooling_mod.received_attention(np.asarray(out.attention[plan.attention_layer]), packed[1])
    return acts, pooled, received


@dataclass
class Pooled:
    """A text already pooled window by window (``text_tokens(..., pool=...)``)."""

    vector: np.ndarray
    n_windows: int
    truncated: int


def text_tokens(
    backend: Any,
    rows: Sequence[batching.Row],
    truncated: np.ndarray,
    plan: LayerPlan,
    packing: Packing,
    pool: Optional[Tuple[Any, ...]] = None,
) -> Iterator[Tuple[int, Union[TextTokens, Pooled]]]:
    """Yield (text index, TextTokens) for every text, as soon as all its rows are encoded.

    pool=(pooling, special_tokens[, include_prompt]): texts with more than STREAM_WINDOWS windows are pooled as
    their windows arrive and yielded as ``Pooled`` (their token vectors are never held whole).
    """
    pending: Dict[int, list] = {}
    streaming: Dict[int, pooling_mod.WindowPool] = {}
    stream = pool if pool is not None and pool[0] in pooling_mod.STREAMABLE else None  # None: never streamed
    for idx, (ids, mask, types, special), acts, pooled, received in run_batches(backend, rows, plan, packing):
        for b, i in enumerate(idx):
            row = rows[i]
            length = int(mask[b].sum())
            if stream is not None and row.n_windows > pooling_mod.STREAM_WINDOWS:
                include_prompt = bool(stream[2]) if len(stream) > 2 else True
                acc = streaming.setdefault(
                    row.text,
                    pooling_mod.WindowPool(plan.combine, stream[0], stream[1], row.n_windows, include_prompt),
                )
                acc.add(
                    row,
                    acts[:, b, :length],
                    None if pooled is None else pooled[b],
                    None if received is None else received[b, :length],
                )
                if acc.seen == row.n_windows:
                    yield row.text, Pooled(streaming.pop(row.text).result(), row.n_windows, int(truncated[row.text]))
                continue
            part = (
                row,
                ids[b, :length],
                special[b, :length],
                types[b, :length],
                acts[:, b, :length],
                None if pooled is None else pooled[b],
                None if received is None else received[b, :length],
            )
            if row.n_windows == 1:
                prompt = None if row.prompt is None else row.n_prompt
                yield (
                    row.text,
                    TextTokens(
                        part[1], part[2], part[3], part[4], part[5], 1, int(truncated[row.text]), part[6], prompt
                    ),
                )
                continue
            pending.setdefault(row.text, []).append(part)
            if len(pending[row.text]) == row.n_windows:
                yield row.text, _stitch(pending.pop(row.text), int(truncated[row.text]))


def _stitch(parts: list, truncated: int) -> TextTokens:
    """Windows -> one sequence: [CLS] (and the prompt) of the first window, each token from its best window, last
    [SEP]."""
    parts.sort(key=lambda p: p[0].start)
    first, last = parts[0], parts[-1]
    h = first[0].head
    vec: List[np.ndarray] = [first[4][:, :h]]
    id_parts: List[np.ndarray] = [first[1][:h]]
    att: Optional[List[np.ndarray]] = [first[6][:h]] if first[6] is not None else None
    for row, pids, _, _, pvec, _, patt in parts:
        lo, hi = row.keep
        vec.append(pvec[:, h + lo : h + hi])  # skip [CLS] and the prompt
        id_parts.append(pids[h + lo : h + hi])
        if att is not None:
            att.append(patt[h + lo : h + hi])
    vec.append(last[4][:, -1:])
    id_parts.append(last[1][-1:])
    if att is not None:
        att.append(last[6][-1:])
    ids = np.concatenate(id_parts)
    special = np.zeros(len(ids), bool)
    special[[0, -1]] = True
    pooled = None if first[5] is None else np.mean([p[5] for p in parts], axis=0)
    return TextTokens(
        ids,
        special,
        np.zeros(len(ids), np.int32),
        np.concatenate(vec, axis=1),
        pooled,
        len(parts),
        truncated,
        None if att is None else np.concatenate(att),
        None if first[0].prompt is None else first[0].n_prompt,
    )


def pool_text(
    tt: Union[TextTokens, Pooled], plan: LayerPlan, pooling: str, special_tokens: bool, include_prompt: bool = True
) -> np.ndarray:
    """One text's vector: combine its layers, then pool (``include_prompt=False``: [CLS] and the prompt's pieces
    left out, as sentence-transformers' ``Pooling(include_prompt=False)``)."""
    if isinstance(tt, Pooled):
        return tt.vector
    if pooling == "pooled":
        assert tt.pooled is not None  # pooling="pooled": the plan fetches the pooled output (need_pooled)
        return tt.pooled
    x = plan.combine.apply(tt.vectors)[None]  # [1, T, H'] (or [1, T, k, H])
    mask = np.ones((1, x.shape[1]), bool)
    if tt.prompt is not None and not include_prompt:
        mask[:, : tt.head] = False
    weights = None if tt.attention is None else tt.attention[None]
    return pooling_mod.pool(x, mask, tt.special[None], pooling, special_tokens, weights=weights)[0]
