"""Every hubembed.testing builder, loaded and inspected: formats detected, never assumed."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

import hubembed
from hubembed import testing

TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog", "a", "Café 日本語 😀 unbelievable"]


@pytest.mark.parametrize(
    "kind,fmt,has_layers",
    [
        ("tf2_dict", "tf2_dict", True),
        ("tf2_dict_no_layers", "tf2_dict", False),
        ("tf2_list", "tf2_list", False),
        ("tf1_hub", "tf1_hub", False),
    ],
)
def test_inspect_each_builder(tiny_encoders, kind, fmt, has_layers):
    sig = tiny_encoders[kind].signature
    assert sig.format == fmt
    assert sig.has_encoder_outputs is has_layers
    assert sig.num_layers == 3
    assert sig.layers_from == ("encoder_outputs" if has_layers else "variable names")
    assert sig.hidden_size == 16
    assert sig.vocab_size == 129
    assert sig.casing == "uncased"
    assert sig.max_positions == 64
    assert sig.has_pooled_output and sig.has_sequence_output
    assert sig.has_mlm is (kind != "tf2_list")
    names = [o["name"] for o in sig.outputs]
    if has_layers:
        assert [n for n in names if n.startswith("encoder_outputs")] == [f"encoder_outputs[{i}]" for i in range(3)]
        assert "layers=0..2" in sig.extraction["layers"]
    else:
        assert not any(n.startswith("encoder_outputs") for n in names)
        assert "not exported" in sig.extraction["layers"] and "Model Garden fallback" in sig.extraction["layers"]
    if fmt == "tf1_hub":
        assert sig.signatures == ["default", "mlm", "tokenization_info", "tokens"]
        assert [i["name"] for i in sig.inputs] == ["input_ids", "input_mask", "segment_ids"]
    else:
        assert sig.signatures == ["serving_default"]
    if fmt == "tf2_list":
        assert [i["name"] for i in sig.inputs] == ["input_word_ids", "input_mask", "segment_ids"]
        assert names == ["pooled_output", "sequence_output"]
    if fmt == "tf2_dict":
        assert [i["name"] for i in sig.inputs] == ["input_mask", "input_type_ids", "input_word_ids"]
        assert [i["dtype"] for i in sig.inputs] == ["int32"] * 3
    # read from structured outputs, not the mangled serving signature
    assert "sequence_output" in names
    d = sig.to_dict()
    assert d["format"] == fmt and d["preprocessor"]["vocab_size"] == 129


def test_tf2_outputs_are_read_from_structured_outputs_not_serving(tiny_encoders):
    obj = tiny_encoders["tf2_dict"].obj
    serving_keys = set(obj.signatures["serving_default"].structured_outputs)
    assert "encoder_outputs_0" in serving_keys and "encoder_outputs" not in serving_keys
    sig = tiny_encoders["tf2_dict"].signature
    assert "encoder_outputs[0]" in [o["name"] for o in sig.outputs]


def test_all_formats_give_the_same_last_layer(tiny_encoders):
    ref = None
    for kind, enc in tiny_encoders.items():
        out = enc.encode(TEXTS)
        if ref is None:
            ref = out
        np.testing.assert_allclose(out.sequence * out.mask[..., None], ref.sequence * ref.mask[..., None], atol=2e-5)
        np.testing.assert_allclose(out.pooled, ref.pooled, atol=2e-5)
        np.testing.assert_array_equal(out.token_ids, ref.token_ids)


def test_encoder_outputs_last_equals_sequence_output(tiny_encoders):
    out = tiny_encoders["tf2_dict"].encode(TEXTS)
    assert out.layers.shape[:2] == (3, len(TEXTS))
    np.testing.assert_array_equal(out.layers[-1], out.sequence)
    assert not np.allclose(out.layers[0], out.layers[-1])


def test_mlm_subobject_gives_logits_over_the_vocabulary(tiny_models):
    obj = hub.load(tiny_models["tf2_dict"])
    inputs = {
        "input_word_ids": tf.constant([[2, 30, 31, 3]]),
        "input_mask": tf.ones([1, 4], tf.int32),
        "input_type_ids": tf.zeros([1, 4], tf.int32),
        "masked_lm_positions": tf.constant([[1, 2]]),
    }
    out = obj.mlm(inputs, training=False)
    assert out["mlm_logits"].shape == (1, 2, 129)
    tf1 = hub.load(tiny_models["tf1_hub"])
    logits = tf1.signatures["mlm"](
        input_ids=inputs["input_word_ids"],
        input_mask=inputs["input_mask"],
        segment_ids=inputs["input_type_ids"],
        mlm_positions=inputs["masked_lm_positions"],
    )
    np.testing.assert_allclose(logits["mlm_logits"].numpy(), out["mlm_logits"].numpy(), atol=1e-4)


@pytest.mark.slow
def test_pairing_conversion_folder_vs_encoder_vocab(tiny_models, tiny_encoders):
    folder = os.path.dirname(tiny_models["tf2_dict"])
    by_folder = hubembed.load(folder)
    by_vocab = tiny_encoders["tf2_dict"]
    assert by_folder.preprocessor.paired_by == "conversion folder"
    assert by_vocab.preprocessor.paired_by == "encoder vocab_file"
    texts = TEXTS + ["UPPER case Words, and punctuation!?", "emb embedding embeddings"]
    assert by_folder.preprocessor.token_ids(texts) == by_vocab.preprocessor.token_ids(texts)
    assert by_folder.preprocessor.seq_length == 32  # the saved preprocessor's default
    assert by_vocab.preprocessor.seq_length == 128


def test_caller_named_preprocessor_wins(tiny_models):
    pre = os.path.join(os.path.dirname(tiny_models["tf2_list"]), "preprocess")
    enc = hubembed.load(tiny_models["tf2_dict"], preprocess=pre)
    assert enc.preprocessor.paired_by == "caller" and enc.preprocessor.source == pre


def test_tf1_vocab_found_under_assets(tiny_models, tiny_encoders):
    sig = tiny_encoders["tf1_hub"].signature
    assert sig.vocab_file == os.path.join(tiny_models["tf1_hub"], "assets", "vocab.txt")


def test_seq_length_limits(tiny_models):
    enc = hubembed.load(tiny_models["tf2_dict"], seq_length=8)
    text = "the quick brown fox jumps over the lazy dog"
    out = enc.encode([text], long="truncate")
    assert out.token_ids.shape == (1, 8) and out.info.truncated_rows == [0]
    assert out.token_ids[0, 0] == 2 and out.token_ids[0, -1] == 3  # [CLS] ... [SEP]
    stitched = enc.encode([text])  # default: windows of 6 tokens, stitched back to all 9 + 2
    assert stitched.token_ids.shape == (1, 11) and stitched.info.split_rows == [0]
    with pytest.raises(hubembed.InputError, match="valid: 3..64"):
        hubembed.load(tiny_models["tf2_dict"], seq_length=65)


def test_builder_weights_are_deterministic_per_seed():
    from hubembed._formats import names

    cfg = testing.tiny_config(129)
    a, b, c = (names.random_weights(cfg, seed=s) for s in (0, 0, 1))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.allclose(a["word_embeddings/embeddings"], c["word_embeddings/embeddings"])


def test_hubembed_inspect_matches_loaded_signature(tiny_models, tiny_encoders):
    sig = hubembed.inspect(tiny_models["tf2_list"])
    assert sig.to_dict() == tiny_encoders["tf2_list"].signature.to_dict()
