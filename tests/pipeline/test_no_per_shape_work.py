"""No per-shape work: a first pass over new texts costs what a second pass costs (issue 13).

Called eagerly, a restored SavedModel function is instantiated again for every new [batch, length] shape.
These tests count, instead of timing: across dozens of new shapes, every backend's function is traced once,
the restored model is never called eagerly, and Keras' predict function stops retracing.
"""

import random

import numpy as np
import pytest
import tensorflow as tf

import hubembed
from hubembed import keras as hk
from hubembed._pipeline.backends import HubBackend

WORDS = "the quick brown fox jumps over a lazy dog while cats sat on mats and good films were made".split()


def texts_of_many_lengths(n=120, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60))) for _ in range(n)]


def _calls(enc, texts):
    """Every extraction entry point, with batchings that give many [batch, length] shapes."""
    for kw in (dict(), dict(batch_size=3, max_tokens=None), dict(batch_size=7, max_tokens=None), dict(max_tokens=97)):
        enc.embed(texts, **kw)
    enc.embed([(a, b) for a, b in zip(texts[::2], texts[1::2])], batch_size=5)
    enc.encode(texts[:40], batch_size=6, max_tokens=None)
    enc.features(texts[:50], layers=-1, batch_size=4, max_tokens=None)
    if enc.signature.vocab_file:
        enc.embed_tokens(texts[:30], batch_size=9, max_tokens=None)
        enc.embed_words(texts[:30], batch_size=11, max_tokens=None)


def _shapes(texts, enc, batch_size):
    from hubembed._pipeline import batching

    rows, _, _ = batching.make_rows(enc.preprocessor.token_ids(texts), enc.seq_length)
    batches = batching.plan(rows, batch_size=batch_size, max_tokens=None, seq_length=enc.seq_length)
    return {(len(i), max(rows[j].length for j in i)) for i in batches}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tf2_dict", "tf2_dict_no_layers", "tf2_list", "tf1_hub"])
def test_hub_backend_traces_once_and_never_calls_the_restored_model_eagerly(tiny_models, kind):
    enc = hubembed.load(tiny_models[kind], backend="hub") if kind == "tf2_dict" else hubembed.load(tiny_models[kind])
    texts = texts_of_many_lengths()
    assert len(_shapes(texts, enc, 3) | _shapes(texts, enc, 7)) > 30  # dozens of new shapes below
    _calls(enc, texts)
    traced = _traces(enc.hub)
    assert traced and set(traced.values()) == {1}  # one trace per layer selection, whatever the shapes
    _calls(enc, texts_of_many_lengths(seed=1))
    assert _traces(enc.hub) == traced
    assert all(len(f._list_all_concrete_functions()) == 1 for f in enc.hub._fns.values())
    assert enc.hub.eager_calls == 0


def _traces(backend):
    """{(training, layers kept): how often that compiled call was traced}."""
    return {k: f.experimental_get_tracing_count() for k, f in backend._fns.items()}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["garden_bert", "garden_albert"])
def test_model_garden_exports_and_the_rebuild_trace_once_per_plan(garden_models, kind):
    """Real Model Garden exports (export_tfhub_lib) through the Hub backend, and the Model Garden rebuild
    (backend='garden': one function per (upto, attention) plan, each traced once)."""
    enc = hubembed.load(garden_models[kind])
    texts = texts_of_many_lengths(seed=2)
    _calls(enc, texts)
    _calls(enc, texts_of_many_lengths(seed=9))
    assert set(_traces(enc.hub).values()) == {1} and enc.hub.eager_calls == 0

    g = hubembed.load(garden_models[kind], backend="garden")
    g.embed(texts[:3], layers=-1)
    g.embed(texts[:3], layers=0)
    before = {k: f.experimental_get_tracing_count() for k, f in g.garden()._fns.items()}
    assert before and set(before.values()) == {1}
    for seed in (3, 4):
        more = texts_of_many_lengths(seed=seed)
        g.embed(more, layers=-1, batch_size=3, max_tokens=None)
        g.embed(more, layers=0, max_tokens=131)
    after = {k: f.experimental_get_tracing_count() for k, f in g.garden()._fns.items()}
    assert after == before


def test_the_eager_call_counter_counts(tiny_encoders):
    """The counter the tests above rely on does see an eager call of the restored model."""
    enc = tiny_encoders["tf2_dict"]
    backend = HubBackend(enc.obj, "tf2_dict")
    ids = np.full((2, 5), 5, np.int32)
    backend.raw(ids, np.ones_like(ids), np.zeros_like(ids))
    backend(ids, np.ones_like(ids), np.zeros_like(ids))
    assert backend.eager_calls == 1


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["keras3", "legacy"])
def test_keras_predict_stops_retracing_over_new_batch_sizes_and_lengths(flavour, tiny_models):
    ns = hk.flavour(flavour)
    K = ns.keras
    model = K.Sequential(
        [K.Input(shape=(), dtype="string"), ns.HubFeatureLayer(tiny_models["tf2_dict"]), K.layers.Dense(2)]
    )
    texts = texts_of_many_lengths(150, seed=5)
    for bs in (7, 16):
        model.predict(tf.constant(np.array(texts, dtype=object)), batch_size=bs, verbose=0)
    settled = model.predict_function.experimental_get_tracing_count()
    assert settled <= 2
    for bs, seed in ((5, 6), (33, 7), (50, 8), (3, 9)):
        more = texts_of_many_lengths(101, seed=seed)
        model.predict(tf.constant(np.array(more, dtype=object)), batch_size=bs, verbose=0)
    assert model.predict_function.experimental_get_tracing_count() == settled


def test_the_compiled_call_returns_only_the_layers_kept(tiny_encoders):
    """What the pipeline does not use is not returned (so TensorFlow can free it while the next block runs);
    what it does use equals the full call's."""
    enc = tiny_encoders["tf2_dict"]
    ids = np.full((3, 7), 5, np.int32)
    full = enc.hub(ids, np.ones_like(ids), np.zeros_like(ids))
    some = enc.hub(ids, np.ones_like(ids), np.zeros_like(ids), plan=enc.plan(hubembed.EmbedSpec(layers=[0, -1])))
    assert [x is None for x in some.layers] == [False, True, False]
    for i in (0, 2):
        np.testing.assert_array_equal(some.layers[i].numpy(), full.layers[i].numpy())
    np.testing.assert_array_equal(some.sequence.numpy(), full.sequence.numpy())
