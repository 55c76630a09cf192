"""hubembed extract: corpus readers, shards + manifest, resume after SIGKILL, bad input, the reader."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import hubembed
from hubembed._corpus import inputs
from hubembed.errors import InputError, OutputError

WORDS = "the quick brown fox jumps over lazy dog good movie great film cat sat mat night hello world".split()


def corpus(path, n, seed=0, empty_every=17):
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        lines.append("" if i % empty_every == 5 else " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 24))))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return lines


@pytest.fixture(scope="module")
def tiny(tiny_encoders):
    return tiny_encoders["tf2_dict"]


def test_extract_txt_equals_embed_with_ids_skips_and_manifest(tiny, tmp_path):
    lines = corpus(tmp_path / "c.txt", 230)
    out = str(tmp_path / "out")
    m = hubembed.extract(
        str(tmp_path / "c.txt"), out, encoder=tiny, shard_size=50, quiet=True, pooling="max", layers="-2:"
    )
    kept = [(i + 1, t) for i, t in enumerate(lines) if t.strip()]
    ex = hubembed.open_extraction(out, verify=True)
    assert len(ex) == len(kept) == m["rows"] and ex.complete and len(ex.shards) == -(-len(kept) // 50)
    ref = tiny.embed([t for _, t in kept], pooling="max", layers="-2:")
    np.testing.assert_allclose(ex.vectors(), ref, atol=1e-5)
    assert ex.ids() == [str(i) for i, _ in kept]
    np.testing.assert_allclose(ex.by_id(kept[7][0]), ref[7], atol=1e-5)
    np.testing.assert_allclose(ex[-1], ref[-1], atol=1e-5)
    assert [s[0] for s in m["skipped"]] == [i + 1 for i, t in enumerate(lines) if not t.strip()]
    h = m["header"]
    assert h["model"] == tiny.handle and len(h["weights_sha256"]) == 64
    assert h["spec"]["pooling"] == "max" and h["spec"]["layers"] == [1, 2] and h["spec"]["dim"] == 16
    assert {"hubembed", "tensorflow", "numpy"} <= set(h["versions"])
    assert isinstance(ex.shard(0), np.memmap)
    with pytest.raises(KeyError, match="no row with id 'x'"):
        ex.by_id("x")


def test_float16_and_other_formats(tiny, tmp_path):
    texts = ["hello world", "the cat sat", "good movie , great film !"]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"key": f"id{i}", "body": t}) for i, t in enumerate(texts)))
    (tmp_path / "a.csv").write_text("key,body\n" + "\n".join(f'id{i},"{t}"' for i, t in enumerate(texts)) + "\n")
    (tmp_path / "a.tsv").write_text("key\tbody\n" + "\n".join(f"id{i}\t{t}" for i, t in enumerate(texts)) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"key": [f"id{i}" for i in range(3)], "body": texts}), tmp_path / "a.parquet")
    ref = tiny.embed(texts)
    for name in ("a.jsonl", "a.csv", "a.tsv", "a.parquet"):
        out = str(tmp_path / ("out-" + name))
        hubembed.extract(
            str(tmp_path / name), out, encoder=tiny, column="body", id_column="key", quiet=True, dtype="float16"
        )
        ex = hubembed.open_extraction(out)
        assert ex.shard(0).dtype == np.float16 and ex.ids() == ["id0", "id1", "id2"]
        np.testing.assert_allclose(ex.vectors().astype(np.float32), ref, atol=2e-3, err_msg=name)


@pytest.mark.slow
def test_stdin_through_the_cli(tiny_models, tmp_path):
    out = str(tmp_path / "out")
    r = subprocess.run(
        [sys.executable, "-m", "hubembed", "extract", "-", "-o", out, "--model", tiny_models["tf2_dict"], "-q"],
        input="hello world\n\nthe cat\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "2 rows in 1 npy shards (sentence level" in r.stdout and "1 input rows skipped" in r.stdout
    assert hubembed.open_extraction(out).ids() == ["1", "3"]


def test_bad_input_is_named_and_nothing_written_is_lost(tiny, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        hubembed.extract(str(tmp_path / "nope.txt"), str(tmp_path / "o"), encoder=tiny)
    with pytest.raises(InputError, match="is a folder"):
        hubembed.extract(str(tmp_path), str(tmp_path / "o"), encoder=tiny)
    (tmp_path / "x.doc").write_text("a")
    with pytest.raises(InputError, match="unknown format 'doc'; valid: txt, jsonl, csv, tsv, parquet"):
        hubembed.extract(str(tmp_path / "x.doc"), str(tmp_path / "o"), encoder=tiny)
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="needs the column"):
        hubembed.extract(str(tmp_path / "t.csv"), str(tmp_path / "o"), encoder=tiny)
    with pytest.raises(InputError, match="no column 'text' in the header \\(columns: a, b\\)"):
        hubembed.extract(str(tmp_path / "t.csv"), str(tmp_path / "o"), encoder=tiny, column="text")
    (tmp_path / "j.jsonl").write_text('{"t": "a"}\n{"u": "b"}\n')
    with pytest.raises(InputError, match="line 2 has no field 't' \\(it has: u\\)"):
        hubembed.extract(str(tmp_path / "j.jsonl"), str(tmp_path / "o"), encoder=tiny, column="t", quiet=True)
    (tmp_path / "bad.txt").write_bytes(b"good line\nbad \xff byte\nanother\n\xc3\x28 again\nlast\n")
    with pytest.raises(InputError, match="line 2: not valid UTF-8.*on_bad='skip'"):
        hubembed.extract(str(tmp_path / "bad.txt"), str(tmp_path / "o2"), encoder=tiny, quiet=True)
    m = hubembed.extract(str(tmp_path / "bad.txt"), str(tmp_path / "o3"), encoder=tiny, quiet=True, on_bad="skip")
    assert [s[0] for s in m["skipped"]] == [2, 4] and hubembed.open_extraction(str(tmp_path / "o3")).ids() == [
        "1",
        "3",
        "5",
    ]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.md").write_text("mine")
    with pytest.raises(OutputError, match="holds other files \\(notes.md\\)"):
        hubembed.extract(str(tmp_path / "bad.txt"), str(other), encoder=tiny, on_bad="skip", quiet=True)
    assert (other / "notes.md").read_text() == "mine"
    with pytest.raises(OutputError, match="already holds an extraction \\(3 rows\\); resume it with --resume"):
        hubembed.extract(str(tmp_path / "bad.txt"), str(tmp_path / "o3"), encoder=tiny, on_bad="skip", quiet=True)
    with pytest.raises(OutputError, match="different spec.pooling \\('mean' there, 'cls' now\\)"):
        hubembed.extract(
            str(tmp_path / "bad.txt"),
            str(tmp_path / "o3"),
            encoder=tiny,
            on_bad="skip",
            quiet=True,
            resume=True,
            pooling="cls",
        )
    assert len(hubembed.open_extraction(str(tmp_path / "o3"), verify=True)) == 3  # untouched
    with pytest.raises(InputError, match="dtype='int8'; valid: float32, float16"):
        hubembed.extract(str(tmp_path / "bad.txt"), str(tmp_path / "o4"), encoder=tiny, dtype="int8")


def test_a_reader_streams_line_by_line(tmp_path):
    lines = corpus(tmp_path / "c.txt", 50)
    r = inputs.open_input(str(tmp_path / "c.txt"), on_empty="keep")
    recs = list(r.records())
    assert [x.text for x in recs] == lines and [x.line for x in recs] == list(range(1, 51))
    with pytest.raises(InputError, match="line 6 is empty"):
        list(inputs.open_input(str(tmp_path / "c.txt"), on_empty="fail").records())


def _cli(model, src, out, *extra):
    return [
        sys.executable,
        "-m",
        "hubembed",
        "extract",
        src,
        "-o",
        out,
        "--model",
        model,
        "--shard-size",
        "40",
        "--batch-size",
        "8",
        "--max-tokens",
        "0",
        "-q",
        "--no-cache",
        *extra,
    ]


def _manifest_rows(out):
    """Rows the manifest on disk lists (0 before the first shard); written atomically, so never half-read."""
    try:
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
            return int(json.load(f)["rows"])
    except FileNotFoundError:
        return 0


def _run_until(cmd, out, rows, extra_delay, guard=600.0):
    """Start the CLI and SIGKILL it once the manifest lists at least ``rows`` rows, then ``extra_delay`` seconds
    later (so some kills land between shards, others mid-shard). Driven by progress, not the clock: however
    slow start-up is (TensorFlow's import on a busy machine), the kill comes after real work. ``guard`` is a
    wall-clock limit only against a hung process. Returns (killed, process)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.monotonic() + guard
    while p.poll() is None and _manifest_rows(out) < rows:
        assert time.monotonic() < end, f"no progress to {rows} rows in {guard:.0f} s"
        time.sleep(0.01)
    if p.poll() is None:
        time.sleep(extra_delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
            return True, p
    p.wait()
    return False, p


@pytest.mark.slow
def test_killed_at_random_moments_and_resumed_equals_a_clean_run(tiny_models, tmp_path):
    """SIGKILL the CLI at random points of its progress (3 kills, each after a random number of rows past the
    last), resume each time; after the second kill corrupt a shard and leave a temp file: the final output
    equals an uninterrupted run's on this machine, bit for bit, with no duplicate or missing id."""
    model = tiny_models["tf2_dict"]
    src = str(tmp_path / "c.txt")
    n = 4000  # 100 shards of 40: room for three kills at random row counts
    corpus(src, n, seed=1)
    clean = str(tmp_path / "clean")
    subprocess.run(_cli(model, src, clean), check=True, timeout=600, capture_output=True)
    rows_total = hubembed.open_extraction(clean).manifest["rows"]
    out = str(tmp_path / "killed")
    rng = random.Random(7)
    partial_seen = []
    for kill in range(3):
        done = _manifest_rows(out)
        target = rng.randint(done + 1, done + (rows_total - done) // 3)  # somewhere in the next third of the rest
        killed, p = _run_until(_cli(model, src, out, "--resume"), out, target, extra_delay=rng.uniform(0.0, 0.3))
        assert killed, (kill, target, p.returncode, p.stderr.read().decode()[-2000:])
        partial_seen.append(_manifest_rows(out))
        if kill == 1:
            assert partial_seen[-1] > 0
            shard = os.path.join(out, "part-00000.npy")  # a shard damaged on disk: redone, not trusted
            with open(shard, "r+b") as f:
                f.seek(200)
                f.write(b"\x00\x01\x02\x03")
            open(os.path.join(out, "part-99999.npy.tmp"), "wb").write(b"half a shard")
    final = subprocess.run(_cli(model, src, out, "--resume"), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    assert all(0 < r < rows_total for r in partial_seen), partial_seen  # every kill landed mid-extraction
    a, b = hubembed.open_extraction(clean, verify=True), hubembed.open_extraction(out, verify=True)
    assert b.complete and len(a) == len(b)
    assert a.ids() == b.ids() and len(set(b.ids())) == len(b)
    assert np.array_equal(a.vectors(), b.vectors())
    assert a.manifest["skipped"] == b.manifest["skipped"]
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_headerless_tables_by_column_position(tiny, tmp_path):
    (tmp_path / "s.tsv").write_text("a fine film\t1\nawful\t0\n")
    m = hubembed.extract(str(tmp_path / "s.tsv"), str(tmp_path / "o"), encoder=tiny, column="0", quiet=True)
    np.testing.assert_allclose(
        hubembed.open_extraction(str(tmp_path / "o")).vectors(), tiny.embed(["a fine film", "awful"]), atol=1e-5
    )
    assert m["header"]["input"]["column"] == "0"


def test_cli_input_format_overrides_the_extension(tiny_models, tmp_path, capsys):
    from hubembed.cli import main

    (tmp_path / "noext").write_text("a fine film\nawful\n")
    model = tiny_models["tf2_dict"]
    assert main(["extract", str(tmp_path / "noext"), "-o", str(tmp_path / "o1"), "--model", model, "-q"]) == 1
    assert (
        "unknown format ''; valid: txt, jsonl, csv, tsv, parquet (by extension, or --input-format)"
        in capsys.readouterr().err
    )
    assert (
        main(
            [
                "extract",
                str(tmp_path / "noext"),
                "-o",
                str(tmp_path / "o2"),
                "--model",
                model,
                "-q",
                "--input-format",
                "txt",
            ]
        )
        == 0
    )
    assert "2 rows in 1 npy shards" in capsys.readouterr().out


def test_a_full_disk_stops_with_a_clear_error_and_resume_loses_nothing(tiny, tmp_path, monkeypatch):
    import errno

    from hubembed._corpus import store

    lines = corpus(tmp_path / "c.txt", 120, seed=3)
    src, out, clean = str(tmp_path / "c.txt"), str(tmp_path / "o"), str(tmp_path / "clean")
    hubembed.extract(src, clean, encoder=tiny, shard_size=25, quiet=True, cache=False)
    real, calls = os.fsync, []

    def fsync(fd):  # the 5th file written (shard 1's ids) finds the disk full
        calls.append(fd)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(store.os, "fsync", fsync)
    with pytest.raises(
        OutputError,
        match="part-00001.ids.json failed: No space left on device; the extraction can be resumed with --resume",
    ):
        hubembed.extract(src, out, encoder=tiny, shard_size=25, quiet=True, cache=False)
    monkeypatch.setattr(store.os, "fsync", real)
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert m["rows"] == 25 and not m["complete"] and not [f for f in os.listdir(out) if f.endswith(".tmp")]
    m = hubembed.extract(src, out, encoder=tiny, shard_size=25, quiet=True, cache=False, resume=True)
    a, b = hubembed.open_extraction(clean), hubembed.open_extraction(out, verify=True)
    assert m["summary"]["rows_this_run"] == len(b) - 25 and a.ids() == b.ids()
    assert len(b) == sum(1 for t in lines if t.strip())
    assert np.array_equal(a.vectors(), b.vectors())
