"""One helper each for what every stage needs: optional imports, file hashing, atomic writes, library versions
and environment settings. Nothing here imports TensorFlow at import time."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import secrets
import sys
from types import ModuleType
from typing import Dict, Iterator, List, Optional

from hubembed._version import __version__
from hubembed.errors import MissingDependencyError, OutputError, missing

# -- optional dependencies -------------------------------------------------------------------------------------
# module -> (the package to install, the pip argument)
EXTRAS = {
    "tensorflow_text": ("tensorflow-text", "'tensorflow-text>=2.20,<2.22' (the minor of your tensorflow)"),
    "official.nlp.modeling": ("tf-models-official", "'hubembed[garden]'"),
    "apache_beam": ("apache_beam", "'hubembed[beam]'"),
    "pyarrow": ("pyarrow", "'hubembed[parquet]'"),
    "matplotlib.figure": ("matplotlib", "'hubembed[plot]'"),
    "sklearn": ("sklearn", "'hubembed[analysis]'"),
    "pyspark": ("pyspark", "'hubembed[spark]'"),
    "ai_edge_litert.interpreter": ("ai-edge-litert", "'hubembed[int8]'"),
    "faiss": ("faiss-cpu", "'hubembed[ann]'"),
}


def optional(module: str, why: str) -> ModuleType:
    """Import an optional dependency, or raise ``MissingDependencyError`` saying what needs it and what to install.

    Args:
        module: a key of ``EXTRAS`` (the module to import).
        why: what needs it, for the message ("Parquet output").
    """
    try:
        return __import__(module, fromlist=["__name__"])  # the import statement's route (import hooks see it)
    except ImportError as e:
        package, pip = EXTRAS[module]
        if module == "official.nlp.modeling":
            pip = garden_install()
        elif module == "tensorflow_text":
            pip = text_install()
        raise missing(package, pip, why) from e


def text_install() -> str:
    """The tensorflow-text that goes with this TensorFlow (the same minor: its ops are built against it)."""
    tf = versions("tensorflow").get("tensorflow") or ""
    minor = ".".join(tf.split(".")[:2])
    return f"'tensorflow-text=={minor}.*'" if minor in ("2.20", "2.21") else "'tensorflow-text>=2.20,<2.22'"


def garden_install() -> str:
    """How Model Garden installs beside this TensorFlow: its release pins tensorflow~=2.20.0, so on 2.21 the
    code goes in without its pins (README, "The TensorFlow you have")."""
    tf = versions("tensorflow").get("tensorflow") or ""
    if tf.startswith("2.20."):
        return "'hubembed[garden]'"
    return (
        f"'hubembed[garden-deps]'\n    pip install --no-deps tf-models-official==2.20.0"
        f"\n(tf-models-official pins tensorflow~=2.20.0; this keeps your tensorflow {tf or '(not installed)'})"
    )


def has_tensorflow() -> bool:
    """Whether TensorFlow can be imported here, found without importing it."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # an import hook refusing it; a half-removed install
        return False


def require_tensorflow(why: str) -> None:
    """Nothing when TensorFlow is installed; else ``MissingDependencyError`` saying what needs it, before any work.

    hubembed-lite (no TensorFlow) runs int8 models already converted; loading a SavedModel (float32, or the one
    conversion to int8), exporting, converting and the Keras layer need the full distribution.
    """
    if not has_tensorflow():
        raise MissingDependencyError(
            f"{why} needs TensorFlow, which is not installed here (without it, hubembed runs int8 models already "
            f"converted: copy a HUBEMBED_CACHE from a machine where the model was loaded once in int8). Install the "
            f"full distribution: pip install hubembed"
        )


def require_text() -> ModuleType:
    """tensorflow_text (importing it registers the ops BERT preprocessors use), or a clear error."""
    return optional(
        "tensorflow_text",
        "Loading or building a BERT preprocessing model (its ops CaseFoldUTF8, "
        "WordpieceTokenizeWithOffsets, RoundRobinTrim)",
    )


# -- TensorFlow's logging ------------------------------------------------------------------------------------------
_PER_PLAN = re.compile(
    r"calls to <function (GardenEncoder\.forward|HubBackend\.compiled)\.<locals>\.\w+ at [^>]*> triggered "
    r"tf\.function retracing"
)


class _OneTraceEach(logging.Filter):
    """hubembed makes one ``tf.function`` per model and plan, each traced once. TensorFlow counts traces by the
    code object all of them share, so loading several encoders looks to it like "retracing" and it warns: drop
    that warning for those functions only (any other function's still shows)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _PER_PLAN.search(record.getMessage())


@contextlib.contextmanager
def tf_logging_at_warning() -> Iterator[None]:
    """TensorFlow's and absl's Python loggers at WARNING for the block (saving a SavedModel and converting one to
    TFLite log routine steps at INFO), restored after it."""
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def quiet_per_plan_tracing() -> None:
    """Install ``_OneTraceEach`` on TensorFlow's logger (once)."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _OneTraceEach) for f in logger.filters):
        logger.addFilter(_OneTraceEach())


# -- files -----------------------------------------------------------------------------------------------------
def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: str, data: bytes, hint: str = "") -> None:
    """Write ``data`` to ``path`` so a reader never sees half a file: a temporary file beside it (its own name
    per writer, ending in .tmp, so writers racing for the same path never share one), flush, fsync, rename over
    path.

    Raises:
        OutputError: the write failed (the cause, and ``hint``: what the user can do); the temporary file is removed.
    """
    tmp = f"{path}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise OutputError(f"writing {path} failed: {e.strerror or e}{'; ' + hint if hint else ''}") from e


# -- versions --------------------------------------------------------------------------------------------------
def versions(*modules: str) -> Dict[str, Optional[str]]:
    """{"hubembed": its version, module: its version (None if not installed)} for a record of what made a file.

    Read from the module when it is imported, else from the installed distribution's metadata: never imported
    here (recording a version must not import TensorFlow into a process that runs without it).
    """
    out: Dict[str, Optional[str]] = {"hubembed": __version__}
    for name in modules:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            out[name] = str(module.__version__)
            continue
        try:
            out[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def loaded(*modules: str) -> List[str]:
    """The ``modules`` this process has imported (what computed, for a record)."""
    return [m for m in modules if m in sys.modules]


# -- environment -----------------------------------------------------------------------------------------------
def cache_root() -> str:
    """``$HUBEMBED_CACHE``, default ``~/.cache/hubembed``: the converted embedded model, feature caches."""
    return os.path.abspath(
        os.path.expanduser(os.environ.get("HUBEMBED_CACHE") or os.path.join("~", ".cache", "hubembed"))
    )


def legacy_keras() -> bool:
    """Whether ``tf.keras`` is tf_keras (``TF_USE_LEGACY_KERAS=1``) rather than Keras 3."""
    return os.environ.get("TF_USE_LEGACY_KERAS", "0").lower() in ("1", "true", "yes")


def env_number(name: str, default: float, minimum: Optional[float] = None) -> float:
    """A number from the environment (``HUBEMBED_DOWNLOAD_*``), or ``default``."""
    value = float(os.environ.get(name, default))
    return max(minimum, value) if minimum is not None else value
