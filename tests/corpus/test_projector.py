"""TensorBoard's Embedding Projector (``hubembed projector``, ``Extraction.to_projector``): the log folder's files as
TensorBoard reads them, the sample, token/word points, several extractions, codes, bad input, the command; and the
projector itself in headless Chromium, served by TensorBoard (driven over the DevTools protocol on a pipe)."""

import base64
import fcntl
import json
import os
import random
import re
import select
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import hubembed
from hubembed._corpus import projector
from hubembed._corpus.projector import sample_positions, to_projector
from hubembed.cli import main
from hubembed.errors import InputError, OutputError

WORDS = "the a cat dog sat on mat hello world good bad movie film great love hate quick brown fox".split()
_rng = random.Random(0)
TEXTS = [" ".join(_rng.choice(WORDS) for _ in range(_rng.randint(1, 8))) for _ in range(40)]
TEXTS[7] = "tabs\tin a naïve text"  # metadata.tsv: a cell is one line without tabs (a tab becomes a space)


@pytest.fixture(scope="module")
def tiny(tiny_encoders):
    return tiny_encoders["tf2_dict"]


@pytest.fixture(scope="module")
def exs(tiny, tmp_path_factory):
    """{kind: extraction folder} of the same 40 texts (ids 1..40)."""
    root = tmp_path_factory.mktemp("projector-src")
    src = root / "c.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    ranges = hubembed.quantize.Ranges.fit(tiny.embed(TEXTS))
    kinds = {
        "sentences": dict(shard_size=15),
        "parquet": dict(format="parquet", layers="-2:", shard_size=15),
        "tfrecord": dict(format="tfrecord", pooling="cls"),
        "tokens": dict(level="tokens", shard_size=15),
        "words": dict(level="words", format="tfrecord", shard_size=15),
        "int8": dict(precision="int8", ranges=ranges),
        "binary": dict(precision="binary"),
        "layers": dict(layers="-2:", combine="none"),
    }
    out = {}
    for kind, kw in kinds.items():
        out[kind] = str(root / kind)
        hubembed.extract(str(src), out[kind], encoder=tiny, quiet=True, cache=False, **kw)
    out["ranges"] = ranges
    return out


def _checkpoint(logdir):
    import tensorflow as tf

    return tf.train.load_checkpoint(tf.train.latest_checkpoint(logdir))


def _config(logdir):
    from google.protobuf import text_format
    from tensorboard.plugins.projector import ProjectorConfig

    with open(os.path.join(logdir, "projector_config.pbtxt"), encoding="utf-8") as f:
        return text_format.Parse(f.read(), ProjectorConfig())


def _metadata(logdir, name):
    with open(os.path.join(logdir, name, "metadata.tsv"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[-1] == ""  # every row ends with a newline, none is empty
    header, *rows = [line.split("\t") for line in lines[:-1]]
    assert all(len(r) == len(header) for r in rows)
    return {c: [r[i] for r in rows] for i, c in enumerate(header)}


# -- the log folder -------------------------------------------------------------------------------------------------
def test_log_folder_as_tensorboard_reads_it(exs, tmp_path):
    ex = hubembed.open_extraction(exs["sentences"])
    logdir = str(tmp_path / "logs")
    record = to_projector([exs["sentences"]], logdir, max_points=25, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(40, size=25, replace=False))  # the documented rule
    (e,) = record["embeddings"]
    assert e["tensor_name"] == "sentences-sample-25-of-40/.ATTRIBUTES/VARIABLE_VALUE"
    assert (e["points"], e["points_total"], e["rows"], e["sampled"], e["dim"]) == (25, 40, 40, True, 16)
    assert record["sample"] == {"rule": projector.SAMPLE_RULE, "max_points": 25, "seed": 3}
    with open(os.path.join(logdir, "hubembed_projector.json"), encoding="utf-8") as f:
        assert json.load(f) == record
    config = _config(logdir)
    assert [(c.tensor_name, c.metadata_path) for c in config.embeddings] == [
        (e["tensor_name"], "sentences/metadata.tsv")
    ]
    expected = np.stack([ex[int(r)] for r in rows])
    np.testing.assert_array_equal(_checkpoint(logdir).get_tensor(e["tensor_name"]), expected)
    meta = _metadata(logdir, "sentences")
    assert list(meta) == ["id", "row"]  # no text stored: the id and the row
    assert meta["id"] == [ex.ids()[r] for r in rows] and meta["row"] == [str(r) for r in rows]
    tsv = np.loadtxt(os.path.join(logdir, "sentences", "vectors.tsv"), delimiter="\t", dtype=np.float32)
    np.testing.assert_allclose(tsv, expected, rtol=1e-6, atol=1e-7)
    assert sorted(os.listdir(logdir)) == [
        "checkpoint",
        "embeddings.ckpt-1.data-00000-of-00001",
        "embeddings.ckpt-1.index",
        "hubembed_projector.json",
        "projector_config.pbtxt",
        "sentences",
    ]


def test_metadata_cells_are_one_line_and_short():
    assert projector._clean("a\tb\r\nc\u2028d") == "a b c d" and projector._clean(None) == ""
    long = projector._clean("x" * 2000)
    assert len(long) == projector.TEXT_CHARS and long.endswith("...")


def test_the_sample_rule():
    np.testing.assert_array_equal(sample_positions(7, 7, 0), np.arange(7))
    np.testing.assert_array_equal(sample_positions(7, 100, 5), np.arange(7))
    s = sample_positions(1000, 30, 1)
    assert len(s) == len(np.unique(s)) == 30 and np.all(np.diff(s) > 0) and s.max() < 1000
    np.testing.assert_array_equal(s, np.sort(np.random.default_rng(1).choice(1000, 30, replace=False)))
    np.testing.assert_array_equal(s, sample_positions(1000, 30, 1))
    assert not np.array_equal(s, sample_positions(1000, 30, 2))


def test_no_sample_when_every_point_fits(exs, tmp_path):
    ex = hubembed.open_extraction(exs["parquet"])
    record = to_projector(exs["parquet"], str(tmp_path / "l"), names="all")  # one folder, one name: no lists needed
    (e,) = record["embeddings"]
    assert e["tensor_name"] == "all/.ATTRIBUTES/VARIABLE_VALUE" and not e["sampled"] and e["points"] == 40
    np.testing.assert_array_equal(_checkpoint(str(tmp_path / "l")).get_tensor(e["tensor_name"]), ex.vectors())
    assert _metadata(str(tmp_path / "l"), "all")["id"] == [str(i) for i in range(1, 41)]


@pytest.mark.parametrize("kind,unit", [("tokens", "token"), ("words", "word")])
def test_a_point_per_token_or_word(exs, tmp_path, kind, unit):
    ex = hubembed.open_extraction(exs[kind])
    flat = [(r, j, p) for r, p in enumerate(ex) for j in range(len(p))]
    logdir = str(tmp_path / kind)
    for max_points, rows in ((10_000, np.arange(len(flat))), (30, sample_positions(len(flat), 30, 0))):
        record = to_projector([exs[kind]], logdir, max_points=max_points, overwrite=True)
        (e,) = record["embeddings"]
        assert e["level"] == kind and e["points_total"] == len(flat) and e["points"] == len(rows)
        picked = [flat[i] for i in rows]
        np.testing.assert_array_equal(
            _checkpoint(logdir).get_tensor(e["tensor_name"]), np.stack([p.vectors[j] for _, j, p in picked])
        )
        meta = _metadata(logdir, kind)
        assert list(meta) == [unit, "id", "text", "start", "end", "row", f"{unit}_index"]
        assert meta[unit] == [p.pieces[j] for _, j, p in picked]
        assert meta["id"] == [p.id for _, _, p in picked] and meta["row"] == [str(r) for r, _, _ in picked]
        assert meta["text"] == [p.text.replace("\t", " ") for _, _, p in picked]
        assert len(rows) < len(flat) or "tabs in a naïve text" in meta["text"]
        assert [(int(a), int(b)) for a, b in zip(meta["start"], meta["end"])] == [
            tuple(p.spans[j]) for _, j, p in picked
        ]
    if kind == "words":  # a word is its text's slice
        assert all(p.text[p.spans[j][0] : p.spans[j][1]] == p.pieces[j] for _, j, p in flat)


def test_several_extractions_side_by_side(exs, tmp_path):
    twin = tmp_path / "elsewhere" / "sentences"  # the same folder name as another: numbered
    shutil.copytree(exs["sentences"], twin)
    srcs = [exs["sentences"], exs["tfrecord"], exs["tokens"], str(twin)]
    logdir = str(tmp_path / "side")
    record = to_projector(srcs, logdir, max_points=35)
    names = [e["name"] for e in record["embeddings"]]
    assert names == ["sentences", "tfrecord", "tokens", "sentences-2"]
    config = _config(logdir)
    assert [c.tensor_name for c in config.embeddings] == [e["tensor_name"] for e in record["embeddings"]]
    assert [c.metadata_path for c in config.embeddings] == [f"{n}/metadata.tsv" for n in names]
    reader = _checkpoint(logdir)
    shapes = reader.get_variable_to_shape_map()
    for e, src in zip(record["embeddings"], srcs):
        assert shapes[e["tensor_name"]] == [35, 16] and e["extraction"] == os.path.abspath(src)
    rows = sample_positions(40, 35, 0)  # two extractions of one corpus: the same rows
    assert _metadata(logdir, "sentences")["row"] == _metadata(logdir, "tfrecord")["row"] == [str(r) for r in rows]
    a, b = (reader.get_tensor(record["embeddings"][i]["tensor_name"]) for i in (0, 3))
    np.testing.assert_array_equal(a, b)
    tf_vectors = hubembed.open_extraction(exs["tfrecord"]).vectors()[rows]
    np.testing.assert_array_equal(reader.get_tensor(record["embeddings"][1]["tensor_name"]), tf_vectors)


def test_codes_are_dequantized_or_unpacked(exs, tmp_path):
    with pytest.raises(InputError, match="holds int8 codes: give the calibration ranges"):
        to_projector([exs["int8"]], str(tmp_path / "a"))
    other = hubembed.quantize.Ranges.fit(np.random.default_rng(0).standard_normal((5, 16)))
    with pytest.raises(InputError, match="are not the ones .* was quantized with"):
        to_projector([exs["int8"]], str(tmp_path / "a"), ranges=other)
    assert not os.path.exists(tmp_path / "a")
    int8 = hubembed.open_extraction(exs["int8"])
    record = to_projector([exs["int8"], exs["binary"], exs["layers"]], str(tmp_path / "a"), ranges=exs["ranges"])
    reader = _checkpoint(str(tmp_path / "a"))
    got = [reader.get_tensor(e["tensor_name"]) for e in record["embeddings"]]
    np.testing.assert_array_equal(got[0], int8.dequantized(exs["ranges"]))
    bits = hubembed.open_extraction(exs["binary"]).vectors()
    assert bits.dtype == np.int8 and got[1].shape == (40, 16) and set(np.unique(got[1])) == {-1.0, 1.0}
    np.testing.assert_array_equal(got[1] > 0, np.unpackbits((bits.astype(np.int16) + 128).astype(np.uint8), axis=1))
    layered = hubembed.open_extraction(exs["layers"]).vectors()  # combine="none": [rows, 2, 16] -> 32 wide
    assert layered.shape == (40, 2, 16)
    np.testing.assert_array_equal(got[2], layered.reshape(40, 32))
    assert [e["precision"] for e in record["embeddings"]] == ["int8", "binary", "float32"]


def test_a_stored_text_column_labels_the_points(exs, tmp_path):
    """What an extraction may store besides ids and vectors (a text, a label: --keep-text) goes into the metadata,
    the text first (the projector labels points by the first column of words)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ex_dir = str(tmp_path / "kept")
    shutil.copytree(exs["parquet"], ex_dir)
    ex = hubembed.open_extraction(ex_dir)
    for s in ex.shards:
        path = os.path.join(ex_dir, s["file"])
        t = pq.read_table(path)
        texts = [TEXTS[int(i) - 1] for i in t.column("id").to_pylist()]
        labels = [int(i) % 2 for i in t.column("id").to_pylist()]
        pq.write_table(t.append_column("text", pa.array(texts)).append_column("label", pa.array(labels)), path)
    record = to_projector([ex_dir], str(tmp_path / "l"))
    assert record["embeddings"][0]["metadata_columns"] == ["text", "id", "label", "row"]
    meta = _metadata(str(tmp_path / "l"), "kept")
    assert meta["text"] == [t.replace("\t", " ") for t in TEXTS] and meta["label"] == [str(i % 2) for i in range(1, 41)]


# -- bad input, before anything is read -----------------------------------------------------------------------------
def test_bad_input_is_refused_before_any_vector_is_read(exs, tmp_path, monkeypatch):
    def never(*args):
        raise AssertionError("vectors read before the input was checked")

    monkeypatch.setattr(projector, "sentence_points", never)
    monkeypatch.setattr(projector, "piece_points", never)
    good, logdir = exs["sentences"], str(tmp_path / "logs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is not a hubembed extraction"):
        to_projector([str(tmp_path / "empty")], logdir)
    partial = tmp_path / "partial"
    shutil.copytree(good, partial)
    m = json.loads((partial / "manifest.json").read_text())
    (partial / "manifest.json").write_text(json.dumps({**m, "complete": False}))
    with pytest.raises(InputError, match=r"incomplete extraction \(40 rows in 3 finished shards so far\).*--resume"):
        to_projector([good, str(partial)], logdir)
    for bad in (0, -5, 1.5, True, "10"):
        with pytest.raises(InputError, match="max_points=.*: a positive number of points"):
            to_projector([good], logdir, max_points=bad)
    with pytest.raises(InputError, match="seed=-1: a non-negative integer"):
        to_projector([good], logdir, seed=-1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="log folder .*file is a file; give a folder"):
        to_projector([good], str(tmp_path / "file"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "events.out.tfevents.1").write_text("x")
    with pytest.raises(OutputError, match=r"holds other files \(events.out.tfevents.1\)"):
        to_projector([good], str(tmp_path / "busy"))
    with pytest.raises(InputError, match="names=.*one per extraction"):
        to_projector([good, exs["tokens"]], logdir, names=["a"])
    with pytest.raises(InputError, match=r"names=\['a b'\]: letters, digits"):
        to_projector([good], logdir, names=["a b"])
    with pytest.raises(InputError, match="each extraction needs its own"):
        to_projector([good, exs["tokens"]], logdir, names=["a", "a"])
    with pytest.raises(InputError, match="one or more extraction folders"):
        to_projector([], logdir)
    assert not os.path.exists(logdir) and not [e for e in os.listdir(tmp_path) if e.endswith(".tmp")]


def test_a_projector_log_is_replaced_only_when_asked(exs, tmp_path):
    logdir = str(tmp_path / "logs")
    to_projector([exs["sentences"]], logdir, max_points=5)
    with pytest.raises(OutputError, match=r"already holds a projector log; replace it with overwrite=True"):
        to_projector([exs["tokens"]], logdir)
    to_projector([exs["tokens"]], logdir, max_points=6, overwrite=True)
    assert sorted(e for e in os.listdir(logdir) if "." not in e) == ["checkpoint", "tokens"]  # sentences/ is gone
    tokens = sum(len(p) for p in hubembed.open_extraction(exs["tokens"]))
    assert [c.tensor_name for c in _config(logdir).embeddings] == [
        f"tokens-sample-6-of-{tokens}/.ATTRIBUTES/VARIABLE_VALUE"
    ]
    (tmp_path / "empty").mkdir()
    to_projector([exs["sentences"]], str(tmp_path / "empty"), max_points=5)  # an empty folder is fine
    assert os.path.isfile(tmp_path / "empty" / "projector_config.pbtxt")


def test_extraction_to_projector_is_the_function_for_one(exs, tmp_path):
    ex = hubembed.open_extraction(exs["tokens"])
    record = ex.to_projector(str(tmp_path / "one"), name="toks", max_points=12, seed=4)
    direct = to_projector([ex], str(tmp_path / "two"), names=["toks"], max_points=12, seed=4)
    assert {**record, "logdir": None} == {**direct, "logdir": None}
    assert _metadata(str(tmp_path / "one"), "toks") == _metadata(str(tmp_path / "two"), "toks")
    import inspect

    assert inspect.signature(ex.to_projector).parameters["max_points"].default == projector.DEFAULT_MAX_POINTS


# -- the command ----------------------------------------------------------------------------------------------------
def test_the_command(exs, tmp_path, capsys):
    logdir = str(tmp_path / "logs")
    argv = ["projector", exs["sentences"], exs["words"], logdir, "--max-points", "30", "--name", "s", "--name", "w"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "s: 30 of 40 texts (a uniform sample, seed 0), dim 16 -> tensor s-sample-30-of-40/" in said
    words = sum(len(p) for p in hubembed.open_extraction(exs["words"]))
    assert f"w: 30 of {words} words" in said and f"{logdir}/w/vectors.tsv + {logdir}/w/metadata.tsv" in said
    assert f"see it: tensorboard --logdir {logdir}" in said
    assert [c.metadata_path for c in _config(logdir).embeddings] == ["s/metadata.tsv", "w/metadata.tsv"]
    assert main(argv) == 1
    assert "already holds a projector log; replace it with overwrite=True (--overwrite)" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--seed", "2"]) == 0
    assert "(a uniform sample, seed 2)" in capsys.readouterr().out
    for bad, message in (
        (["--max-points", "0"], "hubembed: error: --max-points=0: a positive number of points"),
        (["--overwrite", "--name", "x"], "hubembed: error: --name=['s', 'w', 'x']: one per extraction (2)"),
        ([], "already holds a projector log"),
    ):
        assert main([*argv, *bad]) == 1
        assert message in capsys.readouterr().err
    assert main(["projector", str(tmp_path), str(tmp_path / "l2")]) == 1
    assert "is not a hubembed extraction (no manifest.json)" in capsys.readouterr().err
    assert main(["projector", exs["int8"], str(tmp_path / "l3")]) == 1
    assert (
        "holds int8 codes: give the calibration ranges it was quantized with, --ranges= (a" in capsys.readouterr().err
    )
    path = exs["ranges"].save(str(tmp_path / "r.npz"))
    assert main(["projector", exs["int8"], str(tmp_path / "l3"), "--ranges", path]) == 0
    assert "int8: all 40 texts, dim 16" in capsys.readouterr().out


# -- in a browser: TensorBoard serves the log folder, headless Chromium shows the projector --------------------------
def _chromium_binary():
    """Debian's chromium (scripts/chromium.sh installs it); under CI its absence is a failure, not a skip."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: CI runs the projector in a browser (bash scripts/chromium.sh)")
    pytest.skip("chromium is not installed (bash scripts/chromium.sh installs Debian's chromium)")


class Chromium:
    """Headless Chromium driven over the Chrome DevTools Protocol on a pipe (``--remote-debugging-pipe``: commands on
    its fd 3, answers and events on its fd 4, JSON messages ended by NUL): no websocket client, no driver."""

    def __init__(self, binary, profile, log):
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        # The child's ends above fd 4, so that placing them on 3 and 4 never overwrites one with the other.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (cmd_r, res_w)]
        os.close(cmd_r)
        os.close(res_w)

        def child_fds():
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        args = [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--no-first-run",
                "--no-default-browser-check", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                f"--user-data-dir={profile}", "--window-size=1400,900", "about:blank"]  # fmt: skip
        self.proc = subprocess.Popen(
            args, preexec_fn=child_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL
        )
        for fd in high:
            os.close(fd)
        self.w, self.r = cmd_w, res_r
        self.buf, self.n, self.session = b"", 0, None

    def _message(self, deadline):
        while b"\0" not in self.buf:
            if not select.select([self.r], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe (exit code {self.proc.poll()})")
            self.buf += chunk
        message, self.buf = self.buf.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, params=None, browser=False, timeout=60):
        self.n += 1
        message = {"id": self.n, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self.w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._message(deadline)
            if answer.get("id") == self.n:  # events (no id) are not needed
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def open(self, url):
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)[
            "sessionId"
        ]
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        self.send("Page.navigate", {"url": url})

    def js(self, expression):
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:80]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))

    def close(self):
        try:
            self.send("Browser.close", browser=True, timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.w)
        os.close(self.r)


# Page helpers: the projector is Polymer in shadow DOM, in an iframe (TensorBoard's plugin frame) in an iframe.
DEEP = r"""
window.deepAll = function (selector) {
  const found = [];
  (function walk(node) {
    if (node.nodeType === 1) {
      if (node.matches(selector)) found.push(node);
      if (node.shadowRoot) walk(node.shadowRoot);
      if (node.tagName === 'IFRAME') { try { if (node.contentDocument) walk(node.contentDocument); } catch (e) {} }
    }
    for (const child of node.childNodes) walk(child);
  })(document);
  return found;
};
window.deepText = function () {  // what a person reads: text nodes and the values shown in inputs
  const out = [];
  (function walk(node) {
    if (node.nodeType === 3) { const t = node.textContent.trim(); if (t) out.push(t); return; }
    if (node.nodeType === 1) {
      if (node.tagName === 'SCRIPT' || node.tagName === 'STYLE') return;
      if (node.tagName === 'INPUT' && node.value) out.push(node.value);
      if (node.shadowRoot) walk(node.shadowRoot);
      if (node.tagName === 'IFRAME') { try { if (node.contentDocument) walk(node.contentDocument); } catch (e) {} }
    }
    for (const child of node.childNodes) walk(child);
  })(document);
  return out.join('\n');
};
window.dataPanelInput = function (label) {  // the value a paper-dropdown-menu of the data panel shows
  const panel = deepAll('vz-projector-data-panel')[0];
  const menu = Array.from(panel.shadowRoot.querySelectorAll('paper-dropdown-menu')).find(m => m.label === label);
  return menu ? menu.value : null;
};
window.search = function (query) {  // type into the inspector's search box
  const box = deepAll('vz-projector-inspector-panel')[0].shadowRoot.querySelector('#search-box');
  const input = (box.shadowRoot || box).querySelector('paper-input');
  input.value = query;
  input.dispatchEvent(new Event('input'));
  return true;
};
"""


class TensorBoard:
    """``tensorboard --logdir`` on a free loopback port (127.0.0.1, port 0: the OS picks; TensorBoard says which)."""

    def __init__(self, logdir, log_path):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1", "--port", "0"]
        self.proc = subprocess.Popen(
            [*cmd, "--load_fast=false"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines, found = [], threading.Event()
        self.port = None

        def read():  # keep draining stderr: a full pipe would stall the server
            with open(log_path, "w", encoding="utf-8") as log:
                for line in self.proc.stderr:
                    log.write(line)
                    m = re.search(r"TensorBoard \S+ at http://127\.0\.0\.1:(\d+)/", line)
                    if m and self.port is None:
                        self.port = int(m.group(1))
                        found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(180):
            self.close()
            with open(log_path, encoding="utf-8") as f:
                raise AssertionError(f"TensorBoard did not start:\n{f.read()[-3000:]}")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _wait(browser, condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.js(condition)
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} did not appear in {timeout} s; the page shows:\n{browser.js('deepText()')[:3000]}")


@pytest.mark.slow
def test_the_projector_in_a_browser(exs, tmp_path):
    """What a person sees: TensorBoard's Projector tab lists both tensors, shows the points of the one selected,
    labels them by the token, finds a token by search, and selecting it shows its text."""
    binary = _chromium_binary()
    logdir = str(tmp_path / "logs")
    record = to_projector([exs["tokens"], exs["sentences"]], logdir, names=["tokens", "vectors"], max_points=60)
    by_tensor = {e["tensor_name"]: e for e in record["embeddings"]}
    meta = _metadata(logdir, "tokens")
    board = TensorBoard(logdir, str(tmp_path / "tensorboard.log"))
    browser = Chromium(binary, str(tmp_path / "profile"), open(tmp_path / "chromium.log", "w"))
    try:
        browser.open(f"http://127.0.0.1:{board.port}/#projector")
        _wait(browser, DEEP + "deepText().includes('Points:') && !!dataPanelInput('Label by')", 120, "the projector")
        text = browser.js("deepText()")
        assert "2 tensors found" in text
        assert all(name in text for name in by_tensor), text[:2000]
        selected = browser.js("dataPanelInput('2 tensors found')")  # the tensor menu's label says how many
        assert selected == record["embeddings"][0]["tensor_name"]  # the first (the menu sorts them by name)
        shown = by_tensor[selected]
        assert re.search(rf"Points:\s*{shown['points']}\s*\|?\s*Dimension:\s*16", text), text[-1500:]
        assert browser.js("dataPanelInput('Label by')") == "token"  # the first column of words
        token = max(set(meta["token"]), key=lambda t: (meta["token"].count(t), t))  # a label among the points
        browser.js(f"search({json.dumps(token)})")
        labels = _wait(browser, "deepAll('.matches-list .label').map(a => a.innerText)", 30, "search results")
        assert labels and all(token in label for label in labels)
        assert len(labels) == sum(token in t for t in meta["token"])
        first = next(i for i, t in enumerate(meta["token"]) if token in t)
        browser.js("deepAll('.matches-list .label')[0].click()")
        card = "deepAll('vz-projector-metadata-card').map(c => c.shadowRoot.textContent).join(' ')"
        card = _wait(browser, f"{card}.includes({json.dumps(meta['text'][first])}) && {card}", 30, "the point's card")
        expected = "".join(f"{c}{meta[c][first]}" for c in meta)  # every column, its name and value, in order
        assert re.sub(r"\s+", "", expected) in re.sub(r"\s+", "", card), card  # token cat id 3 text ... token_index 4
        time.sleep(2)  # the WebGL view draws the labels of the selection
        browser.screenshot(str(tmp_path / "projector.png"))
    finally:
        browser.close()
        board.close()
    with open(tmp_path / "projector.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    shutil.copy(tmp_path / "projector.png", "/tmp/projector_screenshot.png")
