"""The Model Garden fallback: rebuilds equal the Hub models, every layer of list/TF1 encoders, attention,
sub-layers, early exit, attention pooling, freezing, refusals."""

import builtins
import re

import numpy as np
import pytest

import hubembed
from hubembed import _util, garden
from hubembed.errors import FormatError, InputError, MissingDependencyError

TEXTS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog",
    "a",
    "good movie , great film !",
    "the cat sat on the mat with the dog",
    "night",
]
PAIRS = [("the cat", "a dog sat on the mat"), ("good movie", "great")]
SINGLE = TEXTS


@pytest.fixture(scope="module")
def garden_encoders(tiny_models, garden_models):
    """{kind: Encoder with backend='garden'} for every tiny kind, plus their Hub-only twins."""
    out = {}
    for kind, path in {**tiny_models, **garden_models}.items():
        out[kind] = (hubembed.load(path, backend="hub"), hubembed.load(path, backend="garden"))
        out[kind][1].engine._garden = out[kind][0].garden()  # one rebuild per model
    return out


def _masked_max_diff(a, b, mask):
    m = mask.astype(bool)
    return float(np.abs(a[..., m, :] - b[..., m, :]).max()) if a.ndim == 4 else float(np.abs(a[m] - b[m]).max())


ALL_KINDS = ["tf2_dict", "tf2_dict_no_layers", "tf2_list", "tf1_hub", "garden_bert", "garden_albert", "tf1_tanh"]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_rebuild_reproduces_every_hub_output(garden_encoders, kind):
    hub, gar = garden_encoders[kind]
    assert max(gar.garden().config.checked.values()) <= 1e-5
    for texts in (TEXTS, PAIRS):
        a, b = hub.encode(texts), gar.encode(texts)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert _masked_max_diff(a.sequence, b.sequence, a.mask) <= 1e-5
        if a.layers is not None:
            assert _masked_max_diff(a.layers, b.layers, a.mask) <= 1e-5
        if a.pooled is not None:
            assert np.abs(a.pooled - b.pooled).max() <= 1e-5
        assert b.layers.shape[0] == hub.signature.num_layers and b.embeddings.shape == b.sequence.shape


def test_configuration_is_read_off_the_weights(garden_encoders):
    cfg = {k: garden_encoders[k][0].garden().config for k in ALL_KINDS}
    assert {k: c.activation for k, c in cfg.items()} == {
        "tf2_dict": "gelu",
        "tf2_dict_no_layers": "gelu",
        "tf2_list": "gelu",
        "tf1_hub": "gelu",
        "garden_bert": "gelu_tanh",
        "garden_albert": "gelu_tanh",
        "tf1_tanh": "gelu_tanh",
    }
    assert {c.family for k, c in cfg.items() if k != "garden_albert"} == {"bert"}
    albert = cfg["garden_albert"]
    assert (albert.family, albert.embedding_width, albert.hidden_size, albert.num_layers) == ("albert", 8, 16, 3)
    # TF1 kernels are 2-D: the 2 heads were found by the probe, not read off a shape.
    assert cfg["tf1_hub"].num_heads == 2 and garden.head_candidates(
        {"transformer/layer_0/self_attention/query/kernel": np.zeros((16, 16))}, "bert"
    )[:2] == [1, 2]


@pytest.mark.parametrize("kind", ["tf2_list", "tf1_hub", "tf2_dict_no_layers"])
def test_list_style_and_tf1_give_all_their_layers(garden_encoders, tiny_models, kind):
    """The tiny kinds share their weights: layers rebuilt from a list-style or TF1 encoder equal the
    encoder_outputs of the TF2 dict one."""
    ref = garden_encoders["tf2_dict"][0].embed(SINGLE, layers="all", combine="none")
    auto = hubembed.load(tiny_models[kind])  # backend="auto": the fallback only for what the model lacks
    got = auto.embed(SINGLE, layers="all", combine="none")
    assert got.shape == (len(SINGLE), 3, 16)
    assert np.abs(got - ref).max() <= 1e-5
    assert (
        np.abs(
            auto.embed(SINGLE, layers=0, pooling="cls")
            - ref[:, 0] * 0
            - garden_encoders["tf2_dict"][0].embed(SINGLE, layers=0, pooling="cls")
        ).max()
        <= 1e-5
    )


def test_auto_uses_the_hub_model_when_it_can_and_logs_the_fallback_once(tiny_models, caplog):
    enc = hubembed.load(tiny_models["tf2_list"])
    calls = []
    enc.engine.hub = _spy(enc.hub, calls, "hub")
    caplog.set_level("INFO", logger="hubembed")
    enc.embed(SINGLE, layers=-1)
    assert calls == ["hub"] * len(calls) and calls and enc.engine._garden is None
    enc.embed(SINGLE, layers=0)
    enc.embed(SINGLE, layers=1)
    msgs = [r.getMessage() for r in caplog.records if "using the Model Garden rebuild" in r.getMessage()]
    assert len(msgs) == 2 and "layers [0]" in msgs[0] and "layers [1]" in msgs[1]


def _spy(fn, calls, name):
    def wrapped(*a, **k):
        calls.append(name)
        return fn(*a, **k)

    return wrapped


def test_early_exit_runs_only_the_blocks_needed(garden_encoders):
    hub, gar = garden_encoders["tf2_dict"]
    g = gar.garden()
    seen = []
    for i, block in enumerate(g.parts.blocks):
        original = block.call
        block.call = (lambda orig, i: lambda *a, **k: (seen.append(i), orig(*a, **k))[1])(original, i)
    try:
        g._fns.clear()
        a = gar.embed(SINGLE, layers=1)
        assert sorted(set(seen)) == [0, 1]  # traced blocks: block 2 never ran
        seen.clear()
        g._fns.clear()
        e = gar.embed(SINGLE, layers="embeddings")
        assert seen == []
    finally:
        for block in g.parts.blocks:
            del block.call
        g._fns.clear()
    np.testing.assert_allclose(a, hub.embed(SINGLE, layers=1), atol=1e-5)
    plan = gar.plan(hubembed.EmbedSpec(layers=1, pooling="mean"))
    assert (plan.garden, plan.upto) == (True, 1)
    from hubembed._pipeline.spec import layer_plan

    pooled = layer_plan(gar.signature, 1, "mean", None, 1.0, "pooled", backend="garden")
    assert pooled.upto == 2  # the pooler needs the last block
    # Embedding output = LayerNorm(word + position + type), from the Hub weights.
    w = garden.hub_weights(hub.obj)
    out = gar.encode(["hello world"])
    ids = out.token_ids[0]
    x = (
        w["word_embeddings/embeddings"][ids]
        + w["position_embedding/embeddings"][: len(ids)]
        + w["type_embeddings/embeddings"][0]
    )
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-12)
    x = x * w["embeddings/layer_norm/gamma"] + w["embeddings/layer_norm/beta"]
    np.testing.assert_allclose(out.embeddings[0], x, atol=1e-5)
    np.testing.assert_allclose(e[0], x.mean(0), atol=1e-5)


@pytest.mark.parametrize("kind", ["tf2_dict", "garden_albert"])
def test_attention_rows_sum_to_one_and_padded_keys_get_none(garden_encoders, kind):
    _, gar = garden_encoders[kind]
    for texts in (PAIRS, TEXTS):
        out = gar.internals(texts, sublayers=True)
        att, mask = out.attention, out.mask.astype(bool)  # [k, N, heads, S, S]
        assert att.shape == (3, len(texts), 2, mask.shape[1], mask.shape[1])
        sums = att.sum(-1)  # over keys
        for n in range(len(texts)):
            np.testing.assert_allclose(sums[:, n][..., mask[n]], 1.0, atol=1e-5)
            assert np.abs(att[:, n][..., ~mask[n]]).max(initial=0) <= 1e-9  # padded keys
    assert out.type_ids.max() == 0 and gar.internals(PAIRS).type_ids.max() == 1
    assert (att >= 0).all()
    # Sub-layer outputs: shapes, and the block's output rebuilt from them by its own layer norm.
    g = gar.garden()
    assert set(out.sublayers) == set(garden.SUBLAYERS)
    assert out.sublayers["intermediate"].shape[-1] == 32
    block = g.parts.blocks[1]
    again = block._output_layer_norm(out.sublayers["ffn_output"][1] + out.sublayers["attention_normed"][1]).numpy()
    np.testing.assert_allclose(again[mask], out.layers[1][mask], atol=1e-5)
    # The step-by-step path equals Model Garden's own encoder call (training=False).
    res = g.model(
        {"input_word_ids": out.token_ids, "input_mask": out.mask, "input_type_ids": out.type_ids}, training=False
    )
    for i in range(3):
        np.testing.assert_allclose(out.layers[i][mask], res["encoder_outputs"][i].numpy()[mask], atol=1e-5)


def test_attention_pooling_weights_tokens_by_the_attention_they_receive(garden_encoders):
    _, gar = garden_encoders["tf2_dict"]
    inside = gar.internals(SINGLE, layers=[1, 2])
    for layer, special in ((2, True), (1, False), (1, True)):
        got = gar.embed(SINGLE, layers=layer, pooling="attention", special_tokens=special)
        j = inside.layer_indices.index(layer)
        for n in range(len(SINGLE)):
            m = inside.mask[n].astype(bool)
            probs = inside.attention[j, n][:, m][:, :, m]  # [heads, T, T]
            w = probs.mean(axis=0).mean(axis=0)  # received, over heads and queries
            if not special:
                w[[0, -1]] = 0.0
            w = w / w.sum()
            np.testing.assert_allclose(got[n], (inside.layers[j, n][m] * w[:, None]).sum(0), atol=1e-5)
    # attention_layer chooses the block whose attention weights the tokens.
    a = gar.embed(SINGLE, layers=-1, pooling="attention", attention_layer=0)
    b = gar.embed(SINGLE, layers=-1, pooling="attention")
    assert np.abs(a - b).max() > 1e-4
    with pytest.raises(InputError, match="attention_layer is used by pooling='attention' only"):
        gar.embed(SINGLE, attention_layer=0)


def test_attention_pooling_stitches_long_texts(garden_encoders):
    _, gar = garden_encoders["tf2_dict"]
    long = " ".join(["the quick brown fox jumps over the lazy dog"] * 12)
    v, info = gar.embed([long, "short"], pooling="attention", return_info=True)
    assert info.split_rows == [0] and np.isfinite(v).all() and np.abs(v[0]).sum() > 0


def test_freezing_changes_only_the_unfrozen_variables(garden_encoders):
    import tensorflow as tf
    import tf_keras

    _, gar = garden_encoders["garden_bert"]
    g = garden.rebuild(gar.obj, gar.signature, handle="copy")  # a private copy to train
    g.freeze(2)
    names = [v.name for v in g.model.trainable_variables]
    assert names and all("layer_2/" in n or "pooler" in n for n in names)
    before = {v.name: v.numpy().copy() for v in g.model.variables}
    ids = tf.constant([[2, 7, 9, 3]]), tf.ones((1, 4), tf.int32), tf.zeros((1, 4), tf.int32)
    opt = tf_keras.optimizers.SGD(0.5)
    with tf.GradientTape() as tape:
        out = g.model(dict(zip(("input_word_ids", "input_mask", "input_type_ids"), ids)), training=True)
        loss = tf.reduce_sum(out["pooled_output"] ** 2) + tf.reduce_sum(out["sequence_output"] ** 2)
    grads = tape.gradient(loss, g.model.trainable_variables)
    opt.apply_gradients(zip(grads, g.model.trainable_variables))
    changed = {n for n, v in before.items() if not np.array_equal(v, _var(g.model, n))}
    assert changed and changed <= set(names)
    assert any("layer_2/" in n for n in changed)
    g.freeze(0)
    assert len(g.model.trainable_variables) == len(g.model.variables)
    g.freeze(0, embeddings=True)
    assert not any("embeddings" in v.name for v in g.model.trainable_variables)
    with pytest.raises(InputError, match="valid: 0..3"):
        g.freeze(4)
    albert = garden_encoders["garden_albert"][0].garden()
    with pytest.raises(InputError, match="ALBERT shares one block"):
        albert.freeze(1)
    albert.freeze(3)
    assert all("pooler" in v.name for v in albert.model.trainable_variables)
    albert.freeze(0)


def _var(model, name):
    return next(v.numpy() for v in model.variables if v.name == name)


def test_gradual_unfreezing_schedule():
    assert garden.unfreezing_schedule(4, 6) == [4, 3, 2, 1, 0, 0]
    assert garden.unfreezing_schedule(4, 6, every=2, floor=1) == [4, 4, 3, 3, 2, 2]
    assert garden.unfreezing_schedule(6, 3, start_frozen=4) == [4, 3, 2]
    with pytest.raises(InputError, match="floor"):
        garden.unfreezing_schedule(4, 3, floor=5)


def test_a_rebuild_that_disagrees_is_refused_with_the_measured_difference(garden_encoders, monkeypatch):
    hub, _ = garden_encoders["tf2_dict"]
    monkeypatch.setattr(garden, "activation_candidates", lambda ops: ["relu"])
    with pytest.raises(FormatError, match=r"does not reproduce its outputs.*2 heads \+ relu: \d\.\d+e[-+]\d+"):
        garden.rebuild(hub.obj, hub.signature, handle="x")


def test_names_from_every_source_map_to_model_garden():
    assert (
        garden.garden_name("bert/encoder/layer_11/attention/self/query/kernel:0")
        == "transformer/layer_11/self_attention/query/kernel"
    )
    assert (
        garden.garden_name("bert/encoder/layer_3/output/LayerNorm/beta") == "transformer/layer_3/output_layer_norm/beta"
    )
    assert garden.garden_name("bert/embeddings/token_type_embeddings") == "type_embeddings/embeddings"
    assert garden.garden_name("bert/pooler/dense/kernel") == "pooler_transform/kernel"
    assert (
        garden.garden_name("keras_layer/bert_encoder/transformer/layer_0/intermediate/bias:0")
        == "transformer/layer_0/intermediate/bias"
    )
    assert garden.garden_name("transformer/self_attention/key/bias:0") == "transformer/self_attention/key/bias"
    assert garden.garden_name("cls/predictions/output_bias") is None
    assert garden.garden_name("Variable:0") is None


def test_families_it_cannot_rebuild_are_named():
    class Entry:
        architecture, name = "mobilebert", "mobilebert_en_uncased_L-24_H-128_B-512_A-4_F-4_OPT"

    with pytest.raises(FormatError, match="its family is mobilebert. Supported: BERT-style .* and ALBERT"):
        garden.family_of(["transformer/layer_0/self_attention/query/kernel"], Entry())
    with pytest.raises(FormatError, match="family is talking_heads"):
        garden.family_of(["transformer/layer_0/self_attention/pre_softmax_weight"])
    with pytest.raises(FormatError, match=r"albert \(TF1 Hub module\)"):
        garden.family_of(["bert/encoder/transformer/group_0/inner_group_0/attention_1/self/query/kernel"])
    with pytest.raises(FormatError, match="does not recognise this encoder's variables"):
        garden.family_of(["dense/kernel", "dense_1/kernel"])


def test_without_model_garden_the_error_says_what_to_install(monkeypatch, tiny_models):
    enc = hubembed.load(tiny_models["tf2_list"])
    real = builtins.__import__

    def no_official(name, *a, **k):
        if name == "official" or name.startswith("official."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_official)
    with pytest.raises(
        MissingDependencyError,
        match=r"(?s)needs the package 'tf-models-official'.*pip install " + re.escape(_util.garden_install()),
    ):
        garden.require()
    with pytest.raises(MissingDependencyError, match="The Model Garden fallback"):
        enc.embed(["hello"], layers=0)
    assert enc.embed(["hello"]).shape == (1, 16)  # what the Hub model exports still works


def test_internals_truncate_long_texts_and_say_so(garden_encoders, caplog):
    _, gar = garden_encoders["tf2_dict"]
    long = " ".join(["word"] * 200)
    caplog.set_level("WARNING", logger="hubembed")
    out = gar.internals([long, "hi"], layers=-1, attention=False)
    assert out.attention is None and out.layers.shape[0] == 1
    assert out.info.truncated_rows == [0] and out.mask[0].sum() == gar.seq_length
    assert any("truncated" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_heads_of_any_size_are_found_minilm_as_a_tf1_module(minilm, minilm_source, tmp_path):
    """all-MiniLM-L6-v2 has 12 heads of 32: written as a TF1 Hub module its kernels are 2-D
    ([384, 384]), so the head count is not in any shape; the rebuild must still find it."""
    import os

    from safetensors.numpy import load_file

    from hubembed._formats import convert, writers

    _, cfg = convert.read_hf_config(minilm_source)
    weights = convert.map_weights(load_file(os.path.join(minilm_source, "model.safetensors")), cfg)
    out = str(tmp_path / "minilm_tf1")
    vocab = os.path.join(minilm_source, "vocab.txt")
    writers.save_encoder(weights, cfg, out, vocab_file=vocab, do_lower_case=True, style="tf1")
    tf1 = hubembed.load(out, backend="garden")
    assert tf1.garden().config.num_heads == 12 and tf1.garden().config.activation == "gelu"
    a, b = minilm.encode(TEXTS), tf1.encode(TEXTS)
    assert _masked_max_diff(a.layers, b.layers, a.mask) <= 1e-4
