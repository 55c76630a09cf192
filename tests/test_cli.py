import json
import subprocess
import sys

import numpy as np
import pytest

import hubembed
from hubembed.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hubembed {hubembed.__version__}"


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "inspect" in capsys.readouterr().out


def test_inspect_tiny_json_is_stable(tiny_models, capsys):
    assert main(["inspect", tiny_models["tf1_hub"], "--json"]) == 0
    first = capsys.readouterr().out
    d = json.loads(first)
    assert d["format"] == "tf1_hub" and d["has_encoder_outputs"] is False
    assert d["signatures"] == ["default", "mlm", "tokenization_info", "tokens"]
    assert list(d) == sorted(d)  # keys sorted: diff-friendly for scripts
    assert main(["inspect", tiny_models["tf1_hub"], "--json"]) == 0
    assert capsys.readouterr().out == first


def test_embed_json_equals_python_api(tiny_models, tiny_encoders, capsys):
    texts = ["hello world", "the cat sat on the mat"]
    assert (
        main(["embed", *texts, "--model", tiny_models["tf2_dict"], "--pooling", "cls", "--layer", "1", "--json"]) == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert d["pooling"] == "cls" and d["layer"] == 1 and d["dim"] == 16
    ref = tiny_encoders["tf2_dict"].embed(texts, pooling="cls", layers=1)
    np.testing.assert_allclose(np.array(d["vectors"]), ref, atol=1e-5)


@pytest.mark.slow
def test_embed_readable_from_stdin(tiny_models):
    r = subprocess.run(
        [sys.executable, "-m", "hubembed", "embed", "--model", tiny_models["tf2_list"]],
        input="hello world\nthe dog\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith(f"# {tiny_models['tf2_list']}: layer -1, mean pooling, dim 16")
    assert len(lines) == 3 and lines[1].startswith("'hello world'")


def test_embed_bad_layer_is_a_clean_error(tiny_models, capsys):
    assert main(["embed", "x", "--model", tiny_models["tf2_dict"], "--layer", "7"]) == 1
    err = capsys.readouterr().err
    assert "layer 7 requested; this encoder has 3 layers (valid: -3..2, a list of those" in err


def test_embed_intermediate_layer_without_encoder_outputs(tiny_models, tiny_encoders, capsys):
    assert main(["embed", "x", "--model", tiny_models["tf2_list"], "--layer", "0", "--backend", "hub"]) == 1
    assert "does not export encoder_outputs" in capsys.readouterr().err
    # backend auto: the Model Garden fallback rebuilds layer 0 (the tiny kinds share their weights).
    assert main(["embed", "x y", "--model", tiny_models["tf2_list"], "--layer", "0", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    ref = tiny_encoders["tf2_dict"].embed(["x y"], layers=0)
    np.testing.assert_allclose(d["vectors"], ref, atol=1e-5)
    assert (
        main(
            [
                "embed",
                "x y",
                "--model",
                tiny_models["tf2_dict"],
                "--layer",
                "embeddings",
                "--pooling",
                "attention",
                "--json",
            ]
        )
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert d["layer"] == "embeddings" and d["pooling"] == "attention"
    ref = tiny_encoders["tf2_dict"].embed(["x y"], layers="embeddings", pooling="attention")
    np.testing.assert_allclose(d["vectors"], ref, atol=1e-5)


def test_public_api_all_is_sorted_and_complete():
    assert hubembed.__all__ == sorted(hubembed.__all__)
    for name in hubembed.__all__:
        assert hasattr(hubembed, name)
    for name in ("load", "inspect", "Encoder", "Signature", "HubEmbedError"):
        assert name in hubembed.__all__


@pytest.mark.slow
def test_export_inspect_and_embed_an_export(tiny_models, tiny_encoders, tmp_path, capsys):
    out = str(tmp_path / "exported")
    assert main(["export", tiny_models["tf2_dict"], out, "--layers", "-2:", "--combine", "mean", "--normalize"]) == 0
    said = capsys.readouterr().out
    assert (
        f"-> {out}: strings [B] -> float32 [B, 16] (layers [1, 2], combine mean, mean pooling, L2-normalised)" in said
    )
    assert main(["inspect", out, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["format"] == "hubembed-export/1" and d["dim"] == 16 and d["spec"]["layers"] == [1, 2]
    assert d["saved_model_signatures"][0]["name"] == "serving_default"
    assert main(["inspect", out]) == 0
    assert "use without hubembed:" in capsys.readouterr().out
    assert main(["embed", "--model", out, "hello world", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    ref = tiny_encoders["tf2_dict"].embed(["hello world"], layers="-2:", normalize=True)
    np.testing.assert_allclose(d["vectors"], ref, atol=1e-5)
    assert main(["embed", "--model", out, "hello world", "--pooling", "cls"]) == 1
    assert "its spec is baked in" in capsys.readouterr().err


def test_export_refusals_are_clean_errors(tiny_models, tmp_path, capsys):
    out = tmp_path / "used"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["export", tiny_models["tf2_dict"], str(out)]) == 1
    assert "exists and is not empty: choose a new folder, or overwrite=True (--overwrite)" in capsys.readouterr().err
    assert main(["export", tiny_models["tf2_dict"], str(tmp_path / "new"), "--layers", "-2:", "--combine", "none"]) == 1
    err = capsys.readouterr().err
    assert "--combine='none' keeps the 2 layers apart" in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()
