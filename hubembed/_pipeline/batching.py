"""Pack: tokenized texts -> rows (whole texts, windows of long ones, or pairs) -> length-sorted batches.

* A text whose content tokens do not fit in ``seq_length - 2`` is split into
  windows of that size overlapping by ``stride`` tokens (default: half a window),
  the last window aligned to the text's end; each token is later taken from the
  window where it has the most context on both sides. Or, with
  ``long="truncate"``, cut.
* Rows are sorted by length; a batch holds at most ``batch_size`` rows and at
  most ``max_tokens`` padded tokens, and is padded only to its own longest row,
  rounded up to a multiple of ``bucket`` (1 by default: restored functions do not retrace).
  The default is a token budget (``MAX_TOKENS``): many short texts or a few long
  ones per batch, so every matrix product has about the same number of rows.
* Packing is ``[CLS] a [SEP]`` (+ ``b [SEP]`` for pairs, round-robin truncation,
  as tensorflow_text's RoundRobinTrimmer) + padding, in numpy. A prompt's pieces go right
  after [CLS] in every row (every window of a long text), never cut: the text gets the room
  left (``hubembed._pipeline.prompts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

from hubembed.errors import InputError

LONG_MODES = ("window", "truncate")
# Padded lengths are rounded up to a multiple of this. A restored SavedModel function
# takes any [None, None] shape without retracing, so exact lengths (1) waste nothing;
# a shape-compiling backend (XLA) would want coarser buckets.
BUCKET = 1
# The default batch: at most MAX_TOKENS padded tokens and BATCH_SIZE rows. Measured on all-MiniLM-L6-v2 with 2
# cores (benchmarks/bench_jobs.py): 1,536-2,048 tokens per batch is 5-20% faster than 32 rows on STS-B and SST-2;
# 4,096 is slower again (the activations no longer stay in cache). max_tokens=None: rows only.
MAX_TOKENS = 2048
BATCH_SIZE = 256


@dataclass
class Row:
    """One packed row: a whole text, a window of one, or a pair."""

    text: int  # index of the text it belongs to
    ids: np.ndarray  # content ids of segment A in this row
    start: int = 0  # position of ids[0] among the text's content tokens
    keep: Tuple[int, int] = (0, 0)  # [lo, hi) of ids whose vectors this row contributes
    n_windows: int = 1  # windows of the text (1 = whole)
    pair: Optional[np.ndarray] = None  # content ids of segment B
    prompt: Optional[np.ndarray] = None  # the prompt's ids, right after [CLS] (None: no prompt)

    @property
    def length(self) -> int:
        return len(self.ids) + (len(self.pair) + 1 if self.pair is not None else 0) + 2 + self.n_prompt

    @property
    def n_prompt(self) -> int:
        """The prompt's pieces in this row (0 without one)."""
        return 0 if self.prompt is None else len(self.prompt)

    @property
    def head(self) -> int:
        """The position of ``ids[0]`` in the packed row: after [CLS] and the prompt."""
        return 1 + self.n_prompt


def windows(n: int, size: int, stride: int) -> List[Tuple[int, int, int, int]]:
    """Windows over n tokens: (start, end, keep_lo, keep_hi), keep ranges tiling [0, n).

    Consecutive windows overlap by ``stride`` tokens; a token in an overlap is kept
    from the window where it is furthest from an edge.
    """
    step = size - stride
    starts = list(range(0, max(n - size, 0) + 1, step))
    if starts[-1] + size < n:
        starts.append(n - size)
    bounds = [0]
    for k in range(len(starts) - 1):
        end_k, start_next = starts[k] + size, starts[k + 1]
        # In the overlap [start_next, end_k) context in window k shrinks towards its end and
        # grows in window k+1: they are equal at the midpoint.
        mid = (end_k - 1 + start_next) // 2 + 1
        bounds.append(min(max(mid, start_next), end_k))
    bounds.append(n)
    return [(s, min(s + size, n), bounds[k], bounds[k + 1]) for k, s in enumerate(starts)]


def check_stride(stride: int, seq_length: int, n_prompt: int = 0) -> None:
    """Refuse a window overlap that does not fit ``seq_length`` (checked before a model loads where the window is
    known then, and when texts are cut into windows; ``n_prompt``: the prompt's pieces in every window)."""
    size = seq_length - 2 - n_prompt
    if not (0 <= stride < size):
        prompt = f" - {n_prompt} prompt pieces" if n_prompt else ""
        raise InputError(
            f"stride={stride}: the overlap of windows must be in 0..{size - 1} "
            f"(seq_length {seq_length} - 2 special tokens{prompt} - 1)"
        )


def check_prompt_room(n_prompt: int, seq_length: int) -> None:
    """Refuse a prompt that leaves no room for text in a window."""
    if seq_length - 2 - n_prompt < 1:
        raise InputError(
            f"the prompt is {n_prompt} word pieces: with [CLS] and [SEP] it leaves no room for text in a window of "
            f"seq_length {seq_length} (load with a longer seq_length, or use a shorter prompt)"
        )


def make_rows(
    ids: Sequence[np.ndarray],
    seq_length: int,
    *,
    long: str = "window",
    stride: Optional[int] = None,
    pairs: Optional[Sequence[np.ndarray]] = None,
    prompt: Optional[np.ndarray] = None,
) -> Tuple[List[Row], np.ndarray, np.ndarray]:
    """Rows for every text, plus per-text (n_windows, truncated tokens); ``prompt``: the prompt's ids, in every row."""
    if long not in LONG_MODES:
        raise InputError(f"long={long!r}; valid: {', '.join(LONG_MODES)}")
    n_prompt = 0 if prompt is None else len(prompt)
    check_prompt_room(n_prompt, seq_length)
    size = seq_length - 2 - n_prompt  # text pieces per window
    if stride is None:
        stride = size // 2
    check_stride(stride, seq_length, n_prompt)
    rows: List[Row] = []
    n_windows = np.ones(len(ids), np.int32)
    truncated = np.zeros(len(ids), np.int64)
    for t, a in enumerate(ids):
        if pairs is not None:
            a2, b2 = trim_pair(a, pairs[t], size - 1)
            truncated[t] = len(a) + len(pairs[t]) - len(a2) - len(b2)
            rows.append(Row(t, a2, 0, (0, len(a2)), 1, b2, prompt))
        elif len(a) <= size:
            rows.append(Row(t, a, 0, (0, len(a)), prompt=prompt))
        elif long == "truncate":
            truncated[t] = len(a) - size
            rows.append(Row(t, a[:size], 0, (0, size), prompt=prompt))
        else:
            ws = windows(len(a), size, stride)
            n_windows[t] = len(ws)
            for s, e, lo, hi in ws:
                rows.append(Row(t, a[s:e], s, (lo - s, hi - s), len(ws), prompt=prompt))
    return rows, n_windows, truncated


def trim_pair(a: np.ndarray, b: np.ndarray, budget: int) -> Tuple[np.ndarray, np.ndarray]:
    """Round-robin truncation of two segments to ``budget`` tokens (RoundRobinTrimmer's rule)."""
    if len(a) + len(b) <= budget:
        return a, b
    keep_a = min(len(a), max((budget + 1) // 2, budget - len(b)))
    return a[:keep_a], b[: budget - keep_a]


def round_up(n: int, bucket: int, cap: int) -> int:
    return min(-(-n // bucket) * bucket, cap)


def plan(
    rows: Sequence[Row], *, batch_size: int, max_tokens: Optional[int], seq_length: int, bucket: int = BUCKET
) -> List[np.ndarray]:
    """Batches of row indices: length-sorted, <= batch_size rows and <= max_tokens padded tokens."""
    if batch_size < 1:
        raise InputError(f"batch_size={batch_size}; it must be >= 1")
    if max_tokens is not None and max_tokens < seq_length:
        raise InputError(f"max_tokens={max_tokens} is smaller than one row of seq_length {seq_length}")
    lengths = np.array([r.length for r in rows], np.int64)
    order = np.argsort(lengths, kind="stable")
    batches: List[np.ndarray] = []
    current: List[int] = []
    longest = 0
    for i in order:
        padded = round_up(max(longest, int(lengths[i])), bucket, seq_length)
        if current and (
            len(current) >= batch_size or (max_tokens is not None and padded * (len(current) + 1) > max_tokens)
        ):
            batches.append(np.array(current))
            current, longest = [], 0
        current.append(i)
        longest = max(longest, int(lengths[i]))
    if current:
        batches.append(np.array(current))
    return batches


def pack(
    rows: Sequence[Row], special: Mapping[str, int], seq_length: int, bucket: int = BUCKET
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """numpy int32 (word_ids, mask, type_ids, special_mask) [B, S], S = longest row rounded up."""
    S = round_up(max(r.length for r in rows), bucket, seq_length)
    B = len(rows)
    ids = np.full((B, S), special["padding_id"], np.int32)
    types = np.zeros((B, S), np.int32)
    mask = np.zeros((B, S), np.int32)
    spec = np.zeros((B, S), bool)
    cls, sep = special["start_of_sequence_id"], special["end_of_segment_id"]
    for i, r in enumerate(rows):
        n, h = len(r.ids), r.head
        ids[i, 0] = cls
        if r.prompt is not None:
            ids[i, 1:h] = r.prompt
        ids[i, h : h + n] = r.ids
        ids[i, h + n] = sep
        spec[i, [0, h + n]] = True
        end = h + n + 1
        if r.pair is not None:
            m = len(r.pair)
            ids[i, end : end + m] = r.pair
            ids[i, end + m] = sep
            types[i, end : end + m + 1] = 1
            spec[i, end + m] = True
            end += m + 1
        mask[i, :end] = 1
    return ids, mask, types, spec
