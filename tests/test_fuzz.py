"""Property tests (hypothesis) over embed, embed_words and the layer/pooling specs: random Unicode (surrogates,
combining marks, control characters, RTL text), lengths 0 to 20,000 characters, batches of mixed lengths:
never a crash, the right shapes, finite values, results that do not depend on the batch, word spans that
slice the text."""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubembed.errors import InputError

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Every code point class, surrogates included (Python str allows lone surrogates; UTF-8 does not).
chars = st.characters(exclude_categories=())
special = st.sampled_from(
    [
        "\u0301",
        "\u0308",
        "\u202e",
        "\u202c",
        "\u200f",
        "\u05d0\u05d1",
        "\u0627\u0644",
        "\x00",
        "\x1f",
        "\t",
        "\n",
        "\r",
        "\ud800",
        "\udfff",
        "\ufeff",
        "\u3000",
        "漢字",
        "\U0001f600",
        "naïve",
        " ",
        "##",
        "[CLS]",
        "[SEP]",
        "[UNK]",
    ]
)
pieces = st.one_of(st.text(chars, max_size=40), special, st.sampled_from(["the cat", "good movie", "Hello World"]))
short = st.lists(pieces, max_size=8).map("".join)
long = st.builds(lambda s, n: (s * n)[:20000], st.text(chars, min_size=1, max_size=24), st.integers(1, 2000))
texts = st.lists(st.one_of(short, short, short, long), min_size=1, max_size=5)
SURROGATE = re.compile("[\ud800-\udfff]")


@pytest.fixture(scope="module")
def tiny(tiny_encoders):
    return tiny_encoders["tf2_dict"]


@pytest.mark.slow
@SETTINGS
@given(batch=texts)
def test_embed_never_crashes_and_does_not_depend_on_the_batch(tiny, batch):
    v = tiny.embed(batch)
    assert v.shape == (len(batch), 16) and np.isfinite(v).all()
    for i, t in enumerate(batch):
        np.testing.assert_allclose(v[i], tiny.embed([t])[0], atol=1e-5, err_msg=repr(t[:80]))


@pytest.mark.slow
@SETTINGS
@given(batch=texts)
def test_word_spans_always_slice_the_text(tiny, batch):
    out = tiny.embed_words(batch, subword="mean")
    assert len(out) == len(batch)
    for t, w in zip(batch, out):
        assert w.text == SURROGATE.sub("\ufffd", t)  # one code point for one: offsets hold for the original too
        assert w.vectors.shape == (len(w.words), 16) and np.isfinite(w.vectors).all()
        assert [w.text[s:e] for s, e in w.spans] == w.words
        starts = [s for s, _ in w.spans]
        assert starts == sorted(starts) and all(0 <= s < e <= len(t) for s, e in w.spans)


LAYERS = [-1, 0, 2, "-2:", "all", [0, 2], "embeddings", ["embeddings", -1]]
POOLINGS = ["cls", "mean", "max", "mean_max", "mean_sqrt_len", "attention", "pooled"]


@SETTINGS
@given(
    batch=st.lists(short, min_size=1, max_size=4),
    layers=st.sampled_from(LAYERS),
    combine=st.sampled_from(["mean", "sum", "concat"]),
    pooling=st.sampled_from(POOLINGS),
    special=st.booleans(),
)
def test_every_layer_and_pooling_spec_gives_the_announced_shape(tiny, batch, layers, combine, pooling, special):
    n_layers = len(layers) if isinstance(layers, list) else {"all": 3, "-2:": 2}.get(layers, 1)
    if pooling == "attention" and layers in ("embeddings", ["embeddings", -1]):
        layers = -1  # attention comes from a block; the embedding output has none
        n_layers = 1
    if pooling == "pooled" and (layers != -1 or combine != "mean"):  # pooled_output takes no layer choice
        with pytest.raises(InputError, match="pooling='pooled' is the model's pooled_output"):
            tiny.embed(batch, layers=layers, combine=combine, pooling=pooling, special_tokens=special)
        layers, combine = -1, "mean"
    v = tiny.embed(batch, layers=layers, combine=combine, pooling=pooling, special_tokens=special)
    width = (
        16 if pooling == "pooled" else (32 if pooling == "mean_max" else 16) * (n_layers if combine == "concat" else 1)
    )
    assert v.shape == (len(batch), width) and np.isfinite(v).all()
