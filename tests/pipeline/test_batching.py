"""hubembed._pipeline.batching: rows (windows, truncation, pairs), batch plans and packing, checked by hand."""

import numpy as np
import pytest

from hubembed import InputError
from hubembed._pipeline import batching
from hubembed._pipeline.batching import Row, make_rows, pack, plan

SPECIAL = {"start_of_sequence_id": 101, "end_of_segment_id": 102, "padding_id": 0}


def _ids(n, base=1000):
    return np.arange(base, base + n, dtype=np.int32)


def _context(p, start, size):
    """Tokens of context on the poorer side of position p in the window [start, start + size)."""
    return min(p - start, start + size - 1 - p)


@pytest.mark.parametrize(
    "n,seq_length,stride",
    [(10, 6, None), (11, 6, 2), (17, 7, 0), (30, 10, 7), (9, 5, 1), (100, 12, None), (13, 12, 9), (23, 8, 5)],
)
def test_windows_tile_the_text_and_keep_each_token_from_its_best_window(n, seq_length, stride):
    a = _ids(n)
    size = seq_length - 2
    rows, n_windows, truncated = make_rows([a], seq_length, stride=stride)
    step = size - (size // 2 if stride is None else stride)
    assert n_windows.tolist() == [len(rows)] and len(rows) > 1 and truncated.tolist() == [0]
    starts = [r.start for r in rows]
    assert starts[0] == 0 and starts[-1] + size == n  # the last window is aligned to the text's end
    assert all(0 < b - s <= step for s, b in zip(starts, starts[1:]))  # overlap of at least `stride`
    kept = []
    for r in rows:
        assert r.text == 0 and r.n_windows == len(rows) and r.pair is None
        assert len(r.ids) == size and r.length == seq_length
        np.testing.assert_array_equal(r.ids, a[r.start : r.start + size])
        lo, hi = r.keep
        assert 0 <= lo <= hi <= size
        kept += [r.start + j for j in range(lo, hi)]
    assert kept == list(range(n))  # every token once, in order
    for p in range(n):
        owner = next(r for r in rows if r.start + r.keep[0] <= p < r.start + r.keep[1])
        best = max(_context(p, r.start, size) for r in rows if r.start <= p < r.start + size)
        assert _context(p, owner.start, size) == best


def test_short_texts_are_one_row_and_long_mode_truncate_cuts():
    short, long_ = _ids(4), _ids(9, 2000)
    rows, n_windows, truncated = make_rows([short, long_, _ids(0)], 6, long="truncate")
    assert [r.text for r in rows] == [0, 1, 2]
    np.testing.assert_array_equal(rows[0].ids, short)
    np.testing.assert_array_equal(rows[1].ids, long_[:4])
    assert [r.keep for r in rows] == [(0, 4), (0, 4), (0, 0)]
    assert n_windows.tolist() == [1, 1, 1] and truncated.tolist() == [0, 5, 0]
    assert [r.length for r in rows] == [6, 6, 2]


def _round_robin(na, nb, budget):
    """One token to each segment in turn while it has some, until the budget is spent."""
    ka = kb = 0
    turn = 0
    while ka + kb < budget and (ka < na or kb < nb):
        if turn == 0 and ka < na:
            ka += 1
        elif turn == 1 and kb < nb:
            kb += 1
        turn = 1 - turn
    return ka, kb


@pytest.mark.parametrize("na", [0, 1, 3, 6, 12])
@pytest.mark.parametrize("nb", [0, 2, 5, 11])
def test_pairs_are_trimmed_round_robin(na, nb):
    seq_length = 10  # budget 7 content tokens: [CLS] a [SEP] b [SEP]
    a, b = _ids(na), _ids(nb, 5000)
    rows, n_windows, truncated = make_rows([a], seq_length, pairs=[b])
    ka, kb = _round_robin(na, nb, seq_length - 3)
    (r,) = rows
    np.testing.assert_array_equal(r.ids, a[:ka])
    np.testing.assert_array_equal(r.pair, b[:kb])
    assert r.keep == (0, ka) and r.n_windows == 1 and n_windows.tolist() == [1]
    assert truncated.tolist() == [na + nb - ka - kb]
    assert r.length == ka + kb + 3 <= seq_length


def test_make_rows_refuses_bad_modes_and_strides():
    with pytest.raises(InputError, match="long='cut'"):
        make_rows([_ids(3)], 8, long="cut")
    for stride in (-1, 6, 7):
        with pytest.raises(InputError, match=r"0\.\.5"):
            make_rows([_ids(3)], 8, stride=stride)


def _rows(lengths):
    return [Row(t, _ids(n), 0, (0, n)) for t, n in enumerate(lengths)]


@pytest.mark.parametrize("batch_size,max_tokens", [(3, None), (256, 40), (4, 30), (1, None), (100, 16)])
def test_plan_sorts_by_length_and_respects_both_limits(batch_size, max_tokens):
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 15, size=37).tolist()
    rows = _rows(lengths)
    batches = plan(rows, batch_size=batch_size, max_tokens=max_tokens, seq_length=16)
    flat = np.concatenate(batches).tolist()
    assert sorted(flat) == list(range(len(rows)))  # every row once
    row_len = [r.length for r in rows]
    assert [row_len[i] for i in flat] == sorted(row_len)  # length-sorted overall
    for b in batches:
        assert 1 <= len(b) <= batch_size
        if max_tokens is not None:
            assert max(row_len[i] for i in b) * len(b) <= max_tokens
    # Greedy: a batch is closed only when the next row would break a limit.
    for b, nxt in zip(batches, batches[1:]):
        longest = max(row_len[i] for i in list(b) + [nxt[0]])
        assert len(b) == batch_size or (max_tokens is not None and longest * (len(b) + 1) > max_tokens)


def test_plan_rows_only_makes_equal_batches():
    batches = plan(_rows([5] * 7), batch_size=3, max_tokens=None, seq_length=8)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert plan([], batch_size=3, max_tokens=None, seq_length=8) == []


def test_plan_refuses_bad_limits():
    with pytest.raises(InputError, match="batch_size=0"):
        plan(_rows([3]), batch_size=0, max_tokens=None, seq_length=8)
    with pytest.raises(InputError, match="max_tokens=7"):
        plan(_rows([3]), batch_size=2, max_tokens=7, seq_length=8)


def test_pack_single_and_pair_rows():
    rows = [
        Row(0, np.array([5, 6, 7], np.int32)),
        Row(1, np.array([8], np.int32), pair=np.array([9, 10], np.int32)),
        Row(2, np.zeros(0, np.int32)),
    ]
    ids, mask, types, special = pack(rows, SPECIAL, seq_length=16)
    # The longest row (the pair: [CLS] 8 [SEP] 9 10 [SEP]) is 6 tokens: no padding past it.
    np.testing.assert_array_equal(
        ids,
        [
            [101, 5, 6, 7, 102, 0],
            [101, 8, 102, 9, 10, 102],
            [101, 102, 0, 0, 0, 0],
        ],
    )
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(types, [[0] * 6, [0, 0, 0, 1, 1, 1], [0] * 6])
    np.testing.assert_array_equal(
        special,
        [
            [1, 0, 0, 0, 1, 0],
            [1, 0, 1, 0, 0, 1],
            [1, 1, 0, 0, 0, 0],
        ],
    )
    assert ids.dtype == mask.dtype == types.dtype == np.int32 and special.dtype == bool


def test_pack_pads_to_the_bucket_but_never_past_seq_length():
    rows = [Row(0, np.array([5, 6, 7], np.int32))]  # 5 tokens
    assert pack(rows, SPECIAL, seq_length=16, bucket=4)[0].shape == (1, 8)
    assert pack(rows, SPECIAL, seq_length=6, bucket=4)[0].shape == (1, 6)
    assert batching.round_up(9, 8, 100) == 16 and batching.round_up(8, 8, 100) == 8
