"""hubembed.analysis and hubembed.plots: features in one pass, probes, anisotropy and whitening, layer views."""

import logging
import os

import numpy as np
import pytest

import hubembed
from hubembed import analysis, plots
from hubembed.errors import InputError

TEXTS = [
    "a good movie",
    "an awful film",
    "the cat sat on the mat",
    "hello world",
    "great acting , good plot",
    "boring and awful",
    "the dog ran",
    "what a lovely day",
]


@pytest.fixture(scope="module")
def tiny(tiny_encoders):
    return tiny_encoders["tf2_dict"]


def test_features_equal_embed_for_every_layer_and_pooling_and_are_cached(tiny, monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="hubembed"):
        f = analysis.features(tiny, TEXTS, poolings=("cls", "mean", "max"))
    assert "features of 8 texts: 4 layers x 3 poolings, one encoder pass (then cached: " in caplog.text
    assert f.layers == ["embeddings", 0, 1, 2] and f.data["mean"].shape == (len(TEXTS), 4, 16)
    for layer in f.layers:
        for p in ("cls", "mean", "max"):
            np.testing.assert_allclose(
                f.get(layer, p), tiny.embed(TEXTS, layers=layer, pooling=p), atol=1e-5, err_msg=f"{layer} {p}"
            )
    np.testing.assert_array_equal(f.get(-1, "mean"), f.get(2, "mean"))
    with pytest.raises(InputError, match="valid per layer: cls, mean, max, mean_max, mean_sqrt_len"):
        tiny.features(TEXTS, poolings=("pooled",))
    calls = []
    monkeypatch.setattr(type(tiny), "features", lambda self, *a, **k: calls.append(1))
    with caplog.at_level(logging.INFO, logger="hubembed"):
        again = analysis.features(tiny, TEXTS, poolings=("cls", "mean", "max"))  # from the disk cache
    assert calls == [] and np.array_equal(again.data["max"], f.data["max"])
    assert "features of 8 texts from the cache" in caplog.text
    with pytest.raises(InputError, match="layer 7 is not in these features"):
        f.get(7, "mean")


def _planted(n=300, seed=0):
    """Layer 0: noise; layer 1: noise + the label along one direction; labels balanced."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    noise = rng.normal(size=(n, 2, 8)).astype(np.float32)
    noise[:, 1, 3] += 3.0 * (2 * y - 1)
    return analysis.Features([0, 1], {"mean": noise, "cls": noise[:, ::-1].copy()}), y


def test_a_probe_finds_the_layer_that_carries_the_label():
    train, y = _planted()
    dev, y_dev = _planted(200, seed=1)
    table = analysis.probe(train, y, dev=(dev, y_dev), folds=4)
    cell = {(r["layer"], r["pooling"]): r for r in table.rows}
    assert cell[(1, "mean")]["cv_mean"] > 0.95 and cell[(1, "mean")]["dev"] > 0.95
    assert cell[(0, "mean")]["cv_mean"] < 0.65 and cell[(0, "cls")]["dev"] > 0.95  # cls holds the layers reversed
    assert table.best()["layer"] in (0, 1) and table.best()["dev"] > 0.95
    assert table.recommendation().startswith("recommended: layer ")
    md = table.to_markdown()
    assert md.splitlines()[2] == "| layer | mean | cls |" and "300 training texts, 200 dev" in md
    with pytest.raises(InputError, match="3 labels for 300 texts"):
        analysis.probe(train, [0, 1, 0])
    with pytest.raises(InputError, match="at least two classes"):
        analysis.probe(train, np.zeros(300))


def test_anisotropy_and_whitening():
    rng = np.random.default_rng(0)
    iso = rng.normal(size=(3000, 16))
    a = analysis.anisotropy(iso)
    assert abs(a["mean_cosine"]) < 0.05 and a["top1_variance"] < 0.12 and a["isotropy"] > 0.5
    cone = iso @ np.diag(np.geomspace(0.1, 5, 16)) + 8.0  # a common offset: the narrow cone of BERT vectors
    b = analysis.anisotropy(cone)
    assert b["mean_cosine"] > 0.9 and b["isotropy"] < 1e-3 and b["top1_variance"] > 0.4
    w = analysis.Whitening.fit(cone)
    z = w(cone)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(z.T), np.eye(16), atol=1e-3)
    assert abs(analysis.anisotropy(z)["mean_cosine"]) < 0.05
    w8 = analysis.Whitening.fit(cone, k=8)
    assert w8(cone).shape == (3000, 8) and w8.out_dim == 8
    c = analysis.Whitening.fit(cone, method="center")
    np.testing.assert_allclose(c(cone), cone - cone.mean(0), atol=1e-4)


def test_a_saved_transform_applies_at_embed_and_extract_time(tiny, tmp_path):
    corpus = TEXTS * 3
    w = analysis.Whitening.fit(tiny.embed(corpus), k=6, about={"fitted on": "TEXTS x 3"})
    path = w.save(str(tmp_path / "w.npz"))
    loaded = analysis.Whitening.load(path)
    np.testing.assert_array_equal(loaded.W, w.W)
    assert loaded.to_dict() == w.to_dict()
    raw = tiny.embed(TEXTS)
    got, info = tiny.embed(TEXTS, transform=path, normalize=True, return_info=True)
    ref = w(raw)
    np.testing.assert_allclose(got, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    assert info.spec["transform"]["k"] == 6 and info.spec["transform"]["sha256"] == w.to_dict()["sha256"]
    (tmp_path / "c.txt").write_text("\n".join(TEXTS) + "\n")
    m = hubembed.extract(str(tmp_path / "c.txt"), str(tmp_path / "o"), encoder=tiny, transform=path, quiet=True)
    assert m["header"]["spec"]["dim"] == 6 and m["header"]["spec"]["transform"]["method"] == "whiten"
    np.testing.assert_allclose(hubembed.open_extraction(str(tmp_path / "o")).vectors(), ref, atol=1e-5)
    with pytest.raises(InputError, match="fitted on vectors of width 16; these are 32 wide"):
        tiny.embed(TEXTS, pooling="mean_max", transform=w)
    with pytest.raises(InputError, match="does not exist"):
        tiny.embed(TEXTS, transform=str(tmp_path / "nope.npz"))


def test_layer_views_and_every_plot(tiny, tmp_path):
    f = analysis.features(tiny, TEXTS, poolings=("cls", "mean"))
    sim = analysis.layer_similarity(f, "cls")
    assert sim.shape == (4, 4)
    np.testing.assert_allclose(np.diag(sim), 1, atol=1e-6)
    np.testing.assert_allclose(sim, sim.T, atol=1e-9)
    ch = analysis.layer_change(f, "mean")
    assert ch["l2"].shape == (3,) and (ch["l2"] > 0).all()
    np.testing.assert_allclose(
        ch["l2"][0], np.linalg.norm(f.get(0, "mean") - f.get("embeddings", "mean"), axis=1).mean(), rtol=1e-5
    )
    xy = analysis.pca2(f.get(-1, "mean"))
    assert xy.shape == (len(TEXTS), 2) and xy[:, 0].var() >= xy[:, 1].var()
    pieces, w = analysis.token_importance(tiny, "a good movie", layer=-1)
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and len(pieces) == len(w)
    assert abs(w.sum() - 1) < 1e-6 and (w >= 0).all()
    train, y = _planted()
    table = analysis.probe(train, y, folds=3)
    made = [
        plots.probe_table(table, str(tmp_path / "probe.png")),
        plots.layer_similarity(sim, f.layers, str(tmp_path / "sim.svg")),
        plots.layer_change(ch, f.layers, str(tmp_path / "change.png")),
        plots.pca(xy, str(tmp_path / "pca.png"), labels=[i % 2 for i in range(len(TEXTS))]),
        plots.token_importance(pieces, w, str(tmp_path / "tokens.png")),
        plots.anisotropy(
            [{"layer": layer, "raw": analysis.anisotropy(f.get(layer, "mean"))} for layer in f.layers],
            str(tmp_path / "aniso.png"),
        ),
    ]
    for p in made:
        head = open(p, "rb").read(8)
        assert head.startswith(b"\x89PNG") if p.endswith(".png") else b"<?xml" in head
        assert os.path.getsize(p) > 2000
    with pytest.raises(InputError, match="valid: .png, .svg"):
        plots.pca(xy, str(tmp_path / "pca.jpg"))


@pytest.mark.slow
def test_the_probe_command(tiny_models, tmp_path, capsys):
    from hubembed.cli import main

    rows = [(t, "pos" if any(w in t for w in ("good", "great", "lovely")) else "neg") for t in TEXTS * 4]
    (tmp_path / "d.tsv").write_text("".join(f"{t}\t{lab}\n" for t, lab in rows))
    plot = str(tmp_path / "p.png")
    assert (
        main(
            [
                "probe",
                "--model",
                tiny_models["tf2_dict"],
                "--data",
                str(tmp_path / "d.tsv"),
                "--text-column",
                "0",
                "--label-column",
                "1",
                "--folds",
                "3",
                "--poolings",
                "mean,max",
                "--plot",
                plot,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| layer | mean | max |" in out and "| embeddings |" in out and "recommended: layer" in out
    assert os.path.getsize(plot) > 2000
    (tmp_path / "t.txt").write_text("no labels here\n")
    assert (
        main(
            [
                "probe",
                "--model",
                tiny_models["tf2_dict"],
                "--data",
                str(tmp_path / "t.txt"),
                "--text-column",
                "0",
                "--label-column",
                "1",
            ]
        )
        == 1
    )
    assert "a probe needs labels" in capsys.readouterr().err
