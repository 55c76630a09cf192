"""int8: an encoder converted once to a TFLite model with dynamic-range quantization, cached by its weights.

The encoder's own graph (the Hub SavedModel's; the Model Garden rebuild's for TF1 modules and
``backend="garden"``) is traced over ``[None, None]`` int32 inputs, saved, and converted by TensorFlow's
TFLite converter with ``Optimize.DEFAULT``: the kernel of every dense layer is stored as int8 with one scale
per output channel, and at run time each row of activations is quantized on the fly (asymmetric, per row),
so the matrix products run in int8 (XNNPACK's kernels; VNNI where the CPU has it) and accumulate in int32.
The embedding tables, layer norms, softmax and the attention products stay float32. LiteRT
(``ai_edge_litert``, the successor of ``tf.lite.Interpreter``) runs it, resizing its inputs per batch.

The file is written once to ``$HUBEMBED_CACHE/int8/<fingerprint>-<source>-<format>.tflite`` (``write_atomic``:
two processes converting at once both write the same bytes) with a JSON sidecar that records the source,
the outputs and the agreement with the float32 model measured on probe texts at conversion.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from typing import Dict, Optional

from hubembed._formats import export as export_format
from hubembed._util import cache_root, tf_logging_at_warning, write_atomic
from hubembed.errors import FormatError, StaleCacheError

log = logging.getLogger("hubembed")

FORMAT = "hubembed-int8/1"
SIGNATURE = "serving_default"


def cache_dir() -> str:
    """The folder int8 models are kept in: ``$HUBEMBED_CACHE/int8``."""
    return os.path.join(cache_root(), "int8")


def cache_path(weights_sha256: str, source: str) -> str:
    """Where the int8 model of these weights, converted from ``source`` ("hub" or "garden"), is kept."""
    version = FORMAT.split("/")[1]
    return os.path.join(cache_root(), "int8", f"{weights_sha256[:32]}-{source}-v{version}.tflite")


def layer_key(i: int) -> str:
    return f"layer_{i:03d}"


def outputs_function(backend):
    """A ``tf.function`` over ``[None, None]`` int32 inputs returning the backend's float32 outputs by name:
    ``sequence_output``, ``pooled_output`` (when the model has one) and ``layer_000``... (when it gives them)."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec, spec], autograph=False)
    def encoder(input_word_ids, input_mask, input_type_ids):
        out = backend(input_word_ids, input_mask, input_type_ids)
        named = {"sequence_output": out.sequence}
        if out.pooled is not None:
            named["pooled_output"] = out.pooled
        for i, x in enumerate(out.layers or []):
            named[layer_key(i)] = x
        return named

    return encoder


def convert(backend, trackable, path: str) -> None:
    """Convert ``backend`` (its variables tracked by ``trackable``) to an int8 TFLite file at ``path``.

    Raises:
        FormatError: the converter cannot express the graph in TFLite's built-in ops (the op is named).
    """
    import tensorflow as tf

    fn = outputs_function(backend)
    root = tf.Module()
    root.model = trackable
    root.encoder = fn
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="hubembed-int8-") as tmp:
        export_format.save(tmp, root, fn.get_concrete_function())
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[SIGNATURE])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        try:
            with tf_logging_at_warning():
                blob = converter.convert()
        except Exception as e:  # the converter raises its own ConverterError with MLIR diagnostics
            raise FormatError(f"the encoder could not be converted to int8 TFLite: {first_error(e)}") from e
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, blob, "HUBEMBED_CACHE must be a writable folder")
    log.info("quantized the encoder to int8 in %.1f s (%.1f MB): %s", time.time() - t0, len(blob) / 1e6, path)


def first_error(e: Exception) -> str:
    """The converter's first diagnostic (e.g. "'tf.StridedSlice' op is neither a custom op nor a flex op")."""
    text = str(e)
    found = re.search(r"error: (?:loc\([^\n]*?\): )?([^\n]+)", text)
    return (found.group(1) if found else text.splitlines()[0] if text else type(e).__name__)[:400]


def sidecar(path: str) -> str:
    return path[: -len(".tflite")] + ".json"


def write_record(path: str, record: dict) -> None:
    data = json.dumps({"format": FORMAT, **record}, indent=1, sort_keys=True).encode("utf-8")
    write_atomic(sidecar(path), data, "HUBEMBED_CACHE must be a writable folder")


def files_key(saved_model: str) -> Optional[str]:
    """A content key of a SavedModel folder read without TensorFlow: sha256 of ``saved_model.pb`` and
    ``variables/variables.index`` (which holds a checksum of every variable's bytes), or None when it has neither.
    It leads a later load with ``quantize="int8"`` to the int8 model converted from the same files, without
    restoring the float32 model to fingerprint its weights."""
    h = hashlib.sha256()
    found = False
    for name in ("saved_model.pb", os.path.join("variables", "variables.index")):
        try:
            with open(os.path.join(saved_model, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read())
                found = True
        except OSError:
            continue
    return h.hexdigest() if found else None


def _files_record(key: str) -> str:
    return os.path.join(cache_root(), "int8", f"files-{key[:32]}.json")


def remember_files(saved_model: str, weights_sha256: str, audited: bool) -> None:
    """Record which weights the SavedModel folder's files hold (``files_key``), and whether they passed the audit."""
    key = files_key(saved_model)
    if key is None:
        return
    record = {"format": FORMAT, "files_key": key, "weights_sha256": weights_sha256, "audited": bool(audited)}
    path = _files_record(key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, json.dumps(record, sort_keys=True).encode("utf-8"), "HUBEMBED_CACHE must be a writable folder")


def weights_of_files(saved_model: str) -> Optional[Dict]:
    """What ``remember_files`` recorded for these files (``weights_sha256``, ``audited``), or None."""
    key = files_key(saved_model)
    if key is None:
        return None
    try:
        with open(_files_record(key), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if record.get("format") == FORMAT and record.get("files_key") == key else None


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_cached(path: str, record: Dict, weights_sha256: str) -> None:
    """The cached int8 file is the one converted from these weights, and intact (its sha256, when recorded).

    Raises:
        StaleCacheError: it was converted from other weights, or its bytes changed since; the message says what to
            delete (the next load converts again).
    """
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size, weights_sha256)
    if key in _CHECKED:
        return
    remove = f"delete it to convert again: rm {path} {sidecar(path)}"
    if record.get("weights_sha256") not in (None, weights_sha256):
        raise StaleCacheError(
            f"the cached int8 model {path} was converted from other weights (fingerprint "
            f"{str(record['weights_sha256'])[:16]}..., these are {weights_sha256[:16]}...): {remove}"
        )
    expected = record.get("tflite_sha256")
    if expected is not None and file_sha256(path) != expected:
        raise StaleCacheError(f"the cached int8 model {path} is damaged (its sha256 is not the one recorded): {remove}")
    _CHECKED.add(key)


_CHECKED: set = set()  # (path, mtime, size, weights) already checked by this process


def read_record(path: str) -> Optional[Dict]:
    """The sidecar of a converted file, or None when either is missing or the format is another's."""
    try:
        with open(sidecar(path), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if record.get("format") == FORMAT and os.path.exists(path) else None
