"""A new user's silent losses, round two (issue 29), the items fixed so far: a DataFrame given as texts, a 2-D array,
a list given to extract as its input path, and `hubembed embed` with nothing to read in a terminal."""

import os
import pty
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import hubembed
from hubembed import InputError


def test_a_dataframe_is_refused_naming_the_column_to_pass(tiny_encoders):
    """Iterating a DataFrame gives its column names: with 2 rows and 2 columns the shape was right and the vectors
    those of "text" and "label". Refused, naming the text column."""
    enc = tiny_encoders["tf2_dict"]
    df = pd.DataFrame({"text": ["a fine film", "awful"], "label": [1, 0]})
    with pytest.raises(InputError, match=r"texts is a DataFrame \(columns: text, label\).*df\['text'\]"):
        enc.embed(df)
    with pytest.raises(InputError, match="DataFrame"):
        enc.encode(df)
    np.testing.assert_array_equal(enc.embed(df["text"]), enc.embed(["a fine film", "awful"]))  # what it says works
    with pytest.raises(InputError, match=r"texts is a 2-D array \(shape \(2, 1\)\); pass a 1-D list of strings"):
        enc.embed(np.array([["a fine film"], ["awful"]]))


def test_extract_given_texts_instead_of_a_path_says_what_to_do(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"input: a file path .*got list.*\.embed\(texts\)"):
        hubembed.extract(["a", "b"], str(out))
    assert not out.exists()


def test_embed_in_a_terminal_with_no_texts_says_so_instead_of_waiting():
    """stdin is a terminal (a pseudo-terminal here) and no text is given: an error naming both ways, exit 1,
    at once (the test would hit its timeout if the command waited on stdin)."""
    leader, follower = pty.openpty()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "hubembed", "embed", "--model", "minilm"],
            stdin=follower,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "embed: no texts; give them as arguments" in r.stderr and "cat texts.txt | hubembed embed" in r.stderr


def test_a_malformed_layer_spec_is_refused_before_tensorflow_is_imported():
    """--layers last4 (and layers="last4" in Python) is refused by its form, before any model or TensorFlow loads."""
    code = (
        "import sys\n"
        "from hubembed.cli import main\n"
        "rc = main(['embed', '--model', 'minilm', '--layers', 'last4', 'a text'])\n"
        "from hubembed import EmbedSpec, InputError\n"
        "try:\n"
        "    EmbedSpec(layers='last4')\n"
        "except InputError as e:\n"
        "    print('python:', e)\n"
        "print('rc', rc, 'tensorflow' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "rc 1 False" in r.stdout
    assert "python: layers='last4' is not a layer spec (valid: an index" in r.stdout
    assert "last4" in r.stderr and "is not a layer spec" in r.stderr


def _cli(args):
    code = (
        "import sys\nfrom hubembed.cli import main\nrc = main(sys.argv[1:])\n"
        "print('rc', rc, 'tensorflow' in sys.modules)\n"
    )
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_options_that_would_be_ignored_are_refused_before_anything_loads(tmp_path):
    """Token and word vectors are not pooled: --pooling with --words was accepted and not even recorded. A Beam run
    does not resume: --runner with --resume on a new folder was accepted. Both refused, before TensorFlow."""
    src = tmp_path / "c.txt"
    src.write_text("a fine film\nawful\n", encoding="utf-8")
    r = _cli(["extract", str(src), "-o", str(tmp_path / "o1"), "--words", "--pooling", "cls"])
    assert "rc 1 False" in r.stdout, r.stderr[-2000:]
    assert "--pooling='cls': sentence vectors only; words vectors are not pooled" in r.stderr
    r = _cli(["extract", str(src), "-o", str(tmp_path / "o2"), "--runner", "DirectRunner", "--resume"])
    assert "rc 1 False" in r.stdout and "a Beam pipeline does not resume" in r.stderr
    with pytest.raises(InputError, match="normalize=True: sentence vectors only"):
        hubembed.extract(str(src), str(tmp_path / "o3"), level="tokens", normalize=True)
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3"))


@pytest.mark.slow
def test_an_output_folder_named_like_a_file_is_said_to_be_a_folder(tmp_path):
    """-o vectors.npy made a folder called vectors.npy without a word: a user expecting one file is told what an
    extraction is and how to read it (a warning: such a folder name is also legitimate)."""
    src = tmp_path / "c.txt"
    src.write_text("a fine film\n", encoding="utf-8")
    r = _cli(["extract", str(src), "-o", str(tmp_path / "vectors.npy"), "--model", "minilm", "-q"])
    assert r.stdout.strip().endswith("rc 0 True"), r.stderr[-2000:]
    assert "vectors.npy is made a folder: an extraction is a folder of shards and a manifest, not one .npy" in r.stderr
    assert len(hubembed.open_extraction(str(tmp_path / "vectors.npy"))) == 1


def test_a_wrong_column_or_a_header_read_as_data_is_refused_before_the_model_loads(tmp_path):
    """Item 2: --column 5 on a two-column file was a "bad row" on every line, and --on-bad skip then wrote an empty
    extraction; a header given positions was embedded as a text; a headerless file given a name got no hint. Now
    each is an error naming the fix, raised from the first lines, before TensorFlow is imported."""
    sst2 = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "sst2", "dev.tsv")
    headed = tmp_path / "headed.tsv"
    headed.write_text("sentence\tlabel\na fine film\t1\nawful\t0\n", encoding="utf-8")
    bare = tmp_path / "bare.csv"
    bare.write_text("a fine film,1\nawful,0\n", encoding="utf-8")
    cases = [
        ([sst2, "--column", "5"], "line 1 has 2 field(s) (columns 0..1 by position), column 5 asked for"),
        ([sst2, "--column", "5", "--on-bad", "skip"], "column 5 asked for: choose a column that exists"),
        ([str(headed), "--column", "0"], "line 1 looks like a header (sentence, label)"),
        ([str(bare), "--column", "text"], "no header row? name the column by its 0-based position (--column 0)"),
    ]
    for args, message in cases:
        r = _cli(["extract", *args, "-o", str(tmp_path / "out")])
        assert "rc 1 False" in r.stdout, (args, r.stdout, r.stderr[-2000:])
        assert message in r.stderr, (args, r.stderr[-2000:])
    assert "--column sentence" in _cli(["extract", str(headed), "--column", "0", "-o", str(tmp_path / "o")]).stderr
    assert not (tmp_path / "out").exists()


def test_a_label_column_is_warned_about_and_rows_all_dropped_are_an_error(tmp_path, tiny_models, caplog):
    """Item 2: the label column (only numbers) is embedded with a warning; an input every row of which is dropped as
    bad is an error, not an empty extraction; an input with no text is warned about."""
    model = tiny_models["tf2_dict"]
    labels = tmp_path / "labels.tsv"
    labels.write_text("".join(f"text number {i}\t{i % 2}\n" for i in range(120)), encoding="utf-8")
    with caplog.at_level("WARNING", logger="hubembed"):
        m = hubembed.extract(str(labels), str(tmp_path / "o1"), model=model, column="1", quiet=True)
    assert m["rows"] == 120
    assert "column '1' holds only numbers in its first 100 rows (0, 1): it looks like labels" in caplog.text
    assert caplog.text.count("looks like labels") == 1
    numbers = tmp_path / "numbers.jsonl"
    numbers.write_text('{"text": 5}\n{"text": 6}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"every row was dropped \(2 bad, e.g. line 1: field 'text' is int"):
        hubembed.extract(str(numbers), str(tmp_path / "o2"), model=model, column="text", on_bad="skip", quiet=True)
    assert not (tmp_path / "o2" / "manifest.json").exists()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    caplog.clear()
    with caplog.at_level("WARNING", logger="hubembed"):
        m = hubembed.extract(str(empty), str(tmp_path / "o3"), model=model, quiet=True)
    assert m["rows"] == 0 and "no text to embed (2 empty lines skipped)" in caplog.text


def test_repeated_ids_are_refused_before_the_model_loads_and_by_id_never_guesses(tmp_path, tiny_models):
    """Item 3: 50 rows with 32 distinct --id-column ids were accepted and by_id returned one of them."""
    rows = tmp_path / "rows.csv"
    rows.write_text("id,text\n" + "".join(f"{i % 32},text number {i}\n" for i in range(50)), encoding="utf-8")
    r = _cli(["extract", str(rows), "--column", "text", "--id-column", "id", "-o", str(tmp_path / "o1")])
    assert "rc 1 False" in r.stdout, r.stderr[-2000:]
    assert "line 34: id '0' repeats line 2's (the ids of 'id' must be unique" in r.stderr
    assert not (tmp_path / "o1").exists()
    # From standard input (read once): refused where the repeat is met.
    code = (
        "import sys, io, hubembed\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(sys.argv[1].encode()))\n"
        "try:\n"
        "    hubembed.extract('-', sys.argv[2], model=sys.argv[3], input_format='csv', column='text', id_column='id',"
        " quiet=True)\n"
        "except hubembed.InputError as e:\n"
        "    print('refused:', e)\n"
    )
    lines = "id,text\na,one\nb,two\na,three\n"
    r = subprocess.run(
        [sys.executable, "-c", code, lines, str(tmp_path / "o2"), tiny_models["tf2_dict"]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "refused: -: line 4: id 'a' repeats line 2's" in r.stdout, r.stderr[-2000:]
    # An extraction whose ids repeat (made before they were checked): by_id says so instead of choosing.
    ok = tmp_path / "ok.csv"
    ok.write_text("id,text\na,one\nb,two\nc,three\n", encoding="utf-8")
    hubembed.extract(
        str(ok), str(tmp_path / "o3"), model=tiny_models["tf2_dict"], column="text", id_column="id", quiet=True
    )
    ids_file = tmp_path / "o3" / "part-00000.ids.json"
    ids_file.write_text(ids_file.read_text().replace('"c"', '"a"'))
    ex = hubembed.open_extraction(str(tmp_path / "o3"))
    assert ex.by_id("b").shape == (16,)
    with pytest.raises(hubembed.OutputError, match=r"id 'a' names 2 rows \(0, 2\): by_id cannot choose"):
        ex.by_id("a")
    with pytest.raises(KeyError):
        ex.by_id("zzz")


def test_internals_under_backend_hub_are_refused_not_rebuilt(tiny_models):
    """Item 8: backend='hub' promises never to rebuild; internals() rebuilt anyway. Now it says why and what to do."""
    enc = hubembed.load(tiny_models["tf2_dict"], backend="hub")
    with pytest.raises(
        InputError, match="internals .* backend='hub' rules out .* load with backend='auto' or 'garden'"
    ):
        enc.internals(["a text"], attention=True)
    assert enc.engine._garden is None  # nothing was built


def test_messages_name_the_fix_without_printing_arrays(tiny_encoders, tmp_path):
    """Item 9: ranges given where the precision goes printed 7 KB of array repr; a Hugging Face folder did not point to
    convert; layers=L on L layers did not say how Hugging Face's hidden_states count."""
    from hubembed import quantize

    vecs = np.random.default_rng(0).normal(size=(20, 384)).astype(np.float32)
    ranges = quantize.Ranges.fit(vecs)
    codes = quantize.quantize(vecs, "int8", ranges)
    for given in (ranges, np.stack([ranges.low, ranges.high])):
        with pytest.raises(InputError) as e:
            quantize.dequantize(codes, given)
        assert len(str(e.value)) < 300 and "ranges are the third argument: dequantize(codes, 'int8', ranges)" in str(
            e.value
        )
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"")
    with pytest.raises(hubembed.NotASavedModelError, match=f"hubembed convert {hf} OUT"):
        hubembed.load(str(hf))
    enc = tiny_encoders["tf2_dict"]  # 3 layers
    with pytest.raises(InputError, match=r"Hugging Face's hidden_states\[3\] is hubembed's layer 2"):
        enc.embed(["a text"], layers=3)


def test_help_says_every_default_and_export_lists_only_what_it_takes():
    """Item 10: --pooling, --combine and --model hid their defaults, a dozen options had no help, and export --help
    listed options export refuses."""
    import argparse

    from hubembed.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, (name, action.option_strings)
            if action.default not in (None, False, True) and not isinstance(action.default, list):
                assert "default" in action.help, (name, action.option_strings, action.help)
    helps = {a.dest: a.help for a in sub.choices["embed"]._actions}
    assert helps["pooling"].endswith("(default: mean)") and helps["combine"].endswith("(default: mean)")
    assert helps["model"].endswith("(default: minilm)")
    export = {a.dest for a in sub.choices["export"]._actions}
    assert not export & {"stride", "long", "truncate_dim", "precision", "ranges"}
    assert {"layers", "pooling", "normalize", "format", "export_quantize"} <= export


def test_public_submodules_are_attributes_of_the_package():
    """Item 10: `import hubembed; hubembed.analysis` raised AttributeError; now it imports the module (no TF)."""
    code = (
        "import sys, hubembed\n"
        "print(hubembed.analysis.__name__, hubembed.registry.__name__, 'tensorflow' in sys.modules)\n"
        "from hubembed.keras.keras3 import HubFeatureLayer\n"
        "print(HubFeatureLayer.__name__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["hubembed.analysis", "hubembed.registry", "False", "HubFeatureLayer"]


def test_checks_that_need_no_model_run_before_tensorflow_is_imported(tmp_path):
    """Items 5 and 7: a probe's labels (a .txt, swapped columns) were checked only after everything was embedded;
    --quantize int8 with attention pooling or the embedding output only after TensorFlow and the load."""
    sst2 = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "sst2", "dev.tsv")
    txt = tmp_path / "t.txt"
    txt.write_text("a fine film\nawful\n", encoding="utf-8")
    cases = [
        (
            ["probe", "--data", sst2, "--text-column", "1", "--label-column", "0"],
            "--label-column 0 holds 872 distinct value(s) over 872 rows",
        ),
        (
            ["probe", "--data", str(txt), "--text-column", "0", "--label-column", "1"],
            "a probe needs labels: a .csv/.tsv/.jsonl/.parquet file",
        ),
        (
            ["embed", "--quantize", "int8", "--pooling", "attention", "a text"],
            "--pooling='attention' (attention weights) would need the float32 (or bf16) Model Garden rebuild",
        ),
        (
            ["extract", str(txt), "-o", str(tmp_path / "o"), "--quantize", "int8", "--layers", "embeddings"],
            "the embedding output (layer 'embeddings') would need the float32",
        ),
    ]
    for args, message in cases:
        r = _cli(args)
        assert "rc 1 False" in r.stdout, (args, r.stdout, r.stderr[-2000:])
        assert message in r.stderr, (args, r.stderr[-2000:])
    with pytest.raises(InputError, match="pooling='attention'"):
        hubembed.extract(str(txt), str(tmp_path / "o2"), quantize="int8", pooling="attention")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()


@pytest.mark.slow
def test_window_bounds_and_a_resume_mismatch_are_refused_before_tensorflow(tmp_path):
    """Item 7: --seq-length and --stride against the registry's window, and a resume with other settings, were
    checked after TensorFlow's import and the load (~5 s each). Now before, in the CLI and in Python."""
    src = tmp_path / "c.txt"
    src.write_text("a fine film\nawful\n", encoding="utf-8")
    cases = [
        (["embed", "--seq-length", "1000", "a text"], "--seq-length=1000; valid: 3..512 (the encoder's max positions)"),
        (["embed", "--stride", "300", "a text"], "--stride=300: the overlap of windows must be in 0..253"),
        (
            ["extract", str(src), "-o", str(tmp_path / "w"), "--seq-length", "128", "--stride", "126"],
            "--stride=126: the overlap of windows must be in 0..125",
        ),
    ]
    for args, message in cases:
        r = _cli(args)
        assert "rc 1 False" in r.stdout, (args, r.stdout, r.stderr[-2000:])
        assert message in r.stderr, (args, r.stderr[-2000:])
    code = (
        "import sys, hubembed\n"
        "try:\n    hubembed.load('minilm', seq_length=600)\n"
        "except hubembed.InputError as e:\n    print('python:', e, 'tensorflow' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "python: seq_length=600; valid: 3..512 (the encoder's max positions) False" in r.stdout, r.stderr[-2000:]

    out = tmp_path / "o"
    hubembed.extract(str(src), str(out), quantize="int8")  # TensorFlow-free once minilm's int8 file is cached
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    resumes = [
        (["--pooling", "cls"], "spec.pooling ('mean' there, 'cls' now)"),
        (["--seq-length", "128"], "spec.seq_length (256 there, 128 now)"),
        (["--normalize"], "spec.normalize (False there, True now)"),
        ([], "spec.quantize ('int8' there, None now)"),
        (["--model", "bert_en_uncased_L-12_H-768_A-12"], "model ('minilm' there, 'bert_en_uncased_L-12_H-768_A-12'"),
    ]
    for extra, message in resumes:
        r = _cli(
            [
                "extract",
                str(src),
                "-o",
                str(out),
                "--resume",
                *(extra or []),
                *([] if not extra else ["--quantize", "int8"]),
            ]
        )
        assert "rc 1 False" in r.stdout, (extra, r.stdout, r.stderr[-2000:])
        assert f"cannot resume {out}: it was made with a different" in r.stderr and message in r.stderr, r.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched
    r = _cli(["extract", str(src), "-o", str(out), "--resume", "--quantize", "int8"])
    assert "rc 0" in r.stdout and "0 this run" in r.stdout + r.stderr, r.stderr[-2000:]


@pytest.mark.slow
def test_ranges_are_made_on_the_command_line_from_texts_or_an_extraction(tmp_path, tiny_models, capsys):
    """Item 9: --precision int8 needs --ranges, and only Python could make them. `hubembed ranges` fits them on a
    text file embedded with the spec, or on a float extraction's vectors; the codes then follow from them."""
    from hubembed._pipeline.quantize import Ranges
    from hubembed.cli import main

    model = tiny_models["tf2_dict"]
    src = tmp_path / "c.txt"
    texts = ["a fine film", "awful", "the cat sat on the mat", "an hour of my life"]
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert main(["ranges", str(src), "-o", str(tmp_path / "r1.npz"), "--model", model, "--normalize"]) == 0
    expected = Ranges.fit(hubembed.load(model).embed(texts, normalize=True))
    got = Ranges.of(str(tmp_path / "r1.npz"))
    np.testing.assert_array_equal(got.low, expected.low)
    np.testing.assert_array_equal(got.high, expected.high)
    assert "--precision int8 --ranges" in capsys.readouterr().out

    out = tmp_path / "x"
    hubembed.extract(str(src), str(out), model=model)
    assert main(["ranges", str(out), "-o", str(tmp_path / "r2.npz")]) == 0
    np.testing.assert_array_equal(
        Ranges.of(str(tmp_path / "r2.npz")).high, hubembed.open_extraction(str(out)).vectors().max(0)
    )
    q = tmp_path / "q"
    hubembed.extract(str(src), str(q), model=model, precision="int8", ranges=str(tmp_path / "r2.npz"))
    assert hubembed.open_extraction(str(q)).vectors().dtype == np.int8

    assert main(["ranges", str(q), "-o", str(tmp_path / "r3.npz")]) == 1  # codes cannot be calibrated on
    assert "ranges are fitted on float sentence vectors" in capsys.readouterr().err
    one = tmp_path / "one.txt"
    one.write_text("alone\n", encoding="utf-8")
    assert main(["ranges", str(one), "-o", str(tmp_path / "r4.npz"), "--model", model]) == 1
    assert "ranges need at least 2" in capsys.readouterr().err
    assert not (tmp_path / "r3.npz").exists() and not (tmp_path / "r4.npz").exists()


def test_cli_messages_are_in_the_command_lines_terms_and_models_are_listed(capsys):
    """Item 9: the CLI said `hubembed.registry.names()` and `truncate_dim and precision`; now `hubembed models`
    (a command that lists them) and the options."""
    from hubembed.cli import cli_terms, main

    assert main(["embed", "--model", "minlm", "a text"]) == 1
    err = capsys.readouterr().err
    assert "Did you mean: minilm?" in err and "See `hubembed models` for the" in err and "registry.names" not in err
    assert cli_terms("truncate_dim and precision apply to sentence vectors") == (
        "--truncate-dim and --precision apply to sentence vectors"
    )
    assert cli_terms("embed with the model (hubembed.load('minilm'))") == "embed with the model (--model 'minilm')"
    assert main(["models"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == len(hubembed.registry.names("encoder")) and any(line.startswith("minilm ") for line in listed)
