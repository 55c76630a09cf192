"""hubembed.keras in Keras 3 and tf_keras: outputs equal Encoder.embed/encode, training touches only what is
trainable, models save and reload with the same outputs."""

import os

import numpy as np
import pytest
import tensorflow as tf

import hubembed
from hubembed import keras as hk
from hubembed.errors import InputError

TEXTS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog",
    "a",
    "good movie , great film !",
    "the cat sat on the mat with the dog",
    "night",
]
LABELS = np.array([0, 1, 0, 1, 1, 0])
FLAVOURS = ["keras3", "legacy"]


def strings(texts=TEXTS):
    return tf.constant(np.array(texts, dtype=object))


@pytest.fixture(scope="module")
def path(tiny_models):
    return tiny_models["tf2_dict"]


@pytest.fixture(scope="module")
def enc(tiny_encoders):
    return tiny_encoders["tf2_dict"]


def _models(ns, layer):
    K = ns.keras
    seq = K.Sequential([K.Input(shape=(), dtype="string"), layer, K.layers.Dense(2)])
    return seq


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_outputs_equal_the_encoder_in_sequential_and_functional_models(flavour, path, enc):
    ns = hk.flavour(flavour)
    K = ns.keras
    cases = [
        (dict(), dict()),
        (dict(pooling="cls", layers=1), dict(pooling="cls", layers=1)),
        (dict(pooling="max", layers="-2:", combine="concat"), dict(pooling="max", layers="-2:", combine="concat")),
        (dict(pooling="mean", special_tokens=False, normalize=True), dict(special_tokens=False, normalize=True)),
        (
            dict(pooling="mean_max", layers=[0, 2], combine="weighted", weights=[0.3, 0.7]),
            dict(pooling="mean_max", layers=[0, 2], combine="weighted", weights=[0.3, 0.7]),
        ),
        (dict(pooling="attention", layers=1), dict(pooling="attention", layers=1)),
        (dict(pooling="first_last_avg"), dict(pooling="first_last_avg")),
    ]
    for kw, ekw in cases:
        layer = ns.HubFeatureLayer(path, **kw)
        ref = enc.embed(TEXTS, **ekw)
        np.testing.assert_allclose(layer(strings()).numpy(), ref, atol=1e-5, err_msg=str(kw))
        seq = K.Sequential([K.Input(shape=(), dtype="string"), layer, K.layers.Dense(3)])
        assert seq.predict(strings(), verbose=0).shape == (len(TEXTS), 3)
        inp = K.Input(shape=(1,), dtype="string")  # [B, 1] works too
        fn = K.Model(inp, layer(inp))
        np.testing.assert_allclose(fn.predict(strings()[:, None], verbose=0), ref, atol=1e-5)
    pooled = ns.HubFeatureLayer(path, output="pooled")
    np.testing.assert_allclose(pooled(strings()).numpy(), enc.embed(TEXTS, pooling="pooled"), atol=1e-5)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sequence_and_layers_outputs_with_their_mask(flavour, path, enc):
    ns = hk.flavour(flavour)
    ref = enc.encode(TEXTS)
    x, mask = ns.HubFeatureLayer(path, output="sequence", layers="all", combine="mean", return_mask=True)(strings())
    m = ref.mask.astype(bool)
    np.testing.assert_array_equal(mask.numpy(), ref.mask)
    np.testing.assert_allclose(x.numpy()[m], ref.layers.mean(0)[m], atol=1e-5)
    y = ns.HubFeatureLayer(path, output="layers", layers=[0, 2])(strings()).numpy()  # [B, k, S, H]
    np.testing.assert_allclose(y[:, 0][m], ref.layers[0][m], atol=1e-5)
    np.testing.assert_allclose(y[:, 1][m], ref.layers[2][m], atol=1e-5)
    # The masked pooling layers honour the mask (padding changed: same result).
    mean = ns.MaskedMeanPooling()([x, mask]).numpy()
    np.testing.assert_allclose(mean, enc.embed(TEXTS, layers="all", combine="mean"), atol=1e-5)
    noisy = tf.where(tf.cast(mask, tf.bool)[:, :, None], x, 1e3 * tf.ones_like(x))
    np.testing.assert_allclose(
        ns.MaskedMaxPooling()([noisy, mask]).numpy(),
        enc.embed(TEXTS, layers="all", combine="mean", pooling="max"),
        atol=1e-5,
    )
    att = ns.AttentionPooling(units=8)
    a = att([x, mask]).numpy()
    np.testing.assert_allclose(att([noisy, mask]).numpy(), a, atol=1e-5)
    assert a.shape == (len(TEXTS), 16)


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sentence_pairs(flavour, path, enc):
    ns = hk.flavour(flavour)
    a, b = ["the cat", "good movie"], ["a dog sat on the mat", "great"]
    layer = ns.HubFeatureLayer(path)
    got = layer((strings(a), strings(b))).numpy()
    np.testing.assert_allclose(got, enc.embed(list(zip(a, b))), atol=1e-5)
    np.testing.assert_allclose(layer({"a": strings(a), "b": strings(b)}).numpy(), got, atol=1e-6)


def _fit(ns, layer, epochs=1, callbacks=()):
    K = ns.keras
    inp = K.Input(shape=(), dtype="string")
    model = K.Model(inp, K.layers.Dense(2)(layer(inp)))
    model.compile(optimizer=K.optimizers.Adam(0.01), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {id(v): v.numpy().copy() for v in layer._enc_vars}
    model.fit(strings(), LABELS, epochs=epochs, batch_size=3, verbose=0, callbacks=list(callbacks))
    changed = {_name(v) for v in layer._enc_vars if not np.array_equal(before[id(v)], v.numpy())}
    return model, changed


def _name(v):
    return v.name.split(":")[0].replace("_", "/")


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_training_changes_the_encoder_only_when_trainable_and_only_unfrozen_layers(flavour, path):
    ns = hk.flavour(flavour)
    frozen = ns.HubFeatureLayer(path)
    _, changed = _fit(ns, frozen)
    assert changed == set() and frozen.trainable_weights == []
    full = ns.HubFeatureLayer(path, trainable=True)
    _, changed = _fit(ns, full)
    assert any("layer/0" in n for n in changed) and any("word/embeddings" in n for n in changed)
    assert not any("mlm" in n for n in changed)  # the MLM head is not part of the features
    part = ns.HubFeatureLayer(path, trainable=True, frozen_layers=2)
    _, changed = _fit(ns, part)
    assert changed and all("layer/2" in n for n in changed), changed
    assert len(part.trainable_weights) == 16  # block 2 (the pooler is not: a mean-pooled output does not use it)


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_gradual_unfreezing_thaws_from_the_top(flavour, path):
    ns = hk.flavour(flavour)
    layer = ns.HubFeatureLayer(path, trainable=True)
    cb = ns.GradualUnfreezing(layer, schedule=[3, 2, 1])
    K = ns.keras
    inp = K.Input(shape=(), dtype="string")
    model = K.Model(inp, K.layers.Dense(2)(layer(inp)))
    model.compile(optimizer=K.optimizers.Adam(0.01), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    snap = {id(v): v.numpy().copy() for v in layer._enc_vars}
    model.fit(strings(), LABELS, epochs=1, batch_size=3, verbose=0, callbacks=[cb])
    assert {_name(v) for v in layer._enc_vars if not np.array_equal(snap[id(v)], v.numpy())} == set()
    model.fit(strings(), LABELS, epochs=3, initial_epoch=1, batch_size=3, verbose=0, callbacks=[cb])
    changed = {_name(v) for v in layer._enc_vars if not np.array_equal(snap[id(v)], v.numpy())}
    assert any("layer/2" in n for n in changed) and any("layer/1" in n for n in changed)
    assert not any("layer/0" in n or "embeddings" in n for n in changed)
    assert cb.history == [3, 2, 1] and layer.frozen_layers == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "flavour,fmt",
    [("keras3", "model.keras"), ("legacy", "model.keras"), ("legacy", "model.h5"), ("legacy", "savedmodel")],
)
def test_models_save_and_reload_with_the_same_outputs(flavour, fmt, path, tmp_path, enc):
    ns = hk.flavour(flavour)
    K = ns.keras
    long = " ".join(["the quick brown fox"] * 5)
    texts = TEXTS + [long]
    layer = ns.HubFeatureLayer(path, trainable=True, frozen_layers=1, seq_length=8, layers="-2:", combine="scalar_mix")
    inp = K.Input(shape=(), dtype="string")
    model = K.Model(inp, K.layers.Dense(2)(layer(inp)))
    model.compile(optimizer=K.optimizers.Adam(0.01), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(strings(texts), np.r_[LABELS, 1], epochs=2, batch_size=4, verbose=0)
    ref = model.predict(strings(texts), verbose=0)
    out = str(tmp_path / fmt)
    if fmt == "savedmodel":
        model.save(out, save_format="tf")
    else:
        model.save(out)
    again = K.models.load_model(out)
    np.testing.assert_allclose(again.predict(strings(texts), verbose=0), ref, atol=1e-5)
    cfg = next(lay for lay in again.layers if type(lay).__name__ == "HubFeatureLayer").get_config()
    assert (cfg["handle"], cfg["seq_length"], cfg["frozen_layers"], cfg["trainable"]) == (path, 8, 1, True)
    # The fine-tuned weights were restored, not the Hub model's: a fresh layer gives other features.
    fresh = ns.HubFeatureLayer(path, seq_length=8, layers="-2:", combine="scalar_mix")
    trained = next(lay for lay in again.layers if type(lay).__name__ == "HubFeatureLayer")
    assert np.abs(fresh(strings(texts)).numpy() - trained(strings(texts)).numpy()).max() > 1e-4
    # seq_length=8 is kept: the long text is cut to 8 tokens, as Encoder.embed(long="truncate") does.
    short = hubembed.load(path, seq_length=8)
    np.testing.assert_allclose(
        fresh(strings([long])).numpy(), short.embed([long], layers="-2:", combine="mean", long="truncate"), atol=1e-5
    )


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_scalar_mix(flavour):
    ns = hk.flavour(flavour)
    rng = np.random.default_rng(0)
    layers = [tf.constant(rng.standard_normal((2, 5, 4)), tf.float32) for _ in range(3)]
    mix = ns.ScalarMix(3, initial_weights=[0.0, 1.0, 2.0], initial_gamma=0.5)
    w = np.exp([0.0, 1.0, 2.0])
    w /= w.sum()
    np.testing.assert_allclose(mix(layers).numpy(), 0.5 * sum(w[i] * layers[i].numpy() for i in range(3)), atol=1e-6)
    np.testing.assert_allclose(mix(tf.stack(layers, axis=1)).numpy(), mix(layers).numpy(), atol=1e-6)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(mix(layers) * layers[0])
    grads = tape.gradient(y, [mix.scalars, mix.gamma])
    assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
    normed = ns.ScalarMix(3, layer_norm=True)
    # Without a mask every element counts (Keras 3 passes [None] * 3 for a list input).
    whole = np.mean([(t.numpy() - t.numpy().mean()) / t.numpy().std() for t in layers], axis=0)
    np.testing.assert_allclose(normed(layers).numpy(), whole, atol=1e-4)
    np.testing.assert_allclose(normed(tf.stack(layers, axis=1)).numpy(), whole, atol=1e-4)
    mask = tf.constant([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = normed(layers, mask=mask).numpy()
    m = mask.numpy().astype(bool)
    ref = np.mean([(t.numpy() - t.numpy()[m].mean()) / t.numpy()[m].std() for t in layers], axis=0)
    np.testing.assert_allclose(out[m], ref[m], atol=1e-4)
    assert ns.ScalarMix.from_config(mix.get_config()).initial_weights == [0.0, 1.0, 2.0]


def test_default_names_follow_tf_keras(monkeypatch):
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    assert hk.default_keras() == "keras3"
    assert hk.HubFeatureLayer is hk.flavour("keras3").HubFeatureLayer
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    assert hk.default_keras() == "legacy" and hk.ScalarMix is hk.flavour("legacy").ScalarMix


@pytest.mark.slow
@pytest.mark.parametrize("flavour,policy", [("keras3", "mixed_float16"), ("legacy", "mixed_bfloat16")])
def test_under_a_mixed_policy_the_hub_model_computes_in_float32_and_outputs_follow_the_policy(
    flavour, policy, path, enc, tmp_path
):
    """As hub.KerasLayer: the SavedModel keeps its float32 computation, the layer's outputs are in the policy's
    compute dtype, and the model trains and saves."""
    ns = hk.flavour(flavour)
    K = ns.keras
    ref = enc.embed(TEXTS, pooling="cls")
    K.mixed_precision.set_global_policy(policy)
    try:
        layer = ns.HubFeatureLayer(path, trainable=True, pooling="cls")
        out = layer(strings())
        half = tf.float16 if policy == "mixed_float16" else tf.bfloat16
        assert out.dtype == half and layer._garden is None
        np.testing.assert_array_equal(out.numpy(), tf.cast(tf.constant(ref), half).numpy())  # float32, then cast
        model, changed = _fit(ns, layer)
        assert changed and all(v.dtype == tf.float32 for v in layer.trainable_weights)
        model.save(str(tmp_path / "m.keras"))
        again = K.models.load_model(str(tmp_path / "m.keras"))
        np.testing.assert_allclose(again.predict(strings(), verbose=0), model.predict(strings(), verbose=0), atol=1e-3)
        seq = ns.HubFeatureLayer(path, output="sequence", layers="-2:", combine="scalar_mix")
        assert seq(strings()).dtype == half  # the scalar mix computes in the policy too
    finally:
        K.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_list_style_and_tf1_encoders(flavour, tiny_models, enc):
    ns = hk.flavour(flavour)
    ref = enc.embed(TEXTS, layers=1)
    for kind in ("tf2_list", "tf1_hub"):
        layer = ns.HubFeatureLayer(tiny_models[kind], layers=1)  # the Model Garden fallback gives layer 1
        np.testing.assert_allclose(layer(strings()).numpy(), ref, atol=1e-5)
    tf1 = ns.HubFeatureLayer(tiny_models["tf1_hub"], trainable=True, frozen_layers=2)  # fine-tuned via the rebuild
    _, changed = _fit(ns, tf1)
    assert changed and all("layer/2" in n or "layer_2" in n for n in changed), changed


def test_bad_arguments_are_clear(path):
    ns = hk.flavour("keras3")
    with pytest.raises(InputError, match="output='vector'; valid: embedding, pooled, sequence, layers"):
        ns.HubFeatureLayer(path, output="vector")
    with pytest.raises(InputError, match="pooling='avg'"):
        ns.HubFeatureLayer(path, pooling="avg")
    with pytest.raises(InputError, match="frozen_layers needs trainable=True"):
        ns.HubFeatureLayer(path, frozen_layers=1)
    with pytest.raises(InputError, match="frozen_layers=4; valid: 0..3"):
        ns.HubFeatureLayer(path, trainable=True, frozen_layers=4)
    os.environ.pop("TF_USE_LEGACY_KERAS", None)


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_mixed_precision_through_the_model_garden_rebuild(flavour, path, enc):
    ns = hk.flavour(flavour)
    K = ns.keras
    ref = enc.embed(TEXTS)
    K.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = ns.HubFeatureLayer(path, backend="garden", trainable=True)
        out = layer(strings())
        assert out.dtype == tf.bfloat16 and layer._garden.policy == "mixed_bfloat16"
        assert all(v.dtype == tf.float32 for v in layer.trainable_weights)
        got = tf.cast(out, tf.float32).numpy()
        assert 0 < np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()  # bfloat16: close, not equal
        assert 0 < layer._garden.config.checked["mixed_precision"] <= 0.05
        _, changed = _fit(ns, layer)
        assert changed
    finally:
        K.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_get_config_mirrors_init_and_round_trips_through_json(flavour, path):
    """keras-hub's rule: every __init__ argument comes back by name from get_config, through JSON."""
    import inspect
    import json

    ns = hk.flavour(flavour)
    cls = ns.HubFeatureLayer
    names = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
    for kw in (
        dict(),
        dict(layers="-2:", combine="scalar_mix", weights=[1, 2], gamma=0.5, pooling="max"),
        dict(output="sequence", layers=[0, 2], combine="concat", return_mask=True, seq_length=24),
        dict(pooling="cls", special_tokens=False, normalize=True, trainable=True, frozen_layers=1),
    ):
        layer = cls(path, **kw)
        cfg = layer.get_config()
        assert set(names) <= set(cfg), set(names) - set(cfg)
        assert all(cfg[k] == (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()), (kw, cfg)
        again = cls.from_config(json.loads(json.dumps(cfg)))
        assert again.get_config() == cfg
        assert again.spec == layer.spec
        for a, b in zip(tf.nest.flatten(again(strings()[:2])), tf.nest.flatten(layer(strings()[:2]))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("flavour,backend", [("keras3", "auto"), ("keras3", "garden"), ("legacy", "garden")])
def test_fine_tuning_trains_the_pooler_only_when_the_output_uses_it(flavour, backend, path):
    """No gradient reaches the pooler of a mean-pooled embedding: it is not trained (nor warned about)."""
    import warnings

    ns = hk.flavour(flavour)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, changed = _fit(ns, ns.HubFeatureLayer(path, trainable=True, backend=backend))
    assert changed and not any("pooler" in n for n in changed)
    assert not [w for w in caught if "Gradients do not exist" in str(w.message)]
    _, changed = _fit(ns, ns.HubFeatureLayer(path, trainable=True, backend=backend, output="pooled"))
    assert any("pooler" in n for n in changed)
