"""`hubembed convert` on a Hugging Face checkpoint nobody here wrote the code for (transformers' own)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

import hubembed
from hubembed._formats import convert, writers
from hubembed.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf_mlm(tmp_path_factory):
    """A tiny random BertForMaskedLM saved by transformers (safetensors), cased vocabulary."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    d = tmp_path_factory.mktemp("hf_mlm")
    vocab = writers.write_tiny_vocab(str(d / "vocab.txt"), extra_words=["Hello", "World", "The"])
    n = sum(1 for _ in open(vocab, encoding="utf-8"))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=n,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        hidden_act="gelu",
    )
    model = BertForMaskedLM(cfg)
    with torch.no_grad():  # make layer norms and biases non-trivial
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.eval()
    model.save_pretrained(str(d), safe_serialization=True)
    (d / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    return str(d), model


@pytest.fixture(scope="module")
def converted(hf_mlm, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("conv") / "converted")
    assert main(["convert", hf_mlm[0], out]) == 0
    return out


def test_convert_bert_for_masked_lm_matches_torch(hf_mlm, converted):
    import torch

    src, model = hf_mlm
    out = converted
    assert sorted(os.listdir(out)) == ["encoder", "hubembed.json", "preprocess"]
    manifest = json.load(open(os.path.join(out, "hubembed.json")))
    assert manifest["mlm"] is True and manifest["do_lower_case"] is False
    assert manifest["pooler"] is False  # BertForMaskedLM has no pooler
    assert manifest["config"]["activation"] == "gelu"
    assert convert.verify(out) is None

    enc = hub.load(os.path.join(out, "encoder"))
    assert enc.do_lower_case.numpy() == False  # noqa: E712
    assert os.path.basename(enc.vocab_file.asset_path.numpy().decode()) == "vocab.txt"
    ids = np.array([[2, 10, 11, 12, 3, 0, 0], [2, 20, 21, 22, 23, 24, 3]], np.int32)
    mask = (np.arange(7)[None] < np.array([[5], [7]])).astype(np.int32)
    types = np.zeros_like(ids)
    positions = np.array([[1, 2], [3, 5]], np.int32)
    inputs = {"input_word_ids": tf.constant(ids), "input_mask": tf.constant(mask), "input_type_ids": tf.constant(types)}
    got = enc(inputs, training=False)
    mlm = enc.mlm(dict(inputs, masked_lm_positions=tf.constant(positions)), training=False)
    with torch.no_grad():
        ref = model(
            input_ids=torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask),
            token_type_ids=torch.tensor(types, dtype=torch.long),
            output_hidden_states=True,
        )
    m = mask.astype(bool)
    for i, layer in enumerate(got["encoder_outputs"]):
        assert np.abs(layer.numpy()[m] - ref.hidden_states[i + 1].numpy()[m]).max() <= 1e-4
    logits_ref = ref.logits.numpy()[np.arange(2)[:, None], positions]
    assert np.abs(mlm["mlm_logits"].numpy() - logits_ref).max() <= 1e-3
    assert "pooled_output" not in got and "default" not in got
    sig = hubembed.inspect(out)
    assert not sig.has_pooled_output and sig.extraction["pooled"].startswith("not exported")


def test_convert_bert_model_with_pooler(hf_mlm, tmp_path):
    """A BertModel checkpoint (with pooler, no prefix): pooled_output equals torch's pooler_output."""
    import torch
    from transformers import BertModel

    src, mlm_model = hf_mlm
    d = tmp_path / "bertmodel"
    torch.manual_seed(1)
    model = BertModel(mlm_model.config)
    model.eval()
    model.save_pretrained(str(d), safe_serialization=True)
    for f in ("vocab.txt", "tokenizer_config.json"):
        (d / f).write_bytes(open(os.path.join(src, f), "rb").read())
    out = convert.convert(str(d), str(tmp_path / "c"))
    enc = hubembed.load(out)
    texts = ["Hello World", "the quick brown fox jumps over the lazy dog"]
    got = enc.encode(texts)
    with torch.no_grad():
        ref = model(
            input_ids=torch.tensor(got.token_ids, dtype=torch.long),
            attention_mask=torch.tensor(got.mask),
            output_hidden_states=True,
        )
    assert np.abs(got.pooled - ref.pooler_output.numpy()).max() <= 1e-4
    m = got.mask.astype(bool)
    assert np.abs(got.sequence[m] - ref.last_hidden_state.numpy()[m]).max() <= 1e-4


def test_converted_folder_loads_with_cased_preprocessor(converted):
    enc = hubembed.load(converted)
    assert enc.preprocessor.paired_by == "conversion folder"
    assert enc.signature.casing == "cased"
    assert enc.signature.has_mlm
    ids = enc.preprocessor.token_ids(["Hello World", "hello world"])
    assert ids[0] != ids[1]  # cased: "Hello" and "hello" are different tokens


def test_convert_refuses_to_overwrite(hf_mlm, tmp_path):
    src, _ = hf_mlm
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(hubembed.ConversionError, match="exists and is not empty"):
        convert.convert(src, str(out))
    assert (out / "keep.txt").read_text() == "mine"


def test_casing_inferred_from_vocab_without_tokenizer_config(tmp_path, hf_mlm):
    src, _ = hf_mlm
    assert convert._do_lower_case(str(tmp_path), os.path.join(src, "vocab.txt")) is False
    lower = tmp_path / "vocab.txt"
    lower.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    assert convert._do_lower_case(str(tmp_path), str(lower)) is True


def test_the_trained_window_of_sentence_bert_config_is_recorded_and_used_everywhere(hf_mlm, tmp_path):
    """Issue 29, item 4: a sentence-transformers folder says its window (max_seq_length); convert records it, load
    packs it, inspect shows it once, and the saved preprocess/ pads to it when run alone (hub.KerasLayer)."""
    import shutil

    import tensorflow_text  # noqa: F401  (the saved preprocessor's ops)

    import hubembed

    src = tmp_path / "sbert"
    shutil.copytree(hf_mlm[0], src)
    (src / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": False}))
    out = str(tmp_path / "converted")
    convert.convert(str(src), out)
    manifest = json.load(open(os.path.join(out, "hubembed.json")))
    assert (manifest["seq_length"], manifest["seq_length_from"]) == (24, "sentence_bert_config.json")
    enc = hubembed.load(out)
    assert (enc.seq_length, enc.signature.seq_length_from) == (24, "conversion (sentence_bert_config.json)")
    assert enc.preprocessor.seq_length == 24
    assert enc.signature.to_dict()["preprocessor"]["seq_length_note"].endswith(
        "hubembed packs 24 too (the top-level seq_length)"
    )
    saved = tf.saved_model.load(os.path.join(out, "preprocess"))
    assert saved(tf.constant(["Hello World"]))["input_word_ids"].shape == (1, 24)
    plain = str(tmp_path / "plain")
    convert.convert(hf_mlm[0], plain)  # no sentence_bert_config.json: max positions (40 here)
    assert hubembed.load(plain).seq_length == 40
    assert tf.saved_model.load(os.path.join(plain, "preprocess"))(tf.constant(["x"]))["input_word_ids"].shape[1] == 40
    (src / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 4096}))
    with pytest.raises(hubembed.ConversionError, match=r"max_seq_length=4096; valid: an integer in 3..40"):
        convert.convert(str(src), str(tmp_path / "bad"))


def test_a_conversion_reports_its_three_steps_as_it_goes(hf_mlm, tmp_path, capsys):
    """Item 10 of the new user's list: the first use converted minilm for ~18 s with nothing printed. The embedded
    model's conversion shows a bar over these steps (``_hub.embedded._steps``)."""
    from hubembed._hub import embedded

    done = []
    convert.convert(hf_mlm[0], str(tmp_path / "out"), progress=done.append)
    assert done == ["weights read", "encoder written", "preprocessor written"]
    capsys.readouterr()
    with embedded._steps("converting x (once)") as step:
        for what in done:
            step(what)
    shown = capsys.readouterr().err
    assert "converting x (once)" in shown and "3/3" in shown and "preprocessor written" in shown
