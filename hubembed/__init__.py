"""hubembed: contextual embeddings from TensorFlow Hub BERT-family encoders.

>>> import hubembed
>>> enc = hubembed.load("minilm")                    # doctest: +SKIP
>>> hubembed.inspect("minilm").num_layers            # doctest: +SKIP
6
"""

import os as _os
import sys as _sys

from hubembed._version import __version__ as __version__

# TensorFlow's C++ start-up lines (no CUDA driver, oneDNN, CPU features, cuInit) read as breakage to a newcomer:
# unless the user chose a level, or imported TensorFlow first, keep them out (TF_CPP_MIN_LOG_LEVEL=0 shows them).
if "tensorflow" not in _sys.modules:
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from hubembed._corpus.extract import extract
from hubembed._corpus.projector import to_projector
from hubembed._corpus.store import Extraction, open_extraction
from hubembed._hub.signature import Signature
from hubembed._load import LoadOptions, inspect, load
from hubembed._pipeline import quantize as quantize  # hubembed.quantize.Ranges, quantize(), dequantize()
from hubembed._pipeline.graph import ExportedEmbedder
from hubembed._pipeline.info import ExtractionInfo
from hubembed._pipeline.outputs import EncoderOutputs, Internals
from hubembed._pipeline.spec import EmbedSpec
from hubembed._pipeline.tokens import TokenEmbeddings, WordEmbeddings
from hubembed.encoder import Encoder
from hubembed.errors import (
    ConversionError,
    DownloadError,
    FormatError,
    HandleError,
    HubEmbedError,
    InputError,
    MissingDependencyError,
    ModelNotFoundError,
    NotASavedModelError,
    OutputError,
    PreprocessorMismatchError,
    StaleCacheError,
    UnknownModelError,
    UntrustedModelError,
)

# `import hubembed.quantize` and `from hubembed.quantize import Ranges`, as the README writes it: the module is
# _pipeline's, registered under its public name too.
_sys.modules.setdefault("hubembed.quantize", quantize)

__all__ = [
    "ConversionError",
    "DownloadError",
    "EmbedSpec",
    "Encoder",
    "EncoderOutputs",
    "ExportedEmbedder",
    "Extraction",
    "ExtractionInfo",
    "FormatError",
    "HandleError",
    "HubEmbedError",
    "InputError",
    "Internals",
    "LoadOptions",
    "MissingDependencyError",
    "ModelNotFoundError",
    "NotASavedModelError",
    "OutputError",
    "PreprocessorMismatchError",
    "Signature",
    "StaleCacheError",
    "TokenEmbeddings",
    "UnknownModelError",
    "UntrustedModelError",
    "WordEmbeddings",
    "extract",
    "inspect",
    "load",
    "open_extraction",
    "to_projector",
]

# The public submodules, imported on first use (``hubembed.analysis`` after ``import hubembed``, as the README writes
# them): importing them eagerly would import their optional dependencies, and TensorFlow, with every process.
_SUBMODULES = ("analysis", "beam", "garden", "keras", "plots", "registry", "spark", "testing", "tfdata")


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'hubembed' has no attribute {name!r}")
