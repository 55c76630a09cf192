"""The real download path over loopback: a local HTTP server serves Hub-format models the way tfhub.dev does
(a gzipped tarball for ?tf-hub-format=compressed) and hubembed loads them through tensorflow_hub's resolvers
into its cache; faults (a cut stream, truncated or corrupt archives, 404, a stalled server) give a clear error,
are retried where a retry can help, and never leave a cache folder that looks complete."""

import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest

import hubembed
from hubembed._hub import resolve
from hubembed.errors import DownloadError


def _tarball(folder):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(os.path.join(folder, name), arcname=name)
    return buf.getvalue()


class Hub:
    """A loopback model server. Paths: /<mode>/<name>; modes below; every request is counted."""

    def __init__(self, models):
        self.archives = {name: _tarball(path) for name, path in models.items()}
        self.requests, self.fail_first, self.delay = [], {}, 0.0
        self.released = threading.Event()  # set: a "slow" request stops waiting at once
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                hub.requests.append(self.path)
                path, _, query = self.path.partition("?")
                mode, name = path.strip("/").split("/", 1)
                if mode == "404" or name not in hub.archives:
                    return self.send_error(404, "no such model")
                if query != "tf-hub-format=compressed":  # tfhub.dev serves an HTML page without it
                    return self.send_error(400, "expected ?tf-hub-format=compressed")
                data = hub.archives[name]
                if mode == "slow":
                    hub.released.wait(hub.delay)
                if mode == "flaky" and hub.fail_first.get(name, 0) > 0:
                    hub.fail_first[name] -= 1
                    mode = "cut"
                if mode == "truncated":
                    data = data[: len(data) // 2]
                elif mode == "corrupt":
                    data = bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8))
                elif mode == "nomodel":
                    data = _tarball(os.path.dirname(hub_nomodel_dir))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-tar")
                self.send_header("Content-Length", str(len(hub.archives[name]) if mode == "cut" else len(data)))
                self.end_headers()
                if mode == "cut":  # the connection closes mid-stream
                    self.wfile.write(data[: len(data) // 3])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, mode, name="tiny"):
        return sum(1 for r in self.requests if r.startswith(f"/{mode}/{name}"))


hub_nomodel_dir = ""


@pytest.fixture()
def hub(tiny_models, tmp_path, monkeypatch):
    global hub_nomodel_dir
    hub_nomodel_dir = os.path.join(tmp_path, "nomodel", "x")
    os.makedirs(hub_nomodel_dir)
    open(os.path.join(os.path.dirname(hub_nomodel_dir), "README.md"), "w").write("not a model")
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub_modules"))
    monkeypatch.setenv("HUBEMBED_DOWNLOAD_BACKOFF", "0.05")
    server = Hub({"tiny": tiny_models["tf2_dict"]})
    yield server
    server.released.set()
    server.server.shutdown()


def _no_trace(handle):
    folder = resolve.cache_folder(handle)
    assert not os.path.exists(folder) or not os.listdir(folder), os.listdir(folder)
    assert not os.path.exists(folder + ".lock")
    parent = os.path.dirname(folder)
    assert not [f for f in (os.listdir(parent) if os.path.exists(parent) else []) if f.endswith(".tmp")]


def test_a_model_downloads_through_tensorflow_hub_into_the_cache(hub, tiny_models, tiny_encoders):
    handle = f"{hub.url}/ok/tiny"
    enc = hubembed.load(handle)
    assert hub.requests == ["/ok/tiny?tf-hub-format=compressed"]
    folder = resolve.cache_folder(handle)
    assert os.path.isfile(os.path.join(folder, "saved_model.pb")) and folder.startswith(os.environ["TFHUB_CACHE_DIR"])
    texts = ["hello world", "the cat sat on the mat"]
    np.testing.assert_allclose(enc.embed(texts), tiny_encoders["tf2_dict"].embed(texts), atol=1e-6)
    hubembed.load(handle)  # from the cache: no second request
    assert len(hub.requests) == 1


def test_a_cut_stream_is_retried_and_then_loads(hub):
    hub.fail_first["tiny"] = 2
    handle = f"{hub.url}/flaky/tiny"
    hubembed.load(handle)
    assert hub.count("flaky") == 3


@pytest.mark.parametrize("mode", ["cut", "truncated", "corrupt", "nomodel"])
def test_broken_archives_fail_clearly_after_retries_and_leave_no_trace(hub, mode):
    handle = f"{hub.url}/{mode}/tiny"
    with pytest.raises(DownloadError) as e:
        hubembed.load(handle)
    msg = str(e.value)
    assert (
        handle in msg
        and resolve.cache_folder(handle) in msg
        and "3 attempts" in msg
        or (mode == "nomodel" and "holds no saved_model.pb" in msg)
    ), msg
    assert hub.count(mode) == 3
    _no_trace(handle)


def test_a_404_is_not_retried(hub):
    handle = f"{hub.url}/404/tiny"
    with pytest.raises(DownloadError, match="(?s)1 attempt, .*HTTP Error 404"):
        hubembed.load(handle)
    assert hub.count("404") == 1
    _no_trace(handle)


@pytest.mark.slow
def test_a_stalled_server_times_out(hub, monkeypatch):
    """The server never answers (it would for 10 minutes): only the socket timeout can end each attempt, so the
    error itself shows the timeout working, whatever the machine's speed (no wall-clock bound in the test)."""
    monkeypatch.setenv("HUBEMBED_DOWNLOAD_TIMEOUT", "1")
    monkeypatch.setenv("HUBEMBED_DOWNLOAD_ATTEMPTS", "2")
    hub.delay = 600.0
    handle = f"{hub.url}/slow/tiny"
    with pytest.raises(DownloadError, match="(?s)2 attempts, timeout 1 s.*timed out"):
        hubembed.load(handle)
    assert hub.count("slow") == 2
    _no_trace(handle)


@pytest.mark.slow
def test_two_processes_loading_the_same_handle_at_once_both_succeed(hub):
    hub.delay = 1.0  # both processes are waiting on the download at the same time
    handle = f"{hub.url}/slow/tiny"
    code = (
        "import sys, hubembed; v = hubembed.load(sys.argv[1]).embed(['hello world']); print(round(float(v.sum()), 5))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, handle], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert outs[0][0] == outs[1][0]
    assert os.path.isfile(os.path.join(resolve.cache_folder(handle), "saved_model.pb"))
    assert 1 <= hub.count("slow") <= 2  # tensorflow_hub's lock file: usually one download, the other waits
