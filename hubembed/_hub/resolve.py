"""Resolve a handle to a local folder and load it: the only module that imports tensorflow_hub.

Handles, in the order they are tried:

1. a registry name (``"minilm"``, ``"bert_en_uncased_L-12_H-768_A-12"``) or a
   tfhub.dev handle the registry knows: the registry entry says where it lives;
2. a Kaggle Models handle (``kaggle:<owner>/<model>/<framework>/<variation>[/<version>]``, or the same under
   ``https://www.kaggle.com/models/``): ``kaggle.py`` (kagglehub's cache; tensorflow_hub's resolver without it);
3. a URL (``https://tfhub.dev/...``, ``gs://...``): tensorflow_hub's own resolvers download it into
   ``$TFHUB_CACHE_DIR`` (default ``<tmp>/tfhub_modules``);
4. an existing local folder (a ``hubembed export`` folder among them: ``Resolved.export`` holds its record).

A cache folder that exists but holds no model (tensorflow/hub #882: a purged
temp dir leaves ``.../tfhub_modules/<hash>`` behind) is reported with the
folder to delete, instead of TensorFlow's "SavedModel file does not exist".
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import socket
import time
import urllib.error
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Optional, Tuple

from hubembed import _util, registry
from hubembed._formats import export as export_format
from hubembed._hub import audit as graph_audit
from hubembed._hub import embedded
from hubembed._util import env_number
from hubembed.errors import (
    DownloadError,
    InputError,
    MissingDependencyError,
    ModelNotFoundError,
    NotASavedModelError,
    StaleCacheError,
    UntrustedModelError,
)

_URL = re.compile(r"^(https?|gs)://", re.I)
MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


@dataclass
class Resolved:
    """Where a handle led: the local (or gs://) folder, and the registry entry if any."""

    handle: str
    path: str
    entry: Optional[registry.Entry] = None
    # A hubembed conversion folder (encoder/ + preprocess/) found at a local path.
    paired_preprocess: Optional[str] = None
    # A hubembed export (``Encoder.export``): its hubembed.json. Not an encoder: strings in, vectors out.
    export: Optional[dict] = None


def _hub() -> ModuleType:
    import tensorflow_hub as hub  # imports pkg_resources: needs setuptools<81

    return hub


def is_url(handle: str) -> bool:
    return bool(_URL.match(handle))


def hub_cache_dir() -> str:
    """The folder tensorflow_hub caches downloads in ($TFHUB_CACHE_DIR or <tmp>/tfhub_modules)."""
    from tensorflow_hub import resolver

    return resolver.tfhub_cache_dir(use_temp=True)


def cache_folder(handle: str) -> str:
    """The cache folder tensorflow_hub uses for ``handle`` (sha1 of the handle string)."""
    return os.path.join(hub_cache_dir(), hashlib.sha1(handle.encode("utf8")).hexdigest())


def holds_model(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in MODEL_FILES)


def check_cache_folder(handle: str, folder: str) -> None:
    """Raise StaleCacheError if ``folder`` exists with content but holds no model."""
    if os.path.isdir(folder) and os.listdir(folder) and not holds_model(folder):
        raise StaleCacheError(
            f"the tensorflow_hub cache folder for {handle} exists but holds no complete model "
            f"(no saved_model.pb): {folder}\n"
            f"It is left over from an interrupted download or a purged temp dir. Delete it and retry:\n"
            f"    rm -rf {folder}\n"
            f"(set TFHUB_CACHE_DIR to a folder that is not cleaned up to avoid this)"
        )


def resolve(handle: str) -> Resolved:
    """Resolve ``handle`` to a folder with a SavedModel (downloading if needed)."""
    if not isinstance(handle, str) or not handle.strip():
        raise InputError(f"a model handle must be a non-empty string, got {handle!r}")
    handle = handle.strip()
    from hubembed._hub import kaggle  # (builds on this module's download helpers)

    if kaggle.is_handle(handle):  # its folder is read as a local one (a `hubembed convert` layout included)
        return dataclasses.replace(_resolve_local(kaggle.resolve(handle)), handle=handle)
    entry = registry.find(handle)
    if entry is not None and entry.embedded:
        return Resolved(handle, embedded.path(entry), entry)
    if entry is not None and not is_url(handle):
        # A registry name: download its canonical handle.
        return Resolved(handle, _resolve_remote(entry.handle), entry)
    if is_url(handle):
        return Resolved(handle, _resolve_remote(handle), entry)
    return _resolve_local(handle)


def _download_settings() -> Tuple[int, float, float]:
    """(attempts, first backoff seconds, socket timeout seconds), from HUBEMBED_DOWNLOAD_* if set."""
    return (
        int(env_number("HUBEMBED_DOWNLOAD_ATTEMPTS", 3, minimum=1)),
        env_number("HUBEMBED_DOWNLOAD_BACKOFF", 1.0),
        env_number("HUBEMBED_DOWNLOAD_TIMEOUT", 60.0),
    )


def _retryable(e: BaseException) -> bool:
    """Worth another attempt: the network, a cut or corrupt stream, a 5xx/408/429; not a 4xx or a bad handle."""

    if isinstance(e, urllib.error.HTTPError):
        return e.code >= 500 or e.code in (408, 429)
    return not isinstance(e, (ValueError, TypeError)) or "tar" in type(e).__module__


def _attempt(handle: str, timeout: float) -> str:

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # tensorflow_hub's urlopen has none: a stalled server would hang forever
    try:
        return _hub().resolve(handle)
    finally:
        socket.setdefaulttimeout(old)


def _discard(folder: str) -> None:

    if os.path.isdir(folder) and not holds_model(folder):
        shutil.rmtree(folder, ignore_errors=True)


def _resolve_remote(handle: str) -> str:
    """Download through tensorflow_hub's resolvers (its lock file makes concurrent processes wait for one
    download), retrying what can succeed on a second try, with a socket timeout; a failed or incomplete
    download never leaves a cache folder that looks complete."""

    folder = cache_folder(handle)
    check_cache_folder(handle, folder)
    attempts, backoff, timeout = _download_settings()
    errors = []
    for i in range(attempts):
        try:
            path = _attempt(handle, timeout)
        except Exception as e:  # tensorflow_hub raises urllib, tarfile, tf.errors and ValueError alike
            _discard(folder)
            errors.append(f"attempt {i + 1}: {type(e).__name__}: {str(e)[:300]}")
            if not _retryable(e) or i == attempts - 1:
                raise DownloadError(
                    f"could not download {handle} ({len(errors)} attempt{'s' * (len(errors) > 1)}, timeout "
                    f"{timeout:g} s):\n  "
                    + "\n  ".join(errors)
                    + f"\ncache folder: {folder} (TFHUB_CACHE_DIR={os.environ.get('TFHUB_CACHE_DIR', '<unset>')}; "
                    f"nothing partial is left in it)\nCheck the handle and the network; offline, pass a local "
                    f"folder instead."
                ) from e
            time.sleep(backoff * 2**i)
            continue
        if path.startswith("gs://") or holds_model(path):
            return path
        _discard(path)  # an archive that unpacked without a saved_model.pb: not a model, not cached
        errors.append(f"attempt {i + 1}: the downloaded archive holds no saved_model.pb")
        if i == attempts - 1:
            raise DownloadError(
                f"could not download {handle}: " + "; ".join(errors) + f"\ncache folder: {folder} (removed again)"
            )
        time.sleep(backoff * 2**i)
    raise DownloadError(f"could not download {handle}: " + "; ".join(errors))  # pragma: no cover (unreachable)


def _resolve_local(handle: str) -> Resolved:
    path = os.path.abspath(os.path.expanduser(handle))
    if not os.path.exists(path):
        looks_like_path = os.sep in handle or handle.startswith((".", "~"))
        if looks_like_path:
            raise ModelNotFoundError(f"no such folder: {path}")
        registry.get(handle)  # raises UnknownModelError with suggestions
    if not os.path.isdir(path):
        raise NotASavedModelError(f"{path} is a file; a model handle must be a SavedModel folder")
    # A `hubembed convert` output: encoder/ + preprocess/ side by side.
    if not holds_model(path) and holds_model(os.path.join(path, "encoder")):
        pre = os.path.join(path, "preprocess")
        return Resolved(handle, os.path.join(path, "encoder"), None, pre if holds_model(pre) else None)
    if not holds_model(path) and os.path.isfile(os.path.join(path, "model.tflite")):
        raise NotASavedModelError(
            f"{path} is a LiteRT export (hubembed export --format litert): it runs without hubembed, in MediaPipe's "
            f"TextEmbedder or LiteRT's Interpreter (README, 'On devices'); load the model it was exported from "
            f"to embed with hubembed"
        )
    if not holds_model(path) and os.path.isfile(os.path.join(path, "config.json")):
        weights = [
            n
            for n in ("model.safetensors", "pytorch_model.bin", "tf_model.h5")
            if os.path.isfile(os.path.join(path, n))
        ]
        if weights:
            raise NotASavedModelError(
                f"{path} is a Hugging Face checkpoint ({', '.join(['config.json'] + weights)}), not a SavedModel: "
                f"convert it once to the Hub format, then load the result: hubembed convert {path} OUT"
            )
    if not holds_model(path):
        contents = sorted(os.listdir(path))[:8]
        raise NotASavedModelError(
            f"{path} is not a SavedModel: it has no saved_model.pb (contents: {contents or 'empty'}). "
            f"A TF2 SavedModel or a TF1 Hub module folder (saved_model.pb + tfhub_module.pb) is expected."
        )
    return Resolved(handle, path, export=export_format.read_record(path))


TRUST = ("registry", "audit", "any")


def needs_audit(resolved: "Resolved", trust: str) -> bool:
    """registry: audit what the registry does not vouch for; audit: everything; any: nothing."""
    if trust not in TRUST:
        raise InputError(f"trust={trust!r}; valid: {', '.join(TRUST)}")
    return trust == "audit" or (trust == "registry" and resolved.entry is None)


def check_audit(path: str, source: str) -> None:
    """Refuse a SavedModel whose graph does what an encoder or preprocessor has no reason to do."""
    a = graph_audit.audit(path)
    if not a.ok:
        found = "\n".join(f"  {f.op} in {f.where}: {f.why}" for f in a.findings[:20])
        raise UntrustedModelError(
            f"{source} was not loaded: its graph would do more than an encoder or preprocessor needs "
            f"({path}):\n{found}\nInspect it with `hubembed inspect --audit {source}`; load it anyway only if you "
            f"trust its author: hubembed.load(..., trust='any') / --trust any"
        )


def is_tf1_module(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "tfhub_module.pb"))


def _load_saved_model(path: str) -> Any:  # the restored SavedModel (TensorFlow has no stubs)
    """``hub.load(path)`` for a resolved folder. A local TF2 SavedModel is what ``hub.load`` hands to
    ``tf.saved_model.load`` unchanged, so tensorflow_hub (and its pkg_resources import) is only imported for
    TF1 Hub modules and remote paths."""
    if is_tf1_module(path) or "://" in path:
        return _hub().load(path)
    import tensorflow as tf

    obj = tf.saved_model.load(path)
    obj._is_hub_module_v1 = False  # as hub.load marks it (hub.KerasLayer reads it)
    return obj


def load(path: str, source: str, audit: bool = False) -> Any:  # the restored SavedModel (no stubs)
    """Load a resolved folder as ``hub.load`` does (TF1 Hub modules included); audit: check its graph first."""
    _util.require_tensorflow(f"loading {source} (a SavedModel)")
    if audit and not path.startswith("gs://"):
        check_audit(path, source)

    _util.require_text()  # register the tensorflow_text ops a preprocessor needs before loading
    try:
        return _load_saved_model(path)
    except Exception as e:
        text = str(e)
        op = re.search(r"Op type not registered '([^']+)'", text)
        if op:
            raise MissingDependencyError(
                f"{source} uses the op '{op.group(1)}', which is not registered in this TensorFlow. "
                f"Ops of tensorflow_text need `import tensorflow_text` (hubembed does it) with a "
                f"tensorflow-text of the same minor version as tensorflow: "
                f"pip install {_util.text_install()}"
            ) from e
        if "SavedModel file does not exist" in text:
            raise StaleCacheError(f"{source}: {path} holds no SavedModel; delete it and retry: rm -rf {path}") from e
        raise NotASavedModelError(f"{source}: loading {path} failed: {type(e).__name__}: {text[:500]}") from e
