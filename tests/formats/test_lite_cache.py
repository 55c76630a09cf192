"""The int8 cache (``hubembed._formats.lite``): a damaged file or one converted from other weights is refused with
what to delete, before any work; a model outside the registry finds its int8 file by the key of its files."""

import json
import os
import shutil

import numpy as np
import pytest

import hubembed
from hubembed._formats import lite
from hubembed.errors import StaleCacheError


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_models):
    """A HUBEMBED_CACHE holding the tiny model's int8 conversion (made once for the module)."""
    cache = str(tmp_path_factory.mktemp("int8-cache"))
    old = os.environ["HUBEMBED_CACHE"]
    os.environ["HUBEMBED_CACHE"] = cache
    try:
        enc = hubembed.load(tiny_models["tf2_dict"], quantize="int8")
    finally:
        os.environ["HUBEMBED_CACHE"] = old
    return cache, enc


@pytest.fixture
def private_cache(converted, tmp_path, monkeypatch, tiny_models):
    """A copy of that cache, this test's own (the tests damage it)."""
    cache, enc = converted
    shutil.copytree(cache, tmp_path / "cache")
    monkeypatch.setenv("HUBEMBED_CACHE", str(tmp_path / "cache"))
    (tflite,) = [os.path.join(lite.cache_dir(), n) for n in os.listdir(lite.cache_dir()) if n.endswith(".tflite")]
    return tiny_models["tf2_dict"], enc, tflite


def test_the_files_key_leads_to_the_int8_model_and_the_record_holds_its_sha256(private_cache):
    path, enc, tflite = private_cache
    record = lite.read_record(tflite)
    assert record["tflite_sha256"] == lite.file_sha256(tflite) and record["weights_sha256"] == enc.weights_sha256
    assert lite.weights_of_files(path) == {
        "format": lite.FORMAT,
        "files_key": lite.files_key(path),
        "weights_sha256": enc.weights_sha256,
        "audited": True,  # a model outside the registry is audited before it loads (trust="registry")
    }
    again = hubembed.load(path, quantize="int8")
    assert again.engine.obj is None  # the float32 SavedModel was not restored
    texts = ["a short text", "another one, a little longer than the first"]
    assert np.array_equal(again.embed(texts), enc.embed(texts))


def test_a_damaged_int8_file_is_refused_with_what_to_delete(private_cache):
    path, _, tflite = private_cache
    with open(tflite, "r+b") as f:
        f.seek(os.path.getsize(tflite) // 2)
        f.write(b"\0" * 64)
    with pytest.raises(StaleCacheError, match="damaged") as e:
        hubembed.load(path, quantize="int8")
    assert f"rm {tflite}" in str(e.value)


def test_an_int8_file_of_other_weights_is_refused(private_cache):
    path, _, tflite = private_cache
    record = json.load(open(lite.sidecar(tflite), encoding="utf-8"))
    record["weights_sha256"] = "0" * 64
    with open(lite.sidecar(tflite), "w", encoding="utf-8") as f:
        json.dump(record, f)
    with pytest.raises(StaleCacheError, match="other weights"):
        hubembed.load(path, quantize="int8")


def test_other_files_do_not_find_the_int8_model(private_cache, tmp_path):
    path, _, _ = private_cache
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    assert lite.weights_of_files(str(copy)) is not None  # the same bytes: the same key
    with open(copy / "saved_model.pb", "ab") as f:
        f.write(b"\0")
    assert lite.weights_of_files(str(copy)) is None
