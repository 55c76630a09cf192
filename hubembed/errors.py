"""The one error hierarchy of hubembed.

Every error hubembed raises on purpose is a ``HubEmbedError``; the CLI turns
it into exit code 1 and its message, with no stack trace::

    HubEmbedError
    ├── HandleError              a handle that names nothing usable
    │   ├── UnknownModelError    not in the registry (close names suggested)
    │   ├── ModelNotFoundError   a local folder that does not exist
    │   ├── NotASavedModelError  a folder that holds no SavedModel / TF1 Hub module
    │   ├── StaleCacheError      a tfhub_modules cache folder that is empty or partial
    │   ├── DownloadError        resolving a remote handle failed
    │   └── UntrustedModelError  the audit flagged ops that touch files, the network or Python
    ├── FormatError              a SavedModel that is not a BERT-family encoder / preprocessor
    ├── PreprocessorMismatchError  tokenizer vocabulary != encoder word-embedding rows
    ├── ConversionError          a checkpoint `hubembed convert` cannot convert
    ├── MissingDependencyError   an optional package or TF op library is missing (with the pip command)
    ├── OutputError              an output folder that cannot be used (other files, another spec, a failed write)
    └── InputError               bad arguments or input rows
"""

from __future__ import annotations


class HubEmbedError(Exception):
    """Base of every error hubembed raises on purpose."""


class HandleError(HubEmbedError):
    """A handle that does not lead to a usable model."""


class UnknownModelError(HandleError):
    """A bare name that is not in the registry."""


class ModelNotFoundError(HandleError):
    """A local path that does not exist."""


class NotASavedModelError(HandleError):
    """A folder that holds neither a SavedModel nor a TF1 Hub module."""


class StaleCacheError(HandleError):
    """A tensorflow_hub cache folder that exists but holds no complete model."""


class DownloadError(HandleError):
    """Resolving or downloading a remote handle failed."""


class UntrustedModelError(HandleError):
    """A SavedModel outside the registry whose graph touches files, the network or Python (see the audit)."""


class FormatError(HubEmbedError):
    """A SavedModel whose exports are not those of a BERT-family encoder."""


class PreprocessorMismatchError(HubEmbedError):
    """A preprocessor whose vocabulary does not fit the encoder."""


class ConversionError(HubEmbedError):
    """A checkpoint that `hubembed convert` cannot convert."""


class MissingDependencyError(HubEmbedError, ImportError):
    """An optional dependency (or TF op library) that is not installed."""


class InputError(HubEmbedError, ValueError):
    """Bad arguments or input rows."""


class OutputError(HubEmbedError):
    """An extraction folder that cannot be written or resumed: it holds other files, was made with another
    model or spec, or a write failed (finished shards are kept; rerun with --resume)."""


def missing(package: str, pip: str, why: str) -> MissingDependencyError:
    """The error for an optional dependency that is not installed."""
    return MissingDependencyError(
        f"{why} needs the package '{package}', which is not installed. Install it with:\n    pip install {pip}"
    )
