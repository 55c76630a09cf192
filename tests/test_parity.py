"""Extraction on minilm equals the PyTorch reference (transformers + sentence-transformers), every layer."""

import csv
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow

TEXTS = [
    "A man is playing a guitar.",
    "Hi",
    "The quick brown fox jumps over the lazy dog, while the café's naïve owner serves crème brûlée.",
    "東京は日本の首都です。 Emoji 😀 and numbers 3.14159",
    " ".join(["A much longer text that goes on and on"] * 9),
    "",
]


@pytest.fixture(scope="module")
def reference(minilm_source):
    """transformers BertModel(output_hidden_states=True) on the texts, one padded batch."""
    import torch
    from transformers import AutoTokenizer, BertModel

    tok = AutoTokenizer.from_pretrained(minilm_source)
    # "eager" attention: the implementation that returns attention probabilities.
    model = BertModel.from_pretrained(minilm_source, attn_implementation="eager").eval()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True, output_attentions=True)
    mask = batch["attention_mask"].numpy().astype(bool)
    return {
        "hidden": [h.numpy() for h in out.hidden_states],
        "pooled": out.pooler_output.numpy(),
        "mask": mask,
        "ids": batch["input_ids"].numpy(),
        "attention": [a.numpy() for a in out.attentions],
    }


def _ref_pool(h, mask, how):
    m = mask[..., None].astype(np.float32)
    if how == "cls":
        return h[:, 0]
    if how == "mean":
        return (h * m).sum(1) / m.sum(1)
    return np.where(m > 0, h, -np.inf).max(1)


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_every_layer_every_pooling_matches_transformers(minilm, reference, pooling):
    for layer in range(6):
        ours = minilm.embed(TEXTS, layers=layer, pooling=pooling, batch_size=4)
        ref = _ref_pool(reference["hidden"][layer + 1], reference["mask"], pooling)  # HF counts embeddings first
        assert np.abs(ours - ref).max() <= 1e-4, (layer, pooling)


def test_pooled_output_matches_transformers(minilm, reference):
    assert np.abs(minilm.embed(TEXTS, pooling="pooled") - reference["pooled"]).max() <= 1e-4


def test_token_vectors_match_transformers(minilm, reference):
    tokens = minilm.embed_tokens(TEXTS, layers=-1)
    for t, te in enumerate(tokens):
        n = len(te.ids)
        np.testing.assert_array_equal(te.ids, reference["ids"][t, 1 : n + 1])
        if n == 0:
            assert TEXTS[t] == "" and te.vectors.shape == (0, 384)
            continue
        assert np.abs(te.vectors - reference["hidden"][-1][t, 1 : n + 1]).max() <= 1e-4
    out = minilm.encode(TEXTS)
    m = reference["mask"]
    for layer in range(6):
        assert np.abs(out.layers[layer][m] - reference["hidden"][layer + 1][m]).max() <= 1e-4


def test_layer_combinations_match_transformers(minilm, reference):
    h, m = reference["hidden"], reference["mask"]
    last4 = np.mean([h[i] for i in range(3, 7)], axis=0)
    assert np.abs(minilm.embed(TEXTS, layers="-4:", combine="mean") - _ref_pool(last4, m, "mean")).max() <= 1e-4
    cat = np.concatenate([_ref_pool(h[1], m, "cls"), _ref_pool(h[6], m, "cls")], axis=1)
    assert np.abs(minilm.embed(TEXTS, layers=[0, -1], combine="concat", pooling="cls") - cat).max() <= 1e-4
    fla = _ref_pool((h[1] + h[6]) / 2, m, "mean")  # SimCSE / BERT-whitening "first-last-avg"
    assert np.abs(minilm.embed(TEXTS, pooling="first_last_avg") - fla).max() <= 1e-4


@pytest.mark.parametrize(
    "mode,ours",
    [
        ("mean", "mean"),
        ("max", "max"),
        ("cls", "cls"),
        ("mean_sqrt_len_tokens", "mean_sqrt_len"),
        ("weightedmean", "weightedmean"),
    ],
)
def test_sentence_transformers_pooling_modes(minilm, minilm_source, mode, ours):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling

    st = SentenceTransformer(minilm_source, device="cpu")
    ref_model = SentenceTransformer(modules=[st[0], Pooling(384, pooling_mode=mode)], device="cpu")
    texts = TEXTS[:-1]
    ref = ref_model.encode(texts, batch_size=3, convert_to_numpy=True)
    assert np.abs(minilm.embed(texts, pooling=ours) - ref).max() <= 1e-4


def test_stsb_test_spearman_is_the_public_figure(minilm):
    """Mean pooling of the last layer, cosine similarity: 82.03 +/- 0.05 (the public MTEB figure)."""
    from conftest import DATA
    from scipy.stats import spearmanr

    with open(os.path.join(DATA, "stsb", "stsb-en-test.csv"), encoding="utf-8") as f:
        rows = list(csv.reader(f))
    a = minilm.embed([r[0] for r in rows], normalize=True)
    b = minilm.embed([r[1] for r in rows], normalize=True)
    score = 100 * spearmanr((a * b).sum(1), [float(r[2]) for r in rows]).correlation
    print(f"STS-B test Spearman x 100: {score:.2f}")
    assert abs(score - 82.03) <= 0.05


def test_batch_size_and_neighbours_do_not_change_results(minilm, stsb_sentences):
    texts = stsb_sentences[:120] + TEXTS
    ref = minilm.embed(texts, batch_size=1)
    assert np.abs(minilm.embed(texts, batch_size=32) - ref).max() <= 1e-5
    assert np.abs(minilm.embed(texts[::-1], batch_size=17, max_tokens=600)[::-1] - ref).max() <= 1e-5


def test_model_garden_rebuild_matches_transformers_embeddings_layers_and_attention(minilm, reference):
    """The fallback's extras against the PyTorch reference: embedding output (HF hidden_states[0]),
    every layer, and the attention probabilities of every layer and head."""
    inside = minilm.internals(TEXTS, layers="all", attention=True)
    m = reference["mask"]
    S = m.shape[1]
    assert inside.mask.shape[1] == S
    np.testing.assert_array_equal(inside.token_ids[m], reference["ids"][m])
    assert np.abs(inside.embeddings[m] - reference["hidden"][0][m]).max() <= 1e-4
    for layer in range(6):
        assert np.abs(inside.layers[layer][m] - reference["hidden"][layer + 1][m]).max() <= 1e-4
        for n in range(len(TEXTS)):
            ours = inside.attention[layer, n][:, m[n]][:, :, m[n]]
            ref = reference["attention"][layer][n][:, m[n]][:, :, m[n]]
            assert np.abs(ours - ref).max() <= 1e-5, (layer, n)


def test_model_garden_rebuild_equals_the_hub_model_on_stsb(minilm, stsb_sentences):
    import hubembed

    gar = hubembed.load("minilm", backend="garden")
    gar.engine._garden = minilm.garden()
    texts = stsb_sentences[:300]
    a, b = minilm.encode(texts, batch_size=64), gar.encode(texts, batch_size=64)
    m = a.mask.astype(bool)
    assert np.abs(a.layers[:, m] - b.layers[:, m]).max() <= 1e-5
    assert np.abs(a.pooled - b.pooled).max() <= 1e-5
    assert max(minilm.garden().config.checked.values()) <= 1e-5
    # Early exit: layer 2 from 3 blocks equals the Hub model's encoder_outputs[2].
    assert np.abs(gar.embed(texts, layers=2) - minilm.embed(texts, layers=2)).max() <= 1e-5
