"""hubembed._pipeline.backends: Activations, and HubBackend on the tiny Hub-format models (raw vs compiled,
one trace per kept-layer set whatever the shapes)."""

import numpy as np
import pytest

from hubembed._pipeline.backends import Activations, HubBackend
from hubembed._pipeline.layers import Combine
from hubembed._pipeline.spec import LayerPlan


def test_activations_parts_layer_and_stack():
    seq, pooled, emb = np.full((2, 3, 4), 9.0), np.ones((2, 4)), np.full((2, 3, 4), -1.0)
    layers = [np.full((2, 3, 4), float(k)) for k in range(3)]
    a = Activations(seq, pooled, layers, emb, None)
    parts = a.parts()
    assert len(parts) == 5
    assert parts[0] is seq and parts[1] is pooled and parts[2] is layers and parts[3] is emb and parts[4] is None
    assert a.layer("embeddings") is emb and a.layer(1) is layers[1] and a.layer(-1) is layers[2]
    st = a.stack([2, "embeddings", 0])
    assert st.shape == (3, 2, 3, 4)
    assert st[0].max() == st[0].min() == 2 and st[1].max() == -1 and st[2].max() == 0
    assert Activations(*parts).layer(0) is layers[0]


def test_activations_without_layers_give_the_last_layer():
    seq = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    a = Activations(seq)
    assert a.layer(-1) is seq and a.layer(2) is seq
    st = a.stack([-1, -1])
    assert st.shape == (2, 2, 3, 4)
    np.testing.assert_array_equal(st[0], seq)
    np.testing.assert_array_equal(st[1], seq)
    assert a.parts()[1:] == (None, None, None, None)


def _inputs(B, S, seed=0, pad_from=None):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 25, size=(B, S)).astype(np.int32)
    ids[:, 0] = 2  # a [CLS]-like start
    mask = np.ones((B, S), np.int32)
    if pad_from is not None:
        mask[:, pad_from:] = 0
        ids[:, pad_from:] = 0
    return ids, mask, np.zeros((B, S), np.int32)


@pytest.fixture(scope="module")
def backends(tiny_encoders):
    """A fresh HubBackend per kind over the restored model of the session's tiny encoders (own trace counts)."""
    return {k: HubBackend(enc.engine.obj, enc.signature.format) for k, enc in tiny_encoders.items()}


def _np(x):
    return None if x is None else np.asarray(x)


def test_raw_and_compiled_agree(backends):
    hub = backends["tf2_dict"]
    ids, mask, types = _inputs(3, 7, pad_from=5)
    before = hub.eager_calls
    raw = hub.raw(ids, mask, types)
    assert hub.eager_calls == before + 1
    comp = Activations(*hub.compiled()(ids, mask, types))
    assert hub.eager_calls == before + 1  # the compiled function inlines the model: no eager call
    np.testing.assert_allclose(_np(comp.sequence), _np(raw.sequence), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(comp.pooled), _np(raw.pooled), rtol=1e-5, atol=1e-5)
    assert len(raw.layers) == len(comp.layers) == 3
    for r, c in zip(raw.layers, comp.layers):
        np.testing.assert_allclose(_np(c), _np(r), rtol=1e-5, atol=1e-5)
    # The last exported block is the sequence output.
    np.testing.assert_allclose(_np(raw.layers[-1]), _np(raw.sequence), rtol=1e-6, atol=1e-6)


def test_keep_drops_the_other_layers(backends):
    hub = backends["tf2_dict"]
    ids, mask, types = _inputs(2, 5)
    full = hub.raw(ids, mask, types)
    for acts in (hub.raw(ids, mask, types, keep=[-1, 0]), Activations(*hub.compiled(keep=[0, 2])(ids, mask, types))):
        assert acts.layers[1] is None and acts.layers[0] is not None and acts.layers[2] is not None
        np.testing.assert_allclose(_np(acts.layers[0]), _np(full.layers[0]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(_np(acts.layers[2]), _np(full.layers[2]), rtol=1e-5, atol=1e-5)


def test_compiled_is_traced_once_per_keep_set_whatever_the_shapes(backends):
    hub = HubBackend(backends["tf2_dict"].obj, "tf2_dict")
    f = hub.compiled(keep=[2, 0])
    assert hub.compiled(keep=(0, 2, 2)) is f  # the same set of layers: the same function
    assert hub.compiled(keep=[1]) is not f and hub.compiled() is not f
    assert hub.compiled(training=True, keep=[0, 2]) is not f
    for B, S in [(1, 3), (4, 9), (2, 17), (5, 4)]:
        ids, mask, types = _inputs(B, S, seed=B * S)
        out = Activations(*f(ids, mask, types))
        assert np.asarray(out.sequence).shape[:2] == (B, S)
    assert len(f._list_all_concrete_functions()) == 1
    assert len(hub._fns) == 4 and hub.eager_calls == 0


def test_call_uses_the_plan_and_padding_does_not_change_real_tokens(backends):
    hub = backends["tf2_dict"]
    plan = LayerPlan([1, "embeddings"], Combine("none"))
    ids, mask, types = _inputs(2, 6)
    out = hub(ids, mask, types, plan=plan)
    assert out.layers[0] is None and out.layers[2] is None and out.layers[1] is not None
    assert (True, (1,)) not in hub._fns and (False, (1,)) in hub._fns
    # The same rows padded with 3 more positions: the real tokens' vectors do not change (the mask is the mask).
    pids, pmask, ptypes = (np.pad(x, ((0, 0), (0, 3))) for x in (ids, mask, types))
    padded = hub(pids, pmask, ptypes, plan=plan)
    np.testing.assert_allclose(_np(padded.layers[1])[:, :6], _np(out.layers[1]), rtol=1e-4, atol=1e-5)
    # The type ids are the third input: changing them changes the output.
    other = hub(ids, mask, np.ones_like(types), plan=plan)
    assert not np.allclose(_np(other.layers[1]), _np(out.layers[1]))


def test_inside_a_tf_function_the_model_is_inlined(backends):
    import tensorflow as tf

    hub = HubBackend(backends["tf2_dict"].obj, "tf2_dict")
    ids, mask, types = _inputs(2, 4)

    @tf.function
    def f(a, b, c):
        return hub(a, b, c).sequence

    got = f(tf.constant(ids), tf.constant(mask), tf.constant(types))
    assert hub._fns == {} and hub.eager_calls == 0
    np.testing.assert_allclose(got.numpy(), _np(hub.raw(ids, mask, types).sequence), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["tf2_list", "tf1_hub", "tf2_dict_no_layers"])
def test_every_format_gives_the_same_last_layer(backends, kind):
    ids, mask, types = _inputs(3, 6, seed=4, pad_from=4)
    ref = backends["tf2_dict"].raw(ids, mask, types)
    hub = backends[kind]
    raw = hub.raw(ids, mask, types)
    comp = Activations(*hub.compiled()(ids, mask, types))
    assert raw.layers is None and comp.layers is None  # these formats export no encoder_outputs
    for acts in (raw, comp):
        np.testing.assert_allclose(_np(acts.sequence)[:, :4], _np(ref.sequence)[:, :4], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(_np(acts.pooled), _np(ref.pooled), rtol=1e-4, atol=1e-4)
    st = comp.stack([-1, -1])
    assert st.shape == (2, 3, 6, _np(ref.sequence).shape[-1])
