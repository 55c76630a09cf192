"""hubembed._pipeline.run: texts -> rows, rows through a (fake) backend, windows stitched back, pool_text.

The fake backend gives every token a vector it can be traced back from: its id, its position in its row, the
row's length, the layer and its type id. So each stitched token says which window it came from.
"""

import numpy as np
import pytest

from hubembed._pipeline import pooling as pooling_mod
from hubembed._pipeline.backends import Activations
from hubembed._pipeline.layers import Combine
from hubembed._pipeline.run import Packing, Pooled, TextTokens, pool_text, text_rows, text_tokens
from hubembed._pipeline.spec import LayerPlan

CLS, SEP, PAD = 101, 102, 0
SPECIAL = {"start_of_sequence_id": CLS, "end_of_segment_id": SEP, "padding_id": PAD}
N_LAYERS = 3
ID, POS, LEN, LAYER, TYPE = range(5)


class FakePreprocessor:
    """What tokens.token_ids needs: token_arrays. The texts are their ids, space-separated ("1000 1001")."""

    def __init__(self):
        self.calls = []

    def token_arrays(self, texts):
        self.calls.append(list(texts))
        return [np.array([int(w) for w in t.split()], np.int32) for t in texts]


class FakeBackend:
    def __init__(self, positions=True, heads=2):
        self.positions = positions
        self.heads = heads
        self.shapes = []

    def __call__(self, word_ids, mask, type_ids, *, training=False, plan=None):
        ids = np.asarray(word_ids).astype(np.float32)
        m = np.asarray(mask).astype(np.float32)
        types = np.asarray(type_ids).astype(np.float32)
        B, S = ids.shape
        self.shapes.append((B, S))
        pos = np.broadcast_to(np.arange(S, dtype=np.float32), (B, S))
        length = np.broadcast_to(m.sum(1, keepdims=True), (B, S))
        if not self.positions:
            pos, length = np.zeros_like(pos), np.zeros_like(length)
        layers = [np.stack([ids, pos, length, np.full_like(ids, k), types], axis=-1) for k in range(N_LAYERS)]
        pooled = np.stack([(ids * m).sum(1), m.sum(1), np.zeros(B), np.zeros(B), np.zeros(B)], axis=-1)
        # Every query attends uniformly to the unmasked keys: each real token receives 1 / row length.
        att = np.broadcast_to(m[:, None, None, :] / m.sum(1)[:, None, None, None], (B, self.heads, S, S))
        return Activations(layers[-1], pooled.astype(np.float32), layers, attention=[att] * N_LAYERS)


def _plan(indices=(0, 2), how="none", need_pooled=True, attention_layer=None):
    return LayerPlan(list(indices), Combine(how), need_pooled=need_pooled, attention_layer=attention_layer)


def _run(texts, seq_length, backend=None, plan=None, stride=None, long="window", pool=None, **limits):
    rows, info = text_rows(FakePreprocessor(), seq_length, texts, long=long, stride=stride)
    packing = Packing(SPECIAL, seq_length, limits.get("batch_size", 4), limits.get("max_tokens"))
    out = list(text_tokens(backend or FakeBackend(), rows, info.truncated, plan or _plan(), packing, pool=pool))
    return out, rows, info


def _text(n, base=1000):
    return " ".join(str(base + i) for i in range(n))


def test_text_rows_counts_tokens_windows_truncation_and_empties():
    pre = FakePreprocessor()
    rows, info = text_rows(pre, 8, [_text(3), "", _text(20)], long="window", stride=None)
    assert info.n_tokens.tolist() == [3, 0, 20]
    assert info.empty.tolist() == [False, True, False]
    assert info.n_windows[0] == 1 and info.n_windows[1] == 1 and info.n_windows[2] > 1
    assert info.truncated.tolist() == [0, 0, 0]
    assert sum(r.text == 2 for r in rows) == info.n_windows[2]
    assert pre.calls == [[_text(3), "", _text(20)]]  # one call for the whole list

    rows, info = text_rows(pre, 8, [_text(3), _text(20)], long="truncate", stride=None)
    assert info.truncated.tolist() == [0, 14] and info.n_windows.tolist() == [1, 1] and len(rows) == 2


def test_text_rows_of_pairs_and_given_word_ids():
    pre = FakePreprocessor()
    rows, info = text_rows(pre, 8, [(_text(2), _text(3, 2000)), (_text(6), _text(6, 2000))], long="window", stride=0)
    assert info.n_tokens.tolist() == [5, 12]
    assert info.truncated.tolist() == [0, 7]  # 12 tokens, room for 8 - 3 = 5
    assert rows[0].pair.tolist() == [2000, 2001, 2002] and rows[0].ids.tolist() == [1000, 1001]
    assert len(pre.calls) == 2  # the firsts, then the seconds
    given = [np.array([7, 8, 9], np.int32)]
    rows, info = text_rows(pre, 8, ["ignored"], long="window", stride=None, word_ids=given)
    assert rows[0].ids.tolist() == [7, 8, 9] and info.n_tokens.tolist() == [3]


@pytest.mark.parametrize("n,seq_length,stride", [(3, 8, None), (20, 8, None), (20, 8, 1), (37, 10, 5), (6, 8, None)])
def test_each_text_once_with_its_tokens_in_order(n, seq_length, stride):
    texts = [_text(n), _text(2, 3000), _text(n + 7, 5000), ""]
    out, rows, info = _run(texts, seq_length, stride=stride)
    assert sorted(t for t, _ in out) == [0, 1, 2, 3]
    for t, tt in out:
        assert isinstance(tt, TextTokens)
        content = [int(x) for x in texts[t].split()]
        assert tt.ids.tolist() == [CLS] + content + [SEP]
        assert tt.special.tolist() == [True] + [False] * len(content) + [True]
        assert tt.vectors.shape == (2, len(content) + 2, 5)
        np.testing.assert_array_equal(tt.vectors[:, :, ID], np.broadcast_to(tt.ids, (2, len(tt.ids))))
        np.testing.assert_array_equal(tt.vectors[:, 0, LAYER], [0, 2])  # layers 0 and 2, in plan order
        assert tt.n_windows == info.n_windows[t] and tt.truncated == 0


@pytest.mark.parametrize("n,seq_length,stride", [(20, 8, None), (20, 8, 1), (37, 10, 5), (30, 9, 0), (41, 12, 9)])
def test_stitched_tokens_come_from_the_window_where_they_have_most_context(n, seq_length, stride):
    out, rows, _ = _run([_text(n)], seq_length, stride=stride, plan=_plan(attention_layer=1))
    ((_, tt),) = out
    size = seq_length - 2
    starts = sorted(r.start for r in rows)
    assert len(starts) > 1
    for p in range(n):
        v = tt.vectors[0, 1 + p]
        start = p + 1 - int(v[POS])  # position in its row, after [CLS]
        assert start in starts and int(v[LEN]) == size + 2
        ctx = min(p - start, start + size - 1 - p)
        best = max(min(p - s, s + size - 1 - p) for s in starts if s <= p < s + size)
        assert ctx == best
        assert tt.attention[1 + p] == pytest.approx(1 / (size + 2))
    assert tt.vectors[0, 0, POS] == 0  # [CLS] of the first window
    assert tt.vectors[0, -1, POS] == size + 1  # [SEP] of the last window
    # pooled: the mean of the windows' pooled outputs (sum of the row's ids, row length).
    sums = [CLS + SEP + sum(range(1000 + s, 1000 + s + size)) for s in starts]
    np.testing.assert_allclose(tt.pooled[:2], [np.mean(sums), size + 2], rtol=1e-6)
    assert tt.type_ids.tolist() == [0] * (n + 2)


def test_stitched_windows_equal_one_window_when_vectors_ignore_context():
    texts = [_text(45), _text(5, 4000), _text(23, 7000)]
    backend = FakeBackend(positions=False)
    windowed, _, info = _run(texts, 9, backend=backend, batch_size=3)
    whole, _, info1 = _run(texts, 64, backend=FakeBackend(positions=False))
    assert info.n_windows.tolist()[0] > 1 and info1.n_windows.tolist() == [1, 1, 1]
    a, b = dict(windowed), dict(whole)
    for t in range(3):
        np.testing.assert_array_equal(a[t].ids, b[t].ids)
        np.testing.assert_array_equal(a[t].special, b[t].special)
        np.testing.assert_array_equal(a[t].vectors, b[t].vectors)
    assert all(B <= 3 and S <= 9 for B, S in backend.shapes)


def test_truncated_texts_report_it():
    out, _, _ = _run([_text(20), _text(2)], 8, long="truncate")
    got = dict(out)
    assert got[0].truncated == 14 and got[0].ids.tolist() == [CLS] + list(range(1000, 1006)) + [SEP]
    assert got[1].truncated == 0


def test_pairs_keep_their_type_ids():
    out, _, _ = _run([(_text(2), _text(3, 2000))], 16)
    ((_, tt),) = out
    assert tt.ids.tolist() == [CLS, 1000, 1001, SEP, 2000, 2001, 2002, SEP]
    assert tt.type_ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    np.testing.assert_array_equal(tt.vectors[0, :, TYPE], tt.type_ids)


def test_a_very_long_text_is_pooled_window_by_window_as_when_stitched():
    n_windows = pooling_mod.STREAM_WINDOWS + 3
    texts = [_text(3 * n_windows + 3), _text(4, 9000)]  # windows of 6 tokens, stride 3
    plan = _plan(indices=(0, 1), how="mean")
    streamed, _, info = _run(texts, 8, plan=plan, pool=("mean", False))
    assert info.n_windows[0] == n_windows
    got = dict(streamed)
    assert isinstance(got[0], Pooled) and got[0].n_windows == n_windows
    assert isinstance(got[1], TextTokens)  # few windows: stitched as before
    stitched, _, _ = _run(texts, 8, plan=plan)
    whole = dict(stitched)[0]
    assert isinstance(whole, TextTokens)
    expected = pool_text(whole, plan, "mean", False)
    np.testing.assert_allclose(got[0].vector, expected, rtol=1e-5)
    assert pool_text(got[0], plan, "mean", False) is got[0].vector
    # By hand: the mean over the content tokens of (layer 0 + layer 1) / 2: the mean id, layer 0.5.
    assert expected[ID] == pytest.approx(np.mean([int(x) for x in texts[0].split()]))
    assert expected[LAYER] == pytest.approx(0.5)


def _tt(vectors, special, pooled=None, attention=None):
    T = vectors.shape[1]
    return TextTokens(np.arange(T), np.array(special), np.zeros(T, np.int32), vectors, pooled, 1, 0, attention)


def test_pool_text_combines_then_pools():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(2, 4, 3)).astype(np.float32)  # 2 layers, [CLS] a b [SEP]
    special = [True, False, False, True]
    tt = _tt(v, special, pooled=np.array([9.0, 8.0, 7.0], np.float32))
    summed = v[0] + v[1]
    np.testing.assert_allclose(pool_text(tt, _plan(how="sum"), "mean", True), summed.mean(0), rtol=1e-5)
    np.testing.assert_allclose(pool_text(tt, _plan(how="sum"), "mean", False), summed[1:3].mean(0), rtol=1e-5)
    np.testing.assert_allclose(pool_text(tt, _plan(how="mean"), "max", False), ((v[0] + v[1]) / 2)[1:3].max(0))
    np.testing.assert_allclose(pool_text(tt, _plan(how="concat"), "cls", True), np.concatenate([v[0, 0], v[1, 0]]))
    np.testing.assert_array_equal(pool_text(tt, _plan(), "pooled", True), [9, 8, 7])
    apart = pool_text(tt, _plan(how="none"), "mean", False)
    assert apart.shape == (2, 3)
    np.testing.assert_allclose(apart, v[:, 1:3].mean(1), rtol=1e-5)
    weights = np.array([0.0, 3.0, 1.0, 0.0], np.float32)
    att = _tt(v, special, attention=weights)
    np.testing.assert_allclose(
        pool_text(att, _plan(how="sum"), "attention", False), 0.75 * summed[1] + 0.25 * summed[2], rtol=1e-5
    )
