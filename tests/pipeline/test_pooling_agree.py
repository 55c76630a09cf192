"""The three poolings agree on random inputs: numpy (``hubembed._pipeline.pooling``), TensorFlow (``hubembed.keras``:
``masked_pool``, ``received_attention``) and streaming (``hubembed._pipeline.pooling.WindowPool``, for texts with more
than ``STREAM_WINDOWS`` windows) against stitching (``_stitch`` + ``pool_text``).

Every token pooling, special_tokens True/False, padded batches of varying lengths (pairs too) with a text that has
only [CLS]/[SEP], the layer axis kept apart ([B, S, k, H]) where the implementation takes it, attention weights
from random softmax-normalised attention probabilities.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubembed._pipeline import batching, pooling
from hubembed._pipeline.layers import Combine
from hubembed._pipeline.pooling import STREAMABLE, WindowPool
from hubembed._pipeline.run import _stitch, pool_text
from hubembed.keras import masked_pool
from hubembed.keras import received_attention as tf_received_attention

SETTINGS = settings(
    max_examples=20, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
SPECIAL = {"padding_id": 0, "start_of_sequence_id": 101, "end_of_segment_id": 102}
# Every pooling of POOLINGS but "pooled" (the model's pooled_output, handled by the callers).
TOKEN_POOLINGS = tuple(p for p in pooling.POOLINGS if p != "pooled")
# The poolings that divide by a token count: pool() on a batch once divided along the wrong axis (a [B] count for
# [B, H] sums); see test_numpy_pool_on_a_batch_of_texts.
COUNTED = ("mean", "first_last_avg", "mean_sqrt_len", "mean_max")


def _softmax_attention(rng, mask, heads):
    """Random attention probabilities [B, heads, S, S]: softmax over the unmasked keys (as BERT's)."""
    B, S = mask.shape
    logits = rng.normal(0.0, 2.0, (B, heads, S, S))
    logits = np.where(mask[:, None, None, :].astype(bool), logits, -1e9)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


@st.composite
def padded_batches(draw):
    """(rng, x [B, S, k, H], mask [B, S] int32, special [B, S] bool, probs [B, N, S, S]), packed by the library:
    texts of random lengths (or pairs), one with no content token, rows in random order."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    seq_length = draw(st.integers(4, 10))
    n = draw(st.integers(1, 5))
    H, k, heads = draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    shift = draw(st.sampled_from([-4.0, 0.0, 4.0]))  # all-negative values: a max over zeros would show

    def text(n_max):
        return rng.integers(1000, 2000, rng.integers(0, n_max + 1)).astype(np.int32)

    ids = [np.zeros(0, np.int32)] + [text(seq_length) for _ in range(n)]
    pairs = [np.zeros(0, np.int32)] + [text(seq_length) for _ in range(n)] if draw(st.booleans()) else None
    rows, _, _ = batching.make_rows(ids, seq_length, long="truncate", pairs=pairs)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    _, mask, _, special = batching.pack(rows, SPECIAL, seq_length)
    B, S = mask.shape
    x = (rng.standard_normal((B, S, k, H)) + shift).astype(np.float32)
    pad = ~mask.astype(bool)
    x[pad] = (rng.standard_normal((int(pad.sum()), k, H)) * 10 + 1000).astype(np.float32)  # conspicuous padding
    return rng, x, mask, special, _softmax_attention(rng, mask, heads)


def _inputs_hold(mask, special):
    """The packed batch is what the tests mean: varying lengths, a row with nothing but [CLS]/[SEP]."""
    m, s = mask.astype(bool), special.astype(bool)
    assert (s <= m).all() and s[:, 0].all()
    assert ((m & ~s).sum(1) == 0).any()  # a text with no content token


def _tf_pool(x, mask, special, p, special_tokens, weights):
    """masked_pool as the Keras layer calls it: special= only when the special tokens do not count."""
    out = masked_pool(
        tf.constant(x), tf.constant(mask), p, special=None if special_tokens else tf.constant(special), weights=weights
    )
    return out.numpy()


@pytest.mark.slow
@SETTINGS
@pytest.mark.parametrize("layers_apart", [False, True], ids=["BSH", "BSkH"])
@pytest.mark.parametrize("special_tokens", [True, False])
@pytest.mark.parametrize("p", TOKEN_POOLINGS)
@given(batch=padded_batches())
def test_numpy_pool_matches_tf_masked_pool(p, special_tokens, layers_apart, batch):
    _, x, mask, special, probs = batch
    _inputs_hold(mask, special)
    B, S, k, H = x.shape
    weights_np = pooling.received_attention(probs, mask) if p == "attention" else None
    weights_tf = tf_received_attention(tf.constant(probs), tf.constant(mask)) if p == "attention" else None
    xs = x if layers_apart else x[:, :, 0]
    # numpy, one text at a time (as pool_text calls it), padding kept
    ref = np.stack(
        [
            pooling.pool(
                xs[b : b + 1],
                mask[b : b + 1],
                special[b : b + 1],
                p,
                special_tokens,
                weights=None if weights_np is None else weights_np[b : b + 1],
            )[0]
            for b in range(B)
        ]
    )
    width = 2 * H if p == "mean_max" else H
    assert ref.shape == ((B, k, width) if layers_apart else (B, width))
    # TensorFlow: masked_pool takes [B, S, D]; the layer axis is pooled layer by layer
    if layers_apart:
        got = np.stack([_tf_pool(x[:, :, j], mask, special, p, special_tokens, weights_tf) for j in range(k)], 1)
    else:
        got = _tf_pool(xs, mask, special, p, special_tokens, weights_tf)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
    # the whole batch at once
    np.testing.assert_allclose(
        pooling.pool(xs, mask, special, p, special_tokens, weights=weights_np), ref, atol=1e-6, rtol=1e-6
    )
    if p != "cls":  # a text with no token left pools to zeros; padding never leaks
        counted = pooling.token_weights(mask, special, special_tokens).sum(1)
        assert (np.abs(ref[counted == 0]) == 0).all()
        assert np.abs(ref).max() < 60  # padding values are ~1000; real ones |x| < 10, |sum / sqrt(n)| < 25


@SETTINGS
@given(batch=padded_batches())
def test_received_attention_numpy_matches_tf(batch):
    _, _, mask, special, probs = batch
    _inputs_hold(mask, special)
    ref = pooling.received_attention(probs, mask)
    got = tf_received_attention(tf.constant(probs), tf.constant(mask)).numpy()
    assert ref.shape == got.shape == mask.shape
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=1e-6)
    # what it means: 0 on padding, and the mean over queries of probabilities over keys sums to 1 per text
    assert (ref[~mask.astype(bool)] == 0).all()
    np.testing.assert_allclose(ref.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("special_tokens", [True, False])
@pytest.mark.parametrize("p", COUNTED)
@pytest.mark.parametrize(
    "B,k,H", [(3, None, 5), (4, None, 4), (3, 2, 4), (2, 2, 4)], ids=["BSH", "BSH-B=H", "BSkH", "BSkH-B=k"]
)
def test_numpy_pool_on_a_batch_of_texts(p, special_tokens, B, k, H):
    rng = np.random.default_rng(0)
    ids = [rng.integers(1000, 2000, n).astype(np.int32) for n in ([0, 6, 2, 4, 1][:B])]
    _, mask, _, special = batching.pack(batching.make_rows(ids, 10)[0], SPECIAL, 10)
    x = rng.standard_normal(mask.shape + ((H,) if k is None else (k, H))).astype(np.float32)
    one_by_one = np.stack(
        [pooling.pool(x[b : b + 1], mask[b : b + 1], special[b : b + 1], p, special_tokens)[0] for b in range(B)]
    )
    if k is None:
        np.testing.assert_allclose(_tf_pool(x, mask, special, p, special_tokens, None), one_by_one, atol=1e-5)
    np.testing.assert_allclose(pooling.pool(x, mask, special, p, special_tokens), one_by_one, atol=1e-5)


# -- streaming ------------------------------------------------------------------------------------------------

COMBINES = {
    "mean-1": ("mean", 1),
    "mean-3": ("mean", 3),
    "none-2": ("none", 2),
    "concat-2": ("concat", 2),
    "scalar_mix-3": ("scalar_mix", 3),
}


def _plan(rng, combine, p):
    """What WindowPool and pool_text read of a LayerPlan (its combine), plus what this test feeds them."""
    how, k = COMBINES[combine]
    weights = rng.normal(size=k) if how == "scalar_mix" else None
    return SimpleNamespace(
        indices=list(range(k)),
        combine=Combine.make(how, k, weights, gamma=1.5),
        need_pooled=p == "pooled",
        attention_layer=k - 1 if p == "attention" else None,
    )


@SETTINGS
@pytest.mark.parametrize("special_tokens", [True, False])
@pytest.mark.parametrize("p", STREAMABLE)
@given(
    seed=st.integers(0, 2**32 - 1),
    seq_length=st.integers(5, 12),
    windows_per_size=st.integers(1, 6),
    stride=st.one_of(st.none(), st.floats(0, 0.99)),
    combine=st.sampled_from(sorted(COMBINES)),
    H=st.integers(1, 4),
)
def test_window_stream_matches_stitched_pooling(
    p, special_tokens, seed, seq_length, windows_per_size, stride, combine, H
):
    """WindowPool over a text's windows (in any order) == pool_text of the same windows stitched by _stitch:
    each window has its own random activations, so only pooling exactly the tokens the stitcher keeps agrees."""
    rng = np.random.default_rng(seed)
    size = seq_length - 2
    n = int(rng.integers(size + 1, size * windows_per_size + 2))
    text = rng.integers(1000, 2000, n).astype(np.int32)
    rows, n_windows, _ = batching.make_rows([text], seq_length, stride=None if stride is None else int(stride * size))
    assert len(rows) == n_windows[0] > 1
    plan = _plan(rng, combine, p)
    k = len(plan.indices)
    stream = WindowPool(plan.combine, p, special_tokens, len(rows))
    parts = []
    for i in rng.permutation(len(rows)):  # batches are length-sorted: windows come in any order
        row = rows[i]
        ids, _, types, special = (a[0] for a in batching.pack([row], SPECIAL, seq_length))
        vec = rng.standard_normal((k, row.length, H)).astype(np.float32)
        pooled = rng.standard_normal(H).astype(np.float32) if plan.need_pooled else None
        received = None
        if plan.attention_layer is not None:
            probs = _softmax_attention(rng, np.ones((1, row.length), np.int32), 2)
            received = pooling.received_attention(probs, np.ones((1, row.length)))[0]
        stream.add(row, vec, pooled, received)
        parts.append((row, ids, special, types, vec, pooled, received))
    got = stream.result()
    tt = _stitch(parts, 0)
    # the reference is the text: [CLS] its tokens [SEP], one vector each
    np.testing.assert_array_equal(tt.ids, np.concatenate([[101], text, [102]]))
    assert tt.vectors.shape == (k, n + 2, H) and tt.special.sum() == 2
    ref = pool_text(tt, plan, p, special_tokens)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=2e-5, rtol=2e-5)


def test_mean_of_a_batch_counts_each_rows_own_tokens():
    """sentence-transformers' pooling fixture: two rows, the second padded; each row divides by its own count."""
    x = np.array([[[1, 2], [5, 6], [0, 0]], [[30, 40], [50, 60], [1000, 1000]]], np.float32)
    mask = np.array([[1, 1, 0], [1, 1, 0]], np.int32)
    special = np.zeros_like(mask)
    np.testing.assert_allclose(pooling.pool(x, mask, special, "mean", True), [[3, 4], [40, 50]])
    np.testing.assert_allclose(pooling.pool(x, mask, special, "max", True), [[5, 6], [50, 60]])
    np.testing.assert_allclose(pooling.pool(x, mask, special, "mean_sqrt_len", True), [[6, 8], [80, 100]] / np.sqrt(2))
    np.testing.assert_allclose(_tf_pool(x, mask, special, "mean", True, None), [[3, 4], [40, 50]])
