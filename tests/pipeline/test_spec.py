"""EmbedSpec: one value for what decides the numbers, its dictionaries, and embedding queries exactly as a stored
corpus was embedded (refusing other weights); an extraction written before EmbedSpec existed opens and resumes."""

import hashlib
import itertools
import json
import os
import shutil

import numpy as np
import pytest

import hubembed
from hubembed import EmbedSpec, InputError, testing
from hubembed.analysis import Whitening

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
PRE_SPEC = os.path.join(HERE, "data", "pre_spec")  # written by hubembed 0.1.0 before EmbedSpec (commit 889a3d7)


def _grid():
    layer_choices = [
        (-1, "mean", None),
        (3, "mean", None),
        ((0, 2, -1), "concat", None),
        ("-2:", "sum", None),
        ("all", "none", None),
        ("embeddings", "mean", None),
        (["embeddings", 0], "weighted", [0.5, 2]),
        ("2:5", "scalar_mix", [1, 2, 3]),
    ]
    poolings = ["mean", "cls", "max", "mean_max", "mean_sqrt_len"]
    longs = (("window", None), ("window", 7), ("truncate", None))
    for (layers, combine, weights), pooling, special, normalize, (long, stride) in itertools.product(
        layer_choices, poolings, (True, False), (True, False), longs
    ):
        yield EmbedSpec(
            layers=layers,
            combine=combine,
            weights=weights,
            gamma=0.5 if weights else 1.0,
            pooling=pooling,
            special_tokens=special,
            normalize=normalize,
            long=long,
            stride=stride,
        )
    yield EmbedSpec(pooling="first_last_avg")
    yield EmbedSpec(pooling="pooled", normalize=True)
    yield EmbedSpec(layers="-4:", pooling="attention", attention_layer=-2)
    yield EmbedSpec(transform="some/whitening.npz", normalize=True)


def test_to_dict_and_back_is_the_same_spec_over_a_grid():
    specs = list(_grid())
    assert len(specs) == 8 * 5 * 2 * 2 * 3 + 4
    for spec in specs:
        d = spec.to_dict()
        assert json.loads(json.dumps(d)) == d  # JSON-able as it is
        again = EmbedSpec.from_dict(json.loads(json.dumps(d)))
        assert again == spec and hash(again) == hash(spec), d
    assert len(set(specs)) == len(specs)  # different specs stay different


def test_a_spec_is_frozen_and_replace_validates_again():
    spec = EmbedSpec(layers=[0, 1], pooling="cls")
    with pytest.raises(Exception):
        spec.pooling = "mean"
    assert spec.layers == (0, 1) and spec.replace(pooling="max").pooling == "max"
    with pytest.raises(InputError, match="pooling='nope'; valid: cls, pooled"):
        spec.replace(pooling="nope")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(pooling="avg"), r"pooling='avg'; valid: cls, pooled, mean"),
        (dict(combine="avg"), r"combine='avg'; valid: none, concat"),
        (dict(weights=[1, 2]), r"weights= only applies to combine='weighted' or 'scalar_mix', not 'mean'"),
        (dict(pooling="first_last_avg", layers=3), r"pooling='first_last_avg' chooses its layers itself"),
        (dict(attention_layer=2), r"attention_layer is used by pooling='attention' only"),
        (dict(long="split"), r"long='split'; valid: window, truncate"),
        (dict(stride=-1), r"stride=-1: the overlap of windows"),
        (dict(normalize="yes"), r"normalize='yes'; valid: True or False"),
    ],
)
def test_invalid_specs_say_what_is_valid_before_any_model_is_loaded(kwargs, message):
    with pytest.raises(InputError, match=message):
        EmbedSpec(**kwargs)


def test_spec_and_its_keywords_are_not_mixed(tiny_encoders):
    enc = tiny_encoders["tf2_dict"]
    spec = EmbedSpec(layers=1, pooling="cls")
    np.testing.assert_array_equal(enc.embed(["a b c"], spec=spec), enc.embed(["a b c"], layers=1, pooling="cls"))
    with pytest.raises(InputError, match=r"either spec= or its arguments, not both \(pooling given"):
        enc.embed(["a"], spec=spec, pooling="max")
    with pytest.raises(InputError, match="not EmbedSpec fields: 'pooling_mode'"):
        EmbedSpec.from_dict({"pooling_mode": "mean"})


@pytest.mark.parametrize(
    "layers,combine,weights,pooling",
    [(-1, "mean", None, "mean"), ("-2:", "concat", None, "cls"), ([0, 2], "scalar_mix", [1, 2], "mean_max")],
)
def test_output_shape_comes_from_the_spec_without_running_the_model(tiny_encoders, layers, combine, weights, pooling):
    enc = tiny_encoders["tf2_dict"]
    spec = EmbedSpec(layers=layers, combine=combine, weights=weights, pooling=pooling)
    calls = enc.hub.eager_calls, {k: f.experimental_get_tracing_count() for k, f in enc.hub._fns.items()}
    shape = enc.output_shape(spec)
    assert (enc.hub.eager_calls, {k: f.experimental_get_tracing_count() for k, f in enc.hub._fns.items()}) == calls
    assert enc.embed(["one text", "two"], spec=spec).shape == (2,) + shape


SPECS = {
    "default": {},
    "cls_concat_normalized": dict(pooling="cls", layers="-2:", combine="concat", normalize=True),
    "mix_mean_max": dict(pooling="mean_max", layers=[0, 2], combine="scalar_mix", weights=[1, 2], gamma=0.5),
    "attention": dict(pooling="attention", layers="-2:"),
    "first_last_avg_truncate": dict(pooling="first_last_avg", long="truncate"),
    "no_specials_stride": dict(pooling="max", special_tokens=False, stride=10),
    "layers_apart": dict(layers="all", combine="none", pooling="mean_sqrt_len"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    with open(os.path.join(PRE_SPEC, "input.txt"), encoding="utf-8") as f:
        texts = [t for t in f.read().splitlines() if t]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(texts + [" ".join(texts)]) + "\n", encoding="utf-8")  # the last one is windowed
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SPECS))
def test_queries_embedded_with_a_stored_spec_equal_the_stored_vectors(
    tiny_models, tiny_encoders, corpus, tmp_path, name
):
    enc = tiny_encoders["tf2_dict"]
    out = str(tmp_path / "out")
    hubembed.extract(corpus, out, encoder=enc, cache=False, quiet=True, shard_size=7, **SPECS[name])
    ex = hubembed.open_extraction(out)
    stored = ex.vectors()
    with open(corpus, encoding="utf-8") as f:
        queries = f.read().splitlines()
    assert isinstance(ex.spec, EmbedSpec)
    np.testing.assert_allclose(enc.embed(queries, spec=ex.spec, max_tokens=None, batch_size=3), stored, atol=1e-5)
    np.testing.assert_allclose(ex.embed(queries[::-1]), stored[::-1], atol=1e-5)  # one call: loads the model
    assert enc.output_shape(ex.spec) == stored.shape[1:]


@pytest.mark.slow
def test_a_stored_spec_refuses_other_weights_another_sequence_length_and_a_missing_transform(
    tiny_encoders, corpus, tmp_path
):
    enc = tiny_encoders["tf2_dict"]
    white = Whitening.fit(enc.embed(["a b", "c d e", "f", "g h i j", "k l"] * 4 + ["m n o p q"]), k=4)
    white_path = white.save(str(tmp_path / "white.npz"))
    out = str(tmp_path / "out")
    hubembed.extract(corpus, out, encoder=enc, cache=False, quiet=True, transform=white_path)
    ex = hubembed.open_extraction(out)
    other = hubembed.load(testing.build("tf2_dict", str(tmp_path / "other"), seed=7))
    with pytest.raises(InputError, match=r"weights fingerprint .* differs from the one .*out was embedded with"):
        other.embed(["a query"], spec=ex.spec.replace(transform=white_path))
    with pytest.raises(InputError, match=r"whose parameters a manifest does not hold: give it back"):
        enc.embed(["a query"], spec=ex.spec)
    wrong = Whitening.fit(enc.embed(["x y", "z", "w v u"] * 5), k=4).save(str(tmp_path / "wrong.npz"))
    with pytest.raises(InputError, match=r"is not the one the extraction applied"):
        ex.embed(["a query"], encoder=enc, transform=wrong)
    with open(corpus, encoding="utf-8") as f:
        queries = f.read().splitlines()
    np.testing.assert_allclose(ex.embed(queries, encoder=enc, transform=white_path), ex.vectors(), atol=1e-5)


def test_a_stored_spec_refuses_another_sequence_length(tiny_models, corpus, tmp_path):
    out = str(tmp_path / "out")
    hubembed.extract(corpus, out, model=tiny_models["tf2_dict"], cache=False, quiet=True, seq_length=24)
    ex = hubembed.open_extraction(out)
    with pytest.raises(InputError, match=r"seq_length 64, but .* was embedded with seq_length 24"):
        hubembed.load(tiny_models["tf2_dict"]).embed(["a query"], spec=ex.spec)
    np.testing.assert_allclose(
        ex.embed(["a query"]), hubembed.load(tiny_models["tf2_dict"], seq_length=24).embed(["a query"]), atol=1e-6
    )


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.slow
def test_an_extraction_written_before_embedspec_opens_and_resumes(tiny_models, tmp_path):
    """tests/data/pre_spec was written by hubembed before EmbedSpec (same tiny weights: testing's seed 0), on
    another machine: its manifest opens, its spec reads back, its vectors equal this machine's within a
    tolerance (float32 results are not bit-identical across CPUs: oneDNN picks kernels by CPU), and a run
    interrupted after its second shard resumes, keeping the two shards it has and writing the third exactly as
    a clean run on this machine writes it."""
    out = tmp_path / "out"
    out.mkdir()
    for f in os.listdir(PRE_SPEC):
        shutil.copy(os.path.join(PRE_SPEC, f), (tmp_path if f == "input.txt" else out) / f)
    inp = str(tmp_path / "input.txt")
    text = (out / "manifest.json").read_text(encoding="utf-8")
    (out / "manifest.json").write_text(
        text.replace("{MODEL}", tiny_models["tf2_dict"]).replace("{INPUT}", inp), encoding="utf-8"
    )
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))

    ex = hubembed.open_extraction(str(out), verify=True)
    assert ex.spec == EmbedSpec(layers=[1, 2], combine="scalar_mix", weights=[1, 2], pooling="mean_max", normalize=True)
    enc = hubembed.load(tiny_models["tf2_dict"])
    texts = [t for t in (tmp_path / "input.txt").read_text(encoding="utf-8").splitlines() if t]
    np.testing.assert_allclose(enc.embed(texts, spec=ex.spec), ex.vectors(), atol=1e-5)

    job = dict(
        model=tiny_models["tf2_dict"],
        layers="-2:",
        combine="scalar_mix",
        weights=[1, 2],
        pooling="mean_max",
        normalize=True,
        shard_size=16,
        cache=False,
        quiet=True,
    )
    clean = tmp_path / "clean"  # the same job, uninterrupted, on this machine
    hubembed.extract(inp, str(clean), **job)
    shards = sorted(f for f in os.listdir(PRE_SPEC) if f.startswith("part-"))
    assert sorted(f for f in os.listdir(clean) if f.startswith("part-")) == shards
    for f in shards:  # the stored fixture against this machine's clean run: equal within a tolerance
        if f.endswith(".npy"):
            np.testing.assert_allclose(np.load(out / f), np.load(clean / f), atol=1e-5, err_msg=f)
        else:
            assert (out / f).read_bytes() == (clean / f).read_bytes(), f

    kept = {f: _sha256(out / f) for f in shards if not f.startswith("part-00002")}
    m["shards"], m["complete"], m["rows"] = m["shards"][:2], False, sum(s["rows"] for s in m["shards"][:2])
    (out / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    for f in ("part-00002.npy", "part-00002.ids.json"):
        os.remove(out / f)
    again = hubembed.extract(inp, str(out), resume=True, **job)
    assert again["complete"] and len(again["shards"]) == 3 and again["summary"]["rows_this_run"] == 7
    assert sorted(f for f in os.listdir(out) if f.startswith("part-")) == shards
    assert {f: _sha256(out / f) for f in kept} == kept  # the old shards are kept as they were
    for f in ("part-00002.npy", "part-00002.ids.json"):  # the resumed shard is this machine's clean run's
        assert _sha256(out / f) == _sha256(clean / f), f
    np.testing.assert_allclose(hubembed.open_extraction(str(out), verify=True).vectors(), ex.vectors(), atol=1e-5)
