"""hubembed: contextual embeddings from TensorFlow Hub BERT-family encoders.

>>> import hubembed
>>> enc = hubembed.load("minilm")                    # doctest: +SKIP
>>> hubembed.inspect("minilm").num_layers            # doctest: +SKIP
6
"""

__version__ = "0.1.0"

from hubembed.encoder import Encoder, EncoderOutputs, Internals, inspect, load
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
    PreprocessorMismatchError,
    StaleCacheError,
    UnknownModelError,
)
from hubembed.inspection import Signature

__all__ = [
    "ConversionError",
    "DownloadError",
    "Encoder",
    "EncoderOutputs",
    "FormatError",
    "HandleError",
    "HubEmbedError",
    "InputError",
    "Internals",
    "MissingDependencyError",
    "ModelNotFoundError",
    "NotASavedModelError",
    "PreprocessorMismatchError",
    "Signature",
    "StaleCacheError",
    "UnknownModelError",
    "inspect",
    "load",
]
