"""What a new user trips over (issue 16): layer specs that mean one thing everywhere and parse on the command line
as its help writes them, out-of-range slices refused, options that cannot apply refused, one text in, one vector
out. CLI tests run the command's main() and check the exit code and the message."""

import json

import numpy as np
import pytest

import hubembed
from hubembed import EmbedSpec, InputError
from hubembed.cli import main


@pytest.fixture(scope="module")
def enc(tiny_encoders):
    return tiny_encoders["tf2_dict"]  # 3 layers, hidden 16


@pytest.mark.parametrize("flag", ["--layer", "--layers"])
@pytest.mark.parametrize("value,layers", [("-2:", [1, 2]), ("-1,-2", [2, 1]), ("0", [0])])
def test_the_cli_takes_layer_specs_that_start_with_a_minus_as_its_help_writes_them(
    tiny_models, enc, capsys, flag, value, layers
):
    assert (
        main(["embed", "a b c", "--model", tiny_models["tf2_dict"], flag, value, "--combine", "concat", "--json"]) == 0
    )
    got = json.loads(capsys.readouterr().out)
    ref = enc.embed(["a b c"], layers=layers, combine="concat")
    assert got["dim"] == 16 * len(layers)
    np.testing.assert_allclose(got["vectors"], ref, atol=1e-5)


@pytest.mark.parametrize("spec", ["1:9", "-10:", ":4", "-4:-1"])
def test_out_of_range_slices_are_refused_with_the_valid_range(enc, spec):
    with pytest.raises(InputError, match=r"out of range for an encoder of 3 layers \(a slice's bounds: -3..3"):
        enc.embed(["x"], layers=spec)


@pytest.mark.slow
def test_out_of_range_slices_on_the_cli_exit_1_with_the_message(tiny_models, capsys):
    assert main(["embed", "x", "--model", tiny_models["tf2_dict"], "--layer", "1:9"]) == 1
    assert "layers='1:9': 9 is out of range for an encoder of 3 layers" in capsys.readouterr().err


def test_in_range_slices_lists_and_comma_strings_mean_the_same_everywhere(enc):
    one = enc.embed(["some text"], layers="-2:", combine="concat")
    for same in ("1:3", "1:", [1, 2], "1,2", ["1:2", -1], (1, "2")):
        np.testing.assert_array_equal(enc.embed(["some text"], layers=same, combine="concat"), one)
    assert enc.plan(EmbedSpec(layers=["embeddings", "all"], combine="none")).indices == ["embeddings", 0, 1, 2]
    assert enc.plan(EmbedSpec(layers="-1,-2,-3", combine="none")).indices == [2, 1, 0]


def test_pooled_with_layers_is_refused_rather_than_ignored(enc):
    with pytest.raises(InputError, match="pooling='pooled' is the model's pooled_output, made from the last layer"):
        enc.embed(["x"], pooling="pooled", layers=1)
    with pytest.raises(InputError, match="layers and combine do not apply"):
        EmbedSpec(pooling="pooled", combine="concat")
    np.testing.assert_array_equal(enc.embed(["x"], pooling="pooled"), enc.encode(["x"]).pooled)


def test_one_string_gives_one_vector(enc):
    v = enc.embed("a single text", pooling="cls")
    assert v.shape == (16,)
    np.testing.assert_array_equal(v, enc.embed(["a single text"], pooling="cls")[0])
    v, info = enc.embed("a single text", return_info=True)
    assert v.shape == (16,) and info.n_tokens.tolist() == [len(enc.preprocessor.token_ids(["a single text"])[0])]
    with pytest.raises(InputError, match="not one string"):
        enc.encode("a single text")


def test_the_cli_reaches_every_spec_option(tiny_models, enc, capsys):
    args = ["embed", "a b c d", "x y", "--model", tiny_models["tf2_dict"], "--json"]
    assert (
        main(
            args
            + [
                "--layers",
                "0,2",
                "--combine",
                "scalar_mix",
                "--weights",
                "1,3",
                "--gamma",
                "0.5",
                "--no-special-tokens",
                "--pooling",
                "max",
                "--long",
                "truncate",
            ]
        )
        == 0
    )
    got = json.loads(capsys.readouterr().out)
    ref = enc.embed(
        ["a b c d", "x y"],
        layers=[0, 2],
        combine="scalar_mix",
        weights=[1, 3],
        gamma=0.5,
        special_tokens=False,
        pooling="max",
        long="truncate",
    )
    np.testing.assert_allclose(got["vectors"], ref, atol=1e-5)
    assert got["spec"]["weights"] == [1.0, 3.0] and got["spec"]["special_tokens"] is False


def test_a_bad_spec_on_the_cli_fails_before_the_model_loads(monkeypatch, capsys):
    def no_load(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(hubembed, "load", no_load)
    assert (
        main(
            [
                "embed",
                "x",
                "--model",
                "does-not-matter",
                "--combine",
                "weighted",
                "--weights",
                "1",
                "--pooling",
                "pooled",
            ]
        )
        == 1
    )
    assert "pooling='pooled'" in capsys.readouterr().err
    assert main(["embed", "x", "--model", "does-not-matter", "--stride", "-3"]) == 1
    assert "stride=-3" in capsys.readouterr().err


def test_a_used_output_folder_is_refused_before_the_model_loads(tiny_models, tmp_path, monkeypatch, capsys):
    src = tmp_path / "c.txt"
    src.write_text("one\ntwo\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["extract", str(src), "-o", str(out), "--model", tiny_models["tf2_dict"], "-q", "--no-cache"]) == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine", encoding="utf-8")

    def no_load(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(hubembed, "load", no_load)
    capsys.readouterr()
    assert main(["extract", str(src), "-o", str(out), "--model", tiny_models["tf2_dict"], "-q"]) == 1
    assert "already holds an extraction (2 rows); resume it with --resume" in capsys.readouterr().err
    assert main(["extract", str(src), "-o", str(tmp_path / "other"), "--model", "x", "-q"]) == 1
    assert "holds other files (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "other" / "notes.txt").read_text(encoding="utf-8") == "mine"


@pytest.mark.slow
def test_log_messages_carry_one_prefix(tiny_models, tmp_path):
    import subprocess
    import sys

    src = tmp_path / "c.txt"
    src.write_text("one\n" + "word " * 200 + "\n", encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "hubembed",
        "extract",
        str(src),
        "-o",
        str(tmp_path / "o"),
        "--model",
        tiny_models["tf2_dict"],
        "-q",
        "--no-cache",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "hubembed: extracted 2 rows" in r.stderr and "hubembed: hubembed:" not in r.stderr


def test_all_means_every_block_everywhere_and_the_embedding_output_is_asked_for_by_name(enc):
    from hubembed import analysis

    texts = ["one text", "and another one", "a third"]
    assert analysis.features(enc, texts, layers="all", cache=False).layers == [0, 1, 2]
    assert analysis.features(enc, texts, cache=False).layers == ["embeddings", 0, 1, 2]
    assert enc.features(texts, layers="all")["mean"].shape == (3, 3, 16)
    assert enc.embed(texts, layers="all", combine="none").shape == (3, 3, 16)


@pytest.mark.slow
def test_the_probe_does_not_mislead_on_1000_sst2_texts(minilm):
    """C chosen per cell by cross-validation: the recommended cell (chosen on the training texts only) scores
    within 1 point of the best dev cell. With the old fixed C=1 it picked layer 3 cls, 7 points below."""
    import csv
    import os

    from hubembed import analysis

    data = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "sst2")

    def read(name, limit=None):
        with open(os.path.join(data, name), encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:limit]
        return [r[0] for r in rows], [r[1] for r in rows]

    (tx, ty), (dx, dy) = read("train.tsv", 1000), read("dev.tsv")
    table = analysis.probe(analysis.features(minilm, tx), ty, dev=(analysis.features(minilm, dx), dy))
    best_dev = max(r["dev"] for r in table.rows)
    chosen = table.best()
    assert chosen["dev"] >= best_dev - 0.01, table.to_markdown()
    assert chosen["C"] in analysis.PROBE_CS and "C=" in table.recommendation()


def test_cli_errors_name_the_options_of_the_command_line(tiny_models, capsys):
    tiny = tiny_models["tf2_dict"]
    assert main(["embed", "x", "--model", tiny, "--layers", "0,1", "--combine", "weighted"]) == 1
    err = capsys.readouterr().err
    assert "--combine='weighted' needs --weights=" in err and " weights=" not in err
    assert main(["embed", "x", "--model", tiny, "--layers", "7"]) == 1
    assert "a list of those (0,4,-1)" in capsys.readouterr().err


def test_every_command_takes_seq_length_and_inspect_shows_the_window_used(tiny_models, capsys):
    tiny = tiny_models["tf2_dict"]
    assert main(["inspect", tiny, "--seq-length", "24"]) == 0
    assert "seq_length:      24 (the window hubembed packs; from given)" in capsys.readouterr().out
    assert main(["inspect", tiny]) == 0
    assert "seq_length:      64 (the window hubembed packs; from max positions)" in capsys.readouterr().out
    assert main(["embed", "x", "--model", tiny, "--seq-length", "2"]) == 1
    assert "--seq-length=2; valid: 3..64" in capsys.readouterr().err


def test_weights_that_do_not_match_the_layers_are_refused_before_the_model_loads(monkeypatch, capsys):
    from hubembed import EmbedSpec
    from hubembed._pipeline import layers as layer_spec

    assert [
        layer_spec.count(s) for s in (3, "embeddings", "-4:", "2:5", "-3:-1", [0, "-2:"], "-1,-2", "all", "2:")
    ] == [
        1,
        1,
        4,
        3,
        2,
        3,
        2,
        None,
        None,
    ]
    with pytest.raises(InputError, match="combine='weighted': 2 weights for 4 selected layers"):
        EmbedSpec(layers="-4:", combine="weighted", weights=[1, 2])
    with pytest.raises(InputError, match=r"combine='scalar_mix' needs weights= \(one per selected layer: 3\)"):
        EmbedSpec(layers=[0, 1, 2], combine="scalar_mix")
    assert EmbedSpec(layers="all", combine="weighted", weights=[1, 2]).weights == (1.0, 2.0)  # checked at plan time

    def no_load(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(hubembed, "load", no_load)
    args = ["embed", "x", "--model", "does-not-matter", "--layers", "-4:", "--combine", "weighted"]
    assert main(args + ["--weights", "1,2"]) == 1
    assert "2 weights for 4 selected layers" in capsys.readouterr().err
    assert main(args) == 1
    assert "needs --weights" in capsys.readouterr().err


def test_encode_gives_the_embedding_output_when_asked(enc, tiny_models):
    texts = ["one text", "and another one"]
    plain = enc.encode(texts)
    assert plain.embeddings is None
    out = enc.encode(texts, embeddings=True)
    ref = hubembed.load(tiny_models["tf2_dict"], backend="garden").encode(texts)
    assert out.embeddings.shape == out.sequence.shape
    np.testing.assert_allclose(out.embeddings, ref.embeddings, atol=1e-6)
    m = out.mask.astype(bool)
    np.testing.assert_allclose(out.layers[:, m], plain.layers[:, m], atol=1e-5)  # the other outputs as before
    pooled = enc.embed(texts, layers="embeddings", pooling="mean")
    mask = out.mask[..., None]
    np.testing.assert_allclose((out.embeddings * mask).sum(1) / mask.sum(1), pooled, atol=1e-5)
    with pytest.raises(InputError, match="embeddings=True: no Hub format exports the embedding output"):
        hubembed.load(tiny_models["tf2_dict"], backend="hub").encode(texts, embeddings=True)


@pytest.mark.slow
def test_the_python_api_keeps_tensorflows_startup_lines_out_unless_asked(tiny_models):
    import os
    import subprocess
    import sys

    code = f"import hubembed; print(hubembed.load({tiny_models['tf2_dict']!r}).embed(['a text']).shape)"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and "(1, 16)" in quiet.stdout, quiet.stderr[-2000:]
    assert not [line for line in quiet.stderr.splitlines() if "cuda" in line.lower() or "oneDNN" in line]
    loud = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"}
    )
    assert loud.returncode == 0 and "oneDNN" in loud.stderr  # the user's own choice is kept


@pytest.mark.slow
def test_loading_several_encoders_logs_no_retracing_warning(tiny_models):
    """One tf.function per model and plan, each traced once: TensorFlow's "retracing" warning (it counts traces
    by shared code) is not shown for them."""
    import subprocess
    import sys

    code = (
        "import hubembed\n"
        f"for p in {[tiny_models[k] for k in ('tf2_dict', 'tf2_dict_no_layers', 'tf2_list', 'tf1_hub')] * 2!r}:\n"
        "    e = hubembed.load(p)\n"
        "    for layers in (-1, 0, 'all'):\n"
        "        e.embed(['a text', 'another longer text'], layers=layers)\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
    assert "retracing" not in r.stderr
