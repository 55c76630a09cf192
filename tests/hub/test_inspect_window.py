"""`hubembed inspect` shows one window: the seq_length hubembed packs and where it came from. The preprocessor's
own default (what it pads to when run alone) appears only where it differs, said not to be used."""

import json
import re
from typing import Dict, List

import pytest

import hubembed
from hubembed.cli import main


def _lines(out: str) -> List[str]:
    return [line.strip() for line in out.splitlines()]


def _windows(out: str) -> List[str]:
    """The lines that state a window length (a seq_length and its number) in the readable output."""
    return [line for line in _lines(out) if re.search(r"seq_length(:\s+| is )\d+", line)]


def test_minilm_has_one_window_everywhere(minilm: "hubembed.Encoder", capsys: pytest.CaptureFixture) -> None:
    """Issue 29, item 4: the conversion's saved preprocessor pads to the window hubembed packs (256, the trained
    maximum), so inspect shows one window and plain hub.KerasLayer on preprocess/ truncates alike."""
    assert main(["inspect", "minilm"]) == 0
    out = capsys.readouterr().out
    assert _windows(out) == ["seq_length:      256 (the window hubembed packs; from registry)"]
    assert "preprocessor:    minilm-preprocess (paired by registry; vocab 30522)" in _lines(out)
    assert "hubembed does not use it" not in out
    assert minilm.preprocessor.seq_length == 256


def test_minilm_with_another_window_says_the_preprocessor_default_is_not_used(
    minilm: "hubembed.Encoder", capsys: pytest.CaptureFixture
) -> None:
    assert main(["inspect", "minilm", "--seq-length", "128"]) == 0
    out = capsys.readouterr().out
    assert _windows(out) == [
        "seq_length:      128 (the window hubembed packs; from given)",
        "its own default seq_length is 256 (what it pads to when run alone, as in hub.KerasLayer);",
    ]
    lines = _lines(out)
    pre = lines.index("preprocessor:    minilm-preprocess (paired by registry; vocab 30522)")
    assert lines[pre + 2] == "hubembed does not use it: it packs 128 (seq_length above)"


def test_tiny_models_show_one_window_and_the_built_preprocessor_default(
    tiny_models: Dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    for kind, path in tiny_models.items():
        assert main(["inspect", path]) == 0, kind
        out = capsys.readouterr().out
        assert _windows(out) == [
            "seq_length:      64 (the window hubembed packs; from max positions)",
            "its own default seq_length is 128 (what it pads to when run alone);",  # built in memory: no KerasLayer
        ], kind
        assert "hubembed does not use it: it packs 64 (seq_length above)" in _lines(out), kind
        assert "(paired by encoder vocab_file; vocab 129)" in out, kind


def test_tiny_model_json_keeps_its_keys_sorted_and_explains_the_preprocessor_default(
    tiny_models: Dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    assert main(["inspect", tiny_models["tf2_dict"], "--seq-length", "24", "--json"]) == 0
    text = capsys.readouterr().out
    d = json.loads(text)
    assert (d["seq_length"], d["seq_length_from"]) == (24, "given")
    pre = d["preprocessor"]
    # The keys scripts read stay (adding one is fine, removing is not); the preprocessor's own default is named so.
    assert {"source", "paired_by", "seq_length", "vocab_size", "lower_case", "tokenizer", "special_tokens"} <= set(pre)
    assert pre["seq_length"] == 128
    assert pre["seq_length_note"] == (
        "its own default seq_length is 128 (what it pads to when run alone); "
        "hubembed does not use it: it packs 24 (the top-level seq_length)"
    )
    assert text.strip() == json.dumps(d, indent=2, sort_keys=True)


def test_minilm_json(minilm: "hubembed.Encoder", capsys: pytest.CaptureFixture) -> None:
    assert main(["inspect", "minilm", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["seq_length"], d["seq_length_from"], d["preprocessor"]["seq_length"]) == (256, "registry", 256)
    assert d["preprocessor"]["seq_length_note"].endswith("hubembed packs 256 too (the top-level seq_length)")


def test_signature_without_a_preprocessor_or_window(tiny_encoders: Dict[str, "hubembed.Encoder"]) -> None:
    """A Signature read off the model alone (no load): describe and to_json still work."""
    import dataclasses

    sig = dataclasses.replace(tiny_encoders["tf2_list"].signature, preprocessor=None, seq_length=None)
    assert "seq_length" not in sig.describe() and "preprocessor" not in sig.describe()
    assert json.loads(sig.to_json())["preprocessor"] is None
    sig = dataclasses.replace(sig, preprocessor={"source": "x", "paired_by": "caller", "seq_length": 32})
    assert "hubembed does not use it: it packs the window load() sets (seq_length above)" in sig.describe()
