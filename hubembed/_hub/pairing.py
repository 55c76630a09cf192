"""Pair an encoder with its preprocessing model, and check the pair.

Order: a preprocessor the caller names explicitly; else the registry's pairing
(tfhub.dev table); else the preprocess/ folder beside a ``hubembed convert``
output; else one built with tensorflow_text from the encoder's own
``vocab_file`` and ``do_lower_case`` (the tokens of the official preprocessor).
Every pair is checked: the tokenizer's vocab_size must equal the encoder's
word-embedding rows.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional, Union

from hubembed import registry
from hubembed._formats import convert
from hubembed._hub import preprocess as pp
from hubembed._hub import resolve
from hubembed._hub.signature import Signature
from hubembed.errors import FormatError, PreprocessorMismatchError

log = logging.getLogger("hubembed")


def load_preprocessor(handle: str, trust: str = "registry", python: bool = False) -> pp.Preprocessing:
    """Load a preprocessing model by handle (registry name, URL or folder), audited as ``trust`` says.

    A ``preprocess/`` folder written by ``hubembed convert`` (the embedded default among them) is rebuilt in
    memory from its vocab asset and casing by the class that wrote it: the same tokenizer, without the
    second or so that restoring its SavedModel's function library costs. With ``python=True`` (the int8 path,
    without TensorFlow), such a folder, and a registry preprocessor whose casing the registry knows and whose
    vocabulary is its asset (tfhub.dev's: tensorflow_text's BertTokenizer), tokenize in Python
    (``pp.PyPreprocessor``); any other preprocessor is a SavedModel that only TensorFlow runs.
    """
    r = resolve.resolve(handle)
    own = convert.preprocessor_source(r.path)
    if own is not None:
        vocab, lower_case, flavour, window = own
        return pp.from_vocab(vocab, lower_case, source=handle, flavour=flavour, python=python, seq_length=window)
    vocab_asset = os.path.join(r.path, "assets", "vocab.txt")
    casing = r.entry.casing if r.entry is not None else None
    if python and casing in ("cased", "uncased") and os.path.isfile(vocab_asset):
        return pp.from_vocab(vocab_asset, casing == "uncased", source=handle, python=True)
    if python:
        log.info("%s: its preprocessing SavedModel tokenizes in TensorFlow (not rebuildable in Python)", handle)
    module = resolve.load(r.path, handle, audit=resolve.needs_audit(r, trust))
    lower: Optional[bool] = None
    if r.entry is not None and r.entry.casing in ("cased", "uncased"):
        lower = r.entry.casing == "uncased"
    if hasattr(module, "do_lower_case"):
        lower = bool(module.do_lower_case.numpy())
    return pp.Preprocessor(module, handle, lower_case=lower)


def pair(
    resolved: resolve.Resolved,
    signature: Signature,
    # A Preprocessor, a handle, or a loaded preprocessing SavedModel (a TensorFlow object: no stubs).
    preprocess: Union[pp.Preprocessor, pp.PyPreprocessor, str, Any, None] = None,
    trust: str = "registry",
    python: bool = False,
) -> pp.Preprocessing:
    """The preprocessor for an encoder, with ``paired_by`` set; checked against the encoder. ``python``: tokenize in
    Python where the preprocessor can be rebuilt (``load_preprocessor``)."""
    pre: pp.Preprocessing
    if isinstance(preprocess, (pp.Preprocessor, pp.PyPreprocessor)):
        pre, how = preprocess, "caller"
    elif isinstance(preprocess, str):
        pre, how = load_preprocessor(preprocess, trust, python), "caller"
    elif preprocess is not None:
        pre, how = pp.Preprocessor(preprocess, "caller's object"), "caller"
    elif resolved.entry is not None and resolved.entry.preprocess:
        name = resolved.entry.preprocess
        entry = registry.get(name)
        pre, how = load_preprocessor(name if entry.embedded else entry.handle, trust, python), "registry"
    elif resolved.paired_preprocess:
        pre, how = load_preprocessor(resolved.paired_preprocess, trust, python), "conversion folder"
    elif signature.vocab_file:
        lower = signature.casing != "cased" if signature.casing else True
        pre, how = pp.from_vocab(signature.vocab_file, lower, python=python), "encoder vocab_file"
    else:
        raise FormatError(
            f"no preprocessor for {resolved.handle}: it is not in the registry and exports no vocab_file "
            f"(SentencePiece models such as ALBERT export sp_model_file). Name one with "
            f"preprocess=<handle> (CLI: --preprocess)"
        )
    pre.paired_by = how
    check(pre, signature)
    return pre


def check(pre: pp.Preprocessing, signature: Signature) -> None:
    enc_vocab: Optional[int] = signature.vocab_size
    if enc_vocab is not None and pre.vocab_size is not None and enc_vocab != pre.vocab_size:
        raise PreprocessorMismatchError(
            f"the preprocessor {pre.source} has vocab_size {pre.vocab_size}, but the encoder "
            f"{signature.handle} has {enc_vocab} word-embedding rows: they do not belong together. "
            f"Pass the encoder's own preprocessor (preprocess=...), or omit it to build one from the "
            f"encoder's vocab_file."
        )
