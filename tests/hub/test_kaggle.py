"""Kaggle Models handles over loopback, as the tfhub.dev path is tested in test_download.py.

kagglehub 1.0.3 reads no endpoint variable (its config.py defines DEFAULT_KAGGLE_API_ENDPOINT and never uses it):
kagglesdk picks the API host from KAGGLE_API_ENVIRONMENT among fixed ones (LOCALHOST: http://localhost), and
requests sends plain-HTTP requests through $HTTP_PROXY. So the loopback server below is that proxy and receives
kagglehub's requests with their absolute URLs. What kagglehub asks for a model variation (logged against this
server):

* ``POST http://localhost/api/v1/models.ModelApiService/GetModelInstance`` (a handle without a version only)
  ``{"ownerSlug", "modelSlug", "framework": "MODEL_FRAMEWORK_TENSOR_FLOW_2", "instanceSlug"}`` ->
  ``{"versionNumber": n}``;
* ``POST .../ListModelInstanceVersionFiles`` (the same + ``versionNumber``, ``pageSize: 25``) ->
  ``{"files": [{"name", "size"}], "nextPageToken"}``;
* up to 25 files: ``POST .../DownloadModelInstanceVersion`` (+ ``"path"``) per file, 8 in parallel, each answered
  with a redirect to storage (as Kaggle's to GCS) that requests follows with a GET; more (a page token): one
  ``DownloadModelInstanceVersion`` without a path, for an archive kagglehub unpacks;
* then kagglehub writes ``<version>.complete`` beside ``<KAGGLEHUB_CACHE>/models/<o>/<m>/<f>/<v>/<version>/``.

Without kagglehub, tensorflow_hub is given ``https://www.kaggle.com/models/<o>/<m>/<f>/<v>/<n>`` and GETs it with
``?tf-hub-format=compressed``; here ``kaggle.WEB`` points that host at the loopback server.
"""

import http.server
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse

import numpy as np
import pytest

import hubembed
from hubembed._hub import kaggle, resolve
from hubembed.errors import DownloadError, InputError, MissingDependencyError, NotASavedModelError

OWNER, MODEL, FRAMEWORK, VARIATION = "owner", "tiny", "tensorFlow2", "default"
SLUG = f"{OWNER}/{MODEL}/{FRAMEWORK}/{VARIATION}"
TEXTS = ["hello world", "the cat sat on the mat"]
API = "/api/v1/models.ModelApiService/"


def _tarball(folder):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(os.path.join(folder, name), arcname=name)
    return buf.getvalue()


def _files(folder):
    return sorted(
        os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/") for d, _, fs in os.walk(folder) for f in fs
    )


class Kaggle:
    """Kaggle's model API and its storage, as kagglehub 1.0.3 calls them, behind an HTTP proxy address.

    ``models``: {(owner, model): {version: folder}} (framework tensorFlow2, variation default). ``faults``:
    {kind: [action, ...]} consumed one per request of that kind (get, list, download, file, hub): an HTTP status,
    or "cut" (a stream that closes a third of the way). ``private``: models that answer 403 without credentials.
    ``archive``: models listed with a page token (more than 25 files), downloaded as one archive.
    """

    def __init__(self, models):
        self.models = models
        self.requests, self.faults, self.private, self.archive = [], {}, set(), set()
        self.auth = []  # the Authorization header of every API request (None: none)
        self.hold = threading.Event()
        self.hold.set()  # cleared: storage GETs wait until it is set again
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                server.api(self, urllib.parse.urlsplit(self.path).path, body)

            def do_GET(self):
                server.get(self, urllib.parse.urlsplit(self.path))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def count(self, kind):
        return sum(1 for k, _ in self.requests if k == kind)

    def _fault(self, kind):
        queue = self.faults.get(kind) or []
        return queue.pop(0) if queue else None

    def _versions(self, body):
        if body.get("framework") != "MODEL_FRAMEWORK_TENSOR_FLOW_2" or body.get("instanceSlug") != VARIATION:
            return None
        return self.models.get((body.get("ownerSlug"), body.get("modelSlug")))

    def api(self, h, path, body):
        kind = {"GetModelInstance": "get", "ListModelInstanceVersionFiles": "list"}.get(
            path[len(API) :], "download" if path == API + "DownloadModelInstanceVersion" else "other"
        )
        self.requests.append((kind, body.get("path")))
        self.auth.append(h.headers.get("Authorization"))
        versions, fault = self._versions(body), self._fault(kind)
        if fault is not None:
            return _error(h, fault)
        if versions is None or (kind != "get" and body.get("versionNumber") not in versions):
            return _error(h, 404)
        if (body["ownerSlug"], body["modelSlug"]) in self.private and not h.headers.get("Authorization"):
            return _error(h, 403)
        version = body.get("versionNumber")
        if kind == "get":
            return _json(h, {"versionNumber": max(versions)})
        if kind == "list":
            names = _files(versions[version])
            more = (body["ownerSlug"], body["modelSlug"]) in self.archive
            return _json(h, {"files": [{"name": n} for n in names[:25]], "nextPageToken": "next" if more else ""})
        if kind == "download":
            target = f"http://storage.test/{body['ownerSlug']}/{body['modelSlug']}/{version}/{body.get('path', '')}"
            h.send_response(302)
            h.send_header("Location", target)
            h.send_header("Content-Length", "0")
            return h.end_headers()
        return _error(h, 404)

    def get(self, h, url):
        if url.netloc == "storage.test":
            self.requests.append(("file", url.path))
            owner, model, version, path = (url.path.lstrip("/").split("/", 3) + [""])[:4]
            self.hold.wait(120)
            folder = self.models[(owner, model)][int(version)]
            data = _tarball(folder) if not path else open(os.path.join(folder, path), "rb").read()
            return _send(h, data, self._fault("file"))
        parts = url.path.strip("/").split("/")  # tensorflow_hub: /models/<o>/<m>/<f>/<v>/<n>?tf-hub-format=compressed
        self.requests.append(("hub", f"{url.path}?{url.query}"))
        versions = self.models.get(tuple(parts[1:3]))
        if len(parts) != 6 or parts[0] != "models" or url.query != "tf-hub-format=compressed" or not versions:
            return _error(h, 404)
        return _send(h, _tarball(versions[int(parts[5])]), self._fault("hub"))


def _json(h, obj):
    data = json.dumps(obj).encode()
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def _error(h, status):
    data = json.dumps({"code": status, "message": f"loopback Kaggle: HTTP {status}"}).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def _send(h, data, fault):
    if isinstance(fault, int):
        return _error(h, fault)
    h.send_response(200)
    h.send_header("Content-Type", "application/octet-stream")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    if fault == "cut":  # the connection closes mid-stream
        h.wfile.write(data[: len(data) // 3])
        h.wfile.flush()
        h.connection.shutdown(2)
        return
    h.wfile.write(data)


@pytest.fixture()
def server(tiny_models, tmp_path, monkeypatch):
    """The loopback Kaggle with owner/tiny at versions 1 and 2, and an environment where kagglehub reaches only it
    and keeps its cache and credentials in tmp_path."""
    folder = tiny_models["tf2_dict"]
    s = Kaggle({(OWNER, MODEL): {1: folder, 2: folder}, (OWNER, "private"): {1: folder}})
    s.private.add((OWNER, "private"))
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_KERNEL_RUN_TYPE", "TBE_RUNTIME_ADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", s.url)
    monkeypatch.setenv("http_proxy", s.url)
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "home" / ".kaggle"))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub_modules"))
    monkeypatch.setenv("HUBEMBED_DOWNLOAD_BACKOFF", "0.05")
    yield s
    s.hold.set()
    s.server.shutdown()


def _version_folder(version, model=MODEL):
    return os.path.join(os.environ["KAGGLEHUB_CACHE"], "models", OWNER, model, FRAMEWORK, VARIATION, str(version))


def _no_trace(version, model=MODEL):
    folder = _version_folder(version, model)
    assert not os.path.exists(folder) and not os.path.exists(folder + ".complete"), folder
    assert not os.path.exists(folder + ".archive")


# -- handles ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "handle,slug",
    [
        ("kaggle:google/bert/tensorFlow2/en-uncased/3", "google/bert/tensorFlow2/en-uncased/3"),
        ("KAGGLE:google/bert/tensorFlow2/en-uncased", "google/bert/tensorFlow2/en-uncased"),
        ("https://www.kaggle.com/models/google/bert/TensorFlow2/en-uncased/3", "google/bert/TensorFlow2/en-uncased/3"),
        ("https://kaggle.com/models/google/bert/tensorFlow2/en-uncased/", "google/bert/tensorFlow2/en-uncased"),
        (
            "https://www.kaggle.com/models/google/bert/frameworks/tensorFlow2/variations/en-uncased/versions/3?x=1",
            "google/bert/tensorFlow2/en-uncased/3",
        ),
        (
            "https://www.kaggle.com/models/google/bert/frameworks/tensorFlow2/variations/en-uncased",
            "google/bert/tensorFlow2/en-uncased",
        ),
    ],
)
def test_the_handle_forms_name_one_variation(handle, slug):
    h = kaggle.parse(handle)
    assert kaggle.is_handle(handle)
    assert h.slug == slug
    # without kagglehub, tensorflow_hub is given the URL form (what Kaggle's own hub.load snippets use)
    assert h.url == f"https://www.kaggle.com/models/{h.slug}"


def test_other_kaggle_addresses_are_not_model_handles():
    assert not kaggle.is_handle("https://www.kaggle.com/datasets/owner/data")
    assert not kaggle.is_handle("https://tfhub.dev/tensorflow/bert_en_uncased_L-12_H-768_A-12/4")
    assert not kaggle.is_handle("./kaggle:model")


@pytest.mark.parametrize(
    "handle,match",
    [
        (f"kaggle:{OWNER}/{MODEL}", "names a Kaggle model, not one of its variations"),
        (f"https://www.kaggle.com/models/{OWNER}/{MODEL}", "names a Kaggle model, not one of its variations"),
        (f"kaggle:{OWNER}/{MODEL}/{FRAMEWORK}", r"this one has 3 part\(s\)"),
        (f"kaggle:{SLUG}/1/2", r"this one has 6 part\(s\)"),
        (f"kaggle:{OWNER}//{FRAMEWORK}/{VARIATION}/1", "a Kaggle model handle is kaggle:<owner>"),
        (f"kaggle:{SLUG}/latest", "the version of a Kaggle model is a number from 1, not 'latest'"),
        (f"kaggle:{SLUG}/0", "a number from 1"),
        (f"kaggle:{OWNER}/{MODEL}/tensorflow3/{VARIATION}/1", "'tensorflow3' is not a Kaggle model framework"),
    ],
)
def test_a_malformed_handle_fails_before_any_network(server, handle, match):
    with pytest.raises(InputError, match=match) as e:
        hubembed.load(handle)
    assert handle in str(e.value)
    assert server.requests == []


# -- with kagglehub ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("packed", [False, True], ids=["files", "archive"])
def test_url_and_short_handles_load_through_kagglehub_and_embed_as_the_folder(
    server, tiny_models, tiny_encoders, packed
):
    if packed:
        server.archive.add((OWNER, MODEL))
    n_files = len(_files(tiny_models["tf2_dict"]))
    enc = hubembed.load(f"https://www.kaggle.com/models/{SLUG}/1")
    kinds = sorted(k for k, _ in server.requests)
    assert kinds == sorted(["list"] + ["download", "file"] * (1 if packed else n_files)), server.requests
    folder = _version_folder(1)
    assert os.path.isfile(os.path.join(folder, "saved_model.pb")) and os.path.isfile(folder + ".complete")
    assert resolve.resolve(f"kaggle:{SLUG}/1").path == folder
    np.testing.assert_allclose(enc.embed(TEXTS), tiny_encoders["tf2_dict"].embed(TEXTS), atol=1e-6)
    before = len(server.requests)
    again = hubembed.load(f"kaggle:{SLUG}/1")  # the other form, from kagglehub's cache: not one request
    assert len(server.requests) == before
    np.testing.assert_allclose(again.embed(TEXTS), enc.embed(TEXTS), atol=1e-6)
    assert not [f for f in os.listdir(os.path.dirname(folder)) if f.endswith(".archive")]


def test_a_handle_without_a_version_loads_the_latest_and_asks_only_for_its_number_again(server):
    r = resolve.resolve(f"kaggle:{SLUG}")
    assert r.path == _version_folder(2) and r.handle == f"kaggle:{SLUG}"
    assert server.requests[0] == ("get", None) and server.count("list") == 1
    before = len(server.requests)
    assert resolve.resolve(f"https://www.kaggle.com/models/{SLUG}").path == r.path
    assert server.requests[before:] == [("get", None)]


def test_credentials_are_kagglehubs_and_a_403_names_them(server, monkeypatch):
    handle = f"kaggle:{OWNER}/private/{FRAMEWORK}/{VARIATION}/1"
    with pytest.raises(DownloadError) as e:
        resolve.resolve(handle)
    msg = str(e.value)
    assert handle in msg and "(1 attempt)" in msg and "HTTP 403" in msg, msg
    assert "KAGGLE_USERNAME" in msg and "kagglehub.login()" in msg and "kaggle.json" in msg, msg
    assert server.count("list") == 1  # a 403 is not retried
    _no_trace(1, "private")
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    assert os.path.isfile(os.path.join(resolve.resolve(handle).path, "saved_model.pb"))
    assert server.auth[-1].startswith("Basic ")


def test_a_404_is_not_retried_and_says_what_to_check(server):
    handle = f"kaggle:{OWNER}/nosuch/{FRAMEWORK}/{VARIATION}/1"
    with pytest.raises(DownloadError) as e:
        hubembed.load(handle)
    msg = str(e.value)
    assert handle in msg and "(1 attempt)" in msg and "HTTP 404" in msg, msg
    assert (
        f"check owner, model, framework, variation and version on https://www.kaggle.com/models/{OWNER}/nosuch" in msg
    )
    assert os.environ["KAGGLEHUB_CACHE"] in msg and "nothing partial is left" in msg
    assert server.count("list") == 1
    _no_trace(1, "nosuch")


def test_a_500_is_retried_then_fails_clearly(server):
    server.faults["list"] = [500] * 3
    handle = f"kaggle:{SLUG}/1"
    with pytest.raises(DownloadError) as e:
        hubembed.load(handle)
    msg = str(e.value)
    assert handle in msg and "(3 attempts)" in msg and "Kaggle answered HTTP 500: retry later" in msg, msg
    assert server.count("list") == 3
    _no_trace(1)


def test_a_500_then_success_loads(server, tiny_encoders):
    server.faults["download"] = [503]
    enc = hubembed.load(f"kaggle:{SLUG}/1")
    assert server.count("list") == 2
    np.testing.assert_allclose(enc.embed(TEXTS), tiny_encoders["tf2_dict"].embed(TEXTS), atol=1e-6)


def test_a_cut_stream_fails_clearly_leaves_nothing_and_the_next_load_succeeds(server, monkeypatch, tiny_encoders):
    monkeypatch.setenv("HUBEMBED_DOWNLOAD_ATTEMPTS", "1")
    server.faults["file"] = ["cut"]
    handle = f"https://www.kaggle.com/models/{SLUG}/1"
    with pytest.raises(DownloadError) as e:
        hubembed.load(handle)
    msg = str(e.value)
    assert handle in msg and "(1 attempt)" in msg and "Check the network" in msg, msg
    assert "nothing of this variation is in kagglehub's cache" in msg
    _no_trace(1)
    enc = hubembed.load(handle)  # a new attempt, from scratch
    np.testing.assert_allclose(enc.embed(TEXTS), tiny_encoders["tf2_dict"].embed(TEXTS), atol=1e-6)
    assert os.path.isfile(_version_folder(1) + ".complete")


def test_a_cut_stream_is_retried_from_scratch(server, tiny_models):
    server.faults["file"] = ["cut"]  # one file of the first attempt's parallel downloads
    path = resolve.resolve(f"kaggle:{SLUG}/1").path
    names = _files(tiny_models["tf2_dict"])
    assert server.count("list") == 2 and server.count("file") == 2 * len(names)
    assert _files(path) == names
    for name in names:
        with open(os.path.join(path, name), "rb") as f, open(os.path.join(tiny_models["tf2_dict"], name), "rb") as g:
            assert f.read() == g.read(), name


def test_offline_an_unversioned_handle_points_at_the_cached_version(server, monkeypatch):
    resolve.resolve(f"kaggle:{SLUG}/1")
    monkeypatch.setenv("HUBEMBED_DOWNLOAD_ATTEMPTS", "1")
    server.faults["get"] = ["cut"]  # the question for the latest version goes unanswered
    with pytest.raises(DownloadError, match=f"load a cached version without asking Kaggle: kaggle:{SLUG}/1"):
        resolve.resolve(f"kaggle:{SLUG}")
    assert os.path.isfile(_version_folder(1) + ".complete")  # a complete version is kept


def test_a_variation_that_is_a_hubembed_convert_folder_pairs_its_preprocessor(server, tiny_models):
    server.models[(OWNER, "converted")] = {1: os.path.dirname(tiny_models["tf2_dict"])}  # encoder/ + preprocess/
    r = resolve.resolve(f"kaggle:{OWNER}/converted/{FRAMEWORK}/{VARIATION}/1")
    assert r.path == os.path.join(_version_folder(1, "converted"), "encoder")
    assert r.paired_preprocess == os.path.join(_version_folder(1, "converted"), "preprocess")


def test_a_variation_without_a_saved_model_is_not_one(server, tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "model.bin").write_bytes(b"weights")
    server.models[(OWNER, "torch")] = {1: str(tmp_path / "torch")}
    with pytest.raises(NotASavedModelError, match=r"models/owner/torch/tensorFlow2/default/1 is not a SavedModel"):
        resolve.resolve(f"kaggle:{OWNER}/torch/{FRAMEWORK}/{VARIATION}/1")


def test_a_kagglehub_older_than_1_0_is_named_before_any_network(server, monkeypatch):
    import kagglehub

    monkeypatch.setattr(kagglehub, "__version__", "0.3.13")
    with pytest.raises(MissingDependencyError, match=r"kagglehub 0.3.13 is installed.*pip install 'kagglehub>=1.0,<2'"):
        resolve.resolve(f"kaggle:{SLUG}/1")
    assert server.requests == []


def test_a_folder_a_killed_download_left_is_replaced(server, tiny_models, tiny_encoders):
    folder = _version_folder(1)  # files without kagglehub's completion marker, one of them cut short
    os.makedirs(os.path.join(folder, "variables"))
    src = os.path.join(tiny_models["tf2_dict"], "variables", "variables.data-00000-of-00001")
    with open(src, "rb") as f, open(os.path.join(folder, "variables", os.path.basename(src)), "wb") as g:
        g.write(f.read()[:100])
    enc = hubembed.load(f"kaggle:{SLUG}/1")
    assert server.count("file") == len(_files(tiny_models["tf2_dict"]))
    with open(os.path.join(folder, "variables", os.path.basename(src)), "rb") as g, open(src, "rb") as f:
        assert g.read() == f.read()
    np.testing.assert_allclose(enc.embed(TEXTS), tiny_encoders["tf2_dict"].embed(TEXTS), atol=1e-6)


# -- without kagglehub -------------------------------------------------------------------------------------------
@pytest.fixture()
def no_kagglehub(server, monkeypatch):
    """kagglehub cannot be imported (as when it is not installed), and the Kaggle host is the loopback server."""
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # `import kagglehub` raises ImportError
    monkeypatch.setattr(kaggle, "_said_fallback", False)
    monkeypatch.setattr(kaggle, "WEB", server.url)
    return server


def test_without_kagglehub_tensorflow_hub_downloads_the_url_form(no_kagglehub, tiny_encoders, caplog):
    server = no_kagglehub
    with caplog.at_level(logging.WARNING, logger="hubembed"):
        enc = hubembed.load(f"kaggle:{SLUG}/1")
        again = resolve.resolve(f"https://www.kaggle.com/models/{SLUG}/1")  # the same URL, so the same cache
    assert server.requests == [("hub", f"/models/{SLUG}/1?tf-hub-format=compressed")]
    assert again.path == resolve.cache_folder(f"{server.url}/models/{SLUG}/1")
    assert again.path.startswith(os.environ["TFHUB_CACHE_DIR"])
    said = [r.getMessage() for r in caplog.records if "kagglehub is not importable" in r.getMessage()]
    assert len(said) == 1 and "pip install 'hubembed[kaggle]'" in said[0]
    np.testing.assert_allclose(enc.embed(TEXTS), tiny_encoders["tf2_dict"].embed(TEXTS), atol=1e-6)
    assert not os.path.exists(os.environ["KAGGLEHUB_CACHE"])


def test_without_kagglehub_a_handle_needs_its_version(no_kagglehub):
    with pytest.raises(DownloadError, match=r"names no version(?s:.*)pip install 'hubembed\[kaggle\]'"):
        resolve.resolve(f"kaggle:{SLUG}")
    assert no_kagglehub.requests == []


def test_without_kagglehub_a_failed_download_names_the_handle_and_the_fix(no_kagglehub):
    handle = f"kaggle:{OWNER}/nosuch/{FRAMEWORK}/{VARIATION}/1"
    with pytest.raises(DownloadError) as e:
        resolve.resolve(handle)
    msg = str(e.value)
    assert handle in msg and "HTTP Error 404" in msg and "(1 attempt," in msg, msg
    assert "pip install 'hubembed[kaggle]'" in msg
    assert not os.path.exists(resolve.cache_folder(f"{no_kagglehub.url}/models/{OWNER}/nosuch/{FRAMEWORK}/x/1"))


# -- processes ---------------------------------------------------------------------------------------------------
SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import hubembed
v = hubembed.load(sys.argv[1]).embed(["hello world"])
print(round(float(v.sum()), 5))
"""


def _wait_for(predicate, what, timeout=300):
    t0 = time.time()
    while not predicate():
        assert time.time() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_process_waits_for_the_first_download_and_stdout_stays_clean(server, tiny_models):
    """The first process holds the variation's lock while storage answers nothing; the second says it waits; then
    storage answers: one download in all, both processes load it, and kagglehub's log is not on their stdout."""
    handle = f"kaggle:{SLUG}/1"
    server.hold.clear()
    run = [sys.executable, "-c", SCRIPT, handle]
    first = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: server.count("file") > 0 or first.poll() is not None, "the first download")
    second = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waited = []

    def read():
        for line in second.stderr:
            waited.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _wait_for(lambda: any("waiting for another process" in x for x in waited) or second.poll() is not None, "a wait")
    server.hold.set()
    outs = [first.communicate(timeout=600), second.communicate(timeout=600)]
    reader.join(60)
    assert first.returncode == 0 and second.returncode == 0, [outs[0][1][-2000:], "".join(waited)[-2000:]]
    assert any("waiting for another process that is downloading" in x for x in waited), "".join(waited)[-2000:]
    assert outs[0][0] == outs[1][0] and len(outs[0][0].splitlines()) == 1, outs  # nothing but the number
    assert server.count("download") == len(_files(tiny_models["tf2_dict"])) == server.count("file")
