"""Kaggle Models handles (tfhub.dev now redirects there).

Forms, all naming one variation of a model and optionally its version (none: the latest):

* ``https://www.kaggle.com/models/<owner>/<model>/<framework>/<variation>[/<version>]``;
* the address a model page shows, ``.../models/<owner>/<model>/frameworks/<framework>/variations/<variation>``
  ``[/versions/<version>]``, read as the form above;
* ``kaggle:<owner>/<model>/<framework>/<variation>[/<version>]``.

With ``kagglehub`` installed (``pip install 'hubembed[kaggle]'``), ``kagglehub.model_download`` downloads the
variation into kagglehub's cache (``$KAGGLEHUB_CACHE``, default ``~/.cache/kagglehub``) with kagglehub's
credentials (``kagglehub.login()``, ``KAGGLE_USERNAME``/``KAGGLE_KEY``, ``KAGGLE_API_TOKEN``,
``~/.kaggle/kaggle.json``); a handle without a version asks Kaggle for the latest on every load. Attempts and
backoff are ``HUBEMBED_DOWNLOAD_ATTEMPTS``/``_BACKOFF``, as on tensorflow_hub's path (kagglehub 1.0 takes no
timeout, so ``HUBEMBED_DOWNLOAD_TIMEOUT`` does not reach it). A version folder without kagglehub's completion
marker (a failed attempt, a killed process) is removed before the first attempt and after each failed one, under
a lock that makes another process loading the same variation wait for this download and then find it cached.

Without kagglehub, a versioned handle is the URL ``https://www.kaggle.com/models/<owner>/<model>/<framework>/``
``<variation>/<version>``, which tensorflow_hub downloads as any Hub URL (``?tf-hub-format=compressed``, into
``$TFHUB_CACHE_DIR``): tensorflow_hub 0.16 has no Kaggle code of its own. That is said once in the log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib
import logging
import os
import re
import shutil
import sys
import time
from types import ModuleType
from typing import Iterator, List, Optional, Tuple

from hubembed._hub import resolve as _resolve
from hubembed.errors import DownloadError, InputError, MissingDependencyError

log = logging.getLogger("hubembed")

WEB = "https://www.kaggle.com"  # the host of the URL form (and of the URL tensorflow_hub is given)
PREFIX = "kaggle:"
FORMS = (
    "kaggle:<owner>/<model>/<framework>/<variation>[/<version>] or "
    "https://www.kaggle.com/models/<owner>/<model>/<framework>/<variation>[/<version>]"
)
_URL = re.compile(r"^https?://(?:www\.)?kaggle\.com/models(?=$|[/?#])", re.I)
_CREDENTIALS = (
    "kagglehub's credentials: kagglehub.login(), the variables KAGGLE_USERNAME and KAGGLE_KEY (or "
    "KAGGLE_API_TOKEN), or ~/.kaggle/kaggle.json (an API token from https://www.kaggle.com/settings)"
)
_NOT_RETRYABLE = ("UnauthenticatedError", "CredentialError", "NotFoundError")
_said_fallback = False


@dataclasses.dataclass(frozen=True)
class Handle:
    """One variation of a Kaggle model, at a version (None: the latest)."""

    owner: str
    model: str
    framework: str
    variation: str
    version: Optional[int] = None

    @property
    def slug(self) -> str:
        """kagglehub's handle: ``owner/model/framework/variation[/version]``."""
        parts = [self.owner, self.model, self.framework, self.variation]
        return "/".join(parts + ([str(self.version)] if self.version is not None else []))

    @property
    def url(self) -> str:
        """Its page, which is also the URL tensorflow_hub downloads (``?tf-hub-format=compressed``)."""
        return f"{WEB}/models/{self.slug}"


def is_handle(handle: str) -> bool:
    """A ``kaggle:`` handle or a URL under kaggle.com/models (well formed or not: ``parse`` says)."""
    return handle.lower().startswith(PREFIX) or bool(_URL.match(handle))


def parse(handle: str) -> Handle:
    """The parts of a Kaggle handle; InputError for any other shape (before any network work)."""
    url = _URL.match(handle)
    if url:
        path = re.split(r"[?#]", handle[url.end() :])[0]
    elif handle.lower().startswith(PREFIX):
        path = handle[len(PREFIX) :]
    else:
        raise InputError(f"{handle!r} is not a Kaggle model handle: {FORMS}")
    parts = _short_form(path.strip("/").split("/") if path.strip("/") else [])
    if len(parts) == 2 and all(parts):
        raise InputError(
            f"{handle} names a Kaggle model, not one of its variations: add <framework>/<variation>[/<version>] "
            f"as its page lists them ({WEB}/models/{parts[0]}/{parts[1]}), e.g. "
            f"kaggle:{parts[0]}/{parts[1]}/tensorFlow2/<variation>/<version>"
        )
    if len(parts) not in (4, 5) or not all(parts) or any(c.isspace() for c in "".join(parts)):
        raise InputError(f"{handle}: a Kaggle model handle is {FORMS} (this one has {len(parts)} part(s))")
    if len(parts) == 5 and not (parts[4].isdigit() and int(parts[4]) > 0):
        raise InputError(f"{handle}: the version of a Kaggle model is a number from 1, not {parts[4]!r} ({FORMS})")
    owner, model, framework, variation = parts[:4]
    return Handle(owner, model, framework, variation, int(parts[4]) if len(parts) == 5 else None)


def _short_form(parts: List[str]) -> List[str]:
    """``o/m/frameworks/f/variations/v[/versions/n]`` (a model page's address) as ``o/m/f/v[/n]``."""
    keys = [p.lower() for p in parts[2::2]]
    if (len(parts), keys) in ((6, ["frameworks", "variations"]), (8, ["frameworks", "variations", "versions"])):
        return [parts[0], parts[1], parts[3], parts[5]] + parts[7:]
    return parts


def resolve(handle: str) -> str:
    """Download (or find in a cache) the variation ``handle`` names; its local folder."""
    h = parse(handle)
    hub = import_kagglehub()
    if hub is None:
        return _via_tensorflow_hub(handle, h)
    return _download(hub, handle, h)


def import_kagglehub() -> Optional[ModuleType]:
    """kagglehub, or None when it cannot be imported (said once in the log: tensorflow_hub downloads instead)."""
    global _said_fallback
    try:
        hub = importlib.import_module("kagglehub")
    except Exception as e:  # not installed (ImportError), or an install whose own imports fail
        if not _said_fallback:
            _said_fallback = True
            log.warning(
                "kagglehub is not importable (%s: %s): Kaggle handles download through tensorflow_hub's resolver, "
                "without Kaggle credentials and only at a given version. For kagglehub's cache and credentials: "
                "pip install 'hubembed[kaggle]'",
                type(e).__name__,
                e,
            )
        return None
    version = str(getattr(hub, "__version__", "0"))
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 1:
        raise MissingDependencyError(
            f"Kaggle handles need kagglehub 1.x (its cache and handle API); kagglehub {version} is installed. "
            f"Upgrade it: pip install 'kagglehub>=1.0,<2'   (or: pip install 'hubembed[kaggle]')"
        )
    return hub


def _via_tensorflow_hub(handle: str, h: Handle) -> str:
    if h.version is None:
        raise DownloadError(
            f"{handle} names no version. Without kagglehub, tensorflow_hub downloads it, and it caches a handle's "
            f"first download for good: add the version (kaggle:{h.slug}/<version>; the versions are listed on "
            f"{h.url}), or install kagglehub, which resolves the latest: pip install 'hubembed[kaggle]'"
        )
    try:
        return _resolve._resolve_remote(h.url)
    except DownloadError as e:
        raise DownloadError(
            f"{handle} (downloaded by tensorflow_hub as {h.url}, kagglehub not being installed): {e}\n"
            f"A model that needs Kaggle credentials downloads with kagglehub: pip install 'hubembed[kaggle]'"
        ) from e


def _download(hub: ModuleType, handle: str, h: Handle) -> str:
    """``kagglehub.model_download`` with hubembed's attempts and backoff, under the variation's lock."""
    _check_framework(handle, h)
    attempts, backoff, _ = _resolve._download_settings()
    errors: List[str] = []
    with _locked(h):
        _discard_partial(h)  # left by a process that was killed while downloading
        for i in range(attempts):
            try:
                with _stdout_to_stderr():
                    return str(hub.model_download(h.slug))
            except BaseException as e:  # a KeyboardInterrupt too: nothing partial stays behind
                _discard_partial(h)
                if not isinstance(e, Exception):
                    raise
                errors.append(f"attempt {i + 1}: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
                if not _retryable(e) or i == attempts - 1:
                    raise DownloadError(_message(handle, h, errors, e)) from e
            time.sleep(backoff * 2**i)
    raise DownloadError(f"could not download {handle}: " + "; ".join(errors))  # pragma: no cover (unreachable)


def _check_framework(handle: str, h: Handle) -> None:
    """A framework Kaggle knows (kagglehub would say so only after looking in its cache)."""
    khandle = importlib.import_module("kagglehub.handle")
    try:
        khandle.ModelHandle(h.owner, h.model, h.framework, h.variation, h.version).framework_enum()
    except ValueError as e:
        raise InputError(
            f"{handle}: {h.framework!r} is not a Kaggle model framework ({e}); hubembed loads SavedModels, "
            f"published under tensorFlow2 (or tensorFlow1)"
        ) from e


def _status(e: BaseException) -> Optional[int]:
    """The HTTP status of a requests error (kagglehub raises requests.HTTPError subclasses), else None."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _retryable(e: BaseException) -> bool:
    """As tensorflow_hub's path: the network, a cut or corrupt stream, a 5xx/408/429; not a 4xx, credentials,
    or a bad handle."""
    status = _status(e)
    if status is not None:
        return status >= 500 or status in (408, 429)
    if type(e).__name__ in _NOT_RETRYABLE:
        return False
    return _resolve._retryable(e)


def _message(handle: str, h: Handle, errors: List[str], e: BaseException) -> str:
    """What failed, why, and the fix."""
    status = _status(e)
    if status == 404:
        fix = (
            f"Kaggle has no such variation{' or version' * (h.version is not None)} (HTTP 404): check owner, model, "
            f"framework, variation{' and version' * (h.version is not None)} on {WEB}/models/{h.owner}/{h.model}. "
            f"A private model answers 404 too without {_CREDENTIALS}."
        )
    elif status in (401, 403) or type(e).__name__ in _NOT_RETRYABLE:
        fix = (
            f"Kaggle refused access (HTTP {status or 401}): sign in with {_CREDENTIALS}; a model behind a license "
            f"or consent form needs it accepted once on its page, {h.url}."
        )
    elif status is not None:
        fix = f"Kaggle answered HTTP {status}: retry later (HUBEMBED_DOWNLOAD_ATTEMPTS sets the attempts)."
    else:
        fix = f"Check the network and the handle. Offline: {_offline_hint(h)}"
    n = len(errors)
    return (
        f"could not download {handle} with kagglehub ({n} attempt{'s' * (n > 1)}):\n  "
        + "\n  ".join(errors)
        + f"\n{fix}\nkagglehub cache: {_cache_root()} (KAGGLEHUB_CACHE="
        f"{os.environ.get('KAGGLEHUB_CACHE', '<unset>')}); nothing partial is left in it."
    )


def _offline_hint(h: Handle) -> str:
    cached = [v for v, complete in _versions(h)[1] if complete]
    if cached:
        return f"load a cached version without asking Kaggle: kaggle:{dataclasses.replace(h, version=cached[-1]).slug}"
    return "nothing of this variation is in kagglehub's cache; a local folder loads without the network."


# -- kagglehub's cache --------------------------------------------------------------------------------------------
def _cache_root() -> str:
    return str(importlib.import_module("kagglehub.config").get_cache_folder())


def _versions(h: Handle) -> Tuple[str, List[Tuple[int, bool]]]:
    """The variation's folder in kagglehub's cache, and its version folders: (number, complete) in order."""
    cache = importlib.import_module("kagglehub.cache")
    khandle = importlib.import_module("kagglehub.handle")

    def at(version: int):  # kagglehub's ModelHandle (no stubs)
        return khandle.ModelHandle(h.owner, h.model, h.framework, h.variation, version)

    base = os.path.dirname(cache.get_cached_path(at(1)))
    names = os.listdir(base) if os.path.isdir(base) else []
    found = [int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(base, n))]
    return base, [(v, cache.Cache().load_from_cache(at(v)) is not None) for v in sorted(found)]


def _discard_partial(h: Handle) -> None:
    """Remove the variation's version folders (and archives) kagglehub did not mark complete, then the folders
    left empty up to the cache's root."""
    base, versions = _versions(h)
    complete = {v for v, done in versions if done}
    for v, done in versions:
        if not done:
            shutil.rmtree(os.path.join(base, str(v)), ignore_errors=True)
    for name in os.listdir(base) if os.path.isdir(base) else []:
        version = name[: -len(".archive")]
        if name.endswith(".archive") and version.isdigit() and int(version) not in complete:
            os.remove(os.path.join(base, name))
    root = os.path.abspath(_cache_root())
    folder = os.path.abspath(base)
    while folder.startswith(root + os.sep) and os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)
        folder = os.path.dirname(folder)


@contextlib.contextmanager
def _locked(h: Handle) -> Iterator[None]:
    """An exclusive lock per variation (``<cache>/.hubembed-locks/``): a second process loading it waits for the
    first one's download, then finds it cached (kagglehub has no lock: two downloads would write the same files)."""
    locks = os.path.join(_cache_root(), ".hubembed-locks")
    os.makedirs(locks, exist_ok=True)
    name = hashlib.sha1("/".join(dataclasses.astuple(h)[:4]).encode("utf8")).hexdigest()
    with open(os.path.join(locks, name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is downloading %s", h.slug)
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        yield


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """kagglehub logs its progress to stdout: to stderr for the call, so that stdout stays the caller's (the CLI
    writes vectors there)."""
    moved = [
        (x, x.stream)
        for x in logging.getLogger("kagglehub").handlers
        if type(x) is logging.StreamHandler and x.stream in (sys.stdout, sys.__stdout__)
    ]
    for x, _ in moved:
        x.setStream(sys.stderr)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for x, stream in moved:
            x.setStream(stream)
