"""One freezing rule (``hubembed.garden.block_group`` + ``is_frozen``): the Model Garden rebuild's ``freeze`` and the
Keras layer's ``freeze`` leave the same variables trainable."""

import pytest

from hubembed import garden
from hubembed.keras import flavour

NAMES = {
    "keras_layer/word_embeddings/embeddings:0": -1,
    "embeddings/layer_norm/gamma:0": -1,
    "bert/embeddings/word_embeddings:0": -1,  # TF1 BERT
    "transformer/layer_2/self_attention/query/kernel:0": 2,
    "bert/encoder/layer_1/output/dense/kernel:0": 1,  # TF1 BERT
    "transformer/self_attention/query/kernel:0": "shared",  # ALBERT
    "pooler_transform/kernel:0": None,
    "mlm/dense/kernel:0": "fixed",
    "something/else:0": None,
}


@pytest.mark.parametrize("name,group", NAMES.items())
def test_block_group_by_name(name: str, group: object) -> None:
    assert garden.block_group(name) == group


def test_an_unused_pooler_never_trains() -> None:
    assert garden.block_group("pooler_transform/bias:0", uses_pooler=False) == "fixed"
    assert garden.is_frozen("fixed", 0, 3)


def test_is_frozen() -> None:
    L = 3
    assert [garden.is_frozen(i, 2, L) for i in range(L)] == [True, True, False]
    assert garden.is_frozen(-1, 1, L) and not garden.is_frozen(-1, 0, L)
    assert garden.is_frozen(-1, 0, L, embeddings=True) and not garden.is_frozen(-1, 2, L, embeddings=False)
    assert not garden.is_frozen(None, L, L)
    assert garden.is_frozen("shared", L, L) and not garden.is_frozen("shared", L - 1, L)


def test_the_rebuild_and_the_keras_layer_freeze_the_same_variables(tiny_models: dict) -> None:
    ns = flavour("legacy")  # tf_keras: the layer's weights are the rebuild's own variables, by their names
    layer = ns.HubFeatureLayer(tiny_models["tf2_dict"], output="pooled", trainable=True, backend="garden")
    rebuild = layer._garden
    for n in (0, 1, 2, 3, 0):
        layer.freeze(n)
        rebuild.freeze(n)
        expected = {v.name for v in rebuild.model.trainable_variables}
        assert {w.name for w in layer.trainable_weights} == expected, n
        assert any("pooler" in name for name in expected)
    assert len(expected) == len(rebuild.model.variables)
