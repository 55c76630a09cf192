"""``Preprocessor``: one Python-side view of any BERT preprocessor, a loaded tfhub.dev SavedModel or one
built in memory from a vocab file (``hubembed._formats.preprocessor``); tokenizes and packs.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, List, Optional, Sequence, Union

import numpy as np

from hubembed._formats.preprocessor import DEFAULT_SEQ_LENGTH, _tf, build_preprocessor, special_ids
from hubembed._tokenizer import TENSORFLOW_TEXT
from hubembed._wordpiece import WordPiece
from hubembed.errors import FormatError


class Preprocessor:
    """A uniform view of a BERT preprocessor (a loaded SavedModel or a built one).

    Attributes: ``source`` (handle or "built from <vocab>"), ``vocab_size``,
    ``special`` (ids), ``seq_length`` (its own default: what ``__call__`` pads to when it runs alone, as in
    hub.KerasLayer; hubembed never uses it, it packs the encoder's ``seq_length`` with ``pack``), ``lower_case``
    (if known), ``flavour`` (how it tokenizes: ``hubembed._tokenizer.FLAVOURS``; a loaded SavedModel is taken to
    tokenize as tfhub.dev's do), ``paired_by`` (how ``pairing.pair`` chose it; None until then).
    """

    def __init__(
        self,
        module: Any,
        source: str,
        vocab_file: Optional[str] = None,
        lower_case: Optional[bool] = None,
        special: Optional[dict] = None,
        flavour: str = TENSORFLOW_TEXT,
    ) -> None:
        for attr in ("tokenize", "bert_pack_inputs"):
            if not hasattr(module, attr):
                raise FormatError(
                    f"{source} is not a BERT preprocessing model: it has no '{attr}' "
                    f"(a tfhub.dev preprocessor exports __call__, tokenize and bert_pack_inputs)"
                )
        self.module = module
        self.source = source
        self.vocab_file = vocab_file
        self.lower_case = lower_case
        self.flavour = flavour
        self.paired_by: Optional[str] = None  # set by pairing.pair
        if special is None:
            special = {k: int(v.numpy()) for k, v in module.tokenize.get_special_tokens_dict().items()}
        self.special = special
        self.vocab_size = self.special.get("vocab_size")
        self._seq_length = getattr(module, "_seq_length", None)  # known for an in-memory BertPreprocessor

    @property
    def seq_length(self) -> int:
        """The default seq_length of ``__call__`` (read off its output signature, else off one call): what the
        preprocessor pads to when it runs alone, not the window hubembed packs (``Encoder.seq_length``)."""
        if self._seq_length is None:
            self._seq_length = _declared_seq_length(self.module)
        if self._seq_length is None:
            tf = _tf()
            self._seq_length = int(self.module(tf.constant([""]))["input_word_ids"].shape[1])
        return self._seq_length

    def tokenize(self, texts: Iterable[str]) -> Any:
        """int32 RaggedTensor [B, (words), (pieces)] (WordPiece) or [B, (tokens)]."""
        tf = _tf()
        strings = tf.constant(list(texts), tf.string)
        eager = getattr(self.module, "tokenize_eagerly", None)  # an in-memory BertPreprocessor
        return eager(strings) if eager is not None else self.module.tokenize(strings)

    def token_arrays(self, texts: Iterable[str]) -> List[np.ndarray]:
        """The WordPiece ids of each text as int32 arrays, flat, without special tokens."""
        return ragged_rows(self.tokenize(texts))

    def token_ids(self, texts: Iterable[str]) -> List[List[int]]:
        """The WordPiece ids of each text, flat, without special tokens."""
        return [row.tolist() for row in self.token_arrays(texts)]

    def pack(self, segments: Sequence[Any], seq_length: int) -> Any:
        """Pack 1 or 2 tokenized segments to ``seq_length`` (the three-key dict)."""
        tf = _tf()
        return self.module.bert_pack_inputs(list(segments), seq_length=tf.constant(seq_length, tf.int32))

    def to_dict(self) -> dict:
        return describe(self)


class PyPreprocessor:
    """A preprocessor rebuilt from its vocabulary, casing and flavour that tokenizes in Python
    (``hubembed._wordpiece``: the same ids as the TensorFlow preprocessor, without TensorFlow; what the int8
    path uses). What only a graph needs (``module``, ``tokenize``, ``pack``: an export, the Keras layer) comes from
    its TensorFlow twin (``from_vocab``), built on first use.

    Attributes: as ``Preprocessor``; ``seq_length`` is the default a built preprocessor pads to when it runs alone.
    """

    def __init__(
        self, vocab_file: str, lower_case: bool, source: str, flavour: str = TENSORFLOW_TEXT, seq_length: int = 0
    ) -> None:
        self.wordpiece = WordPiece.from_file(vocab_file, lower_case, flavour)
        self.source, self.vocab_file, self.lower_case, self.flavour = source, vocab_file, bool(lower_case), flavour
        self.special = special_ids(self.wordpiece.vocab)
        self.vocab_size = self.special["vocab_size"]
        self.seq_length = seq_length or DEFAULT_SEQ_LENGTH
        self.paired_by: Optional[str] = None
        self._twin: Optional[Preprocessor] = None

    def twin(self) -> Preprocessor:
        """The TensorFlow preprocessor of the same vocabulary, casing and flavour (imports TensorFlow)."""
        if self._twin is None:
            twin = from_vocab(self.vocab_file, self.lower_case, self.source, self.flavour, seq_length=self.seq_length)
            assert isinstance(twin, Preprocessor)
            self._twin = twin
        return self._twin

    @property
    def module(self) -> Any:
        return self.twin().module

    def tokenize(self, texts: Iterable[str]) -> Any:
        return self.twin().tokenize(texts)

    def pack(self, segments: Sequence[Any], seq_length: int) -> Any:
        return self.twin().pack(segments, seq_length)

    def token_arrays(self, texts: Iterable[str]) -> List[np.ndarray]:
        return self.wordpiece.ids(list(texts))

    def token_ids(self, texts: Iterable[str]) -> List[List[int]]:
        return [row.tolist() for row in self.token_arrays(texts)]

    def to_dict(self) -> dict:
        return describe(self)


Preprocessing = Union[Preprocessor, PyPreprocessor]  # what pairing gives an encoder


def describe(pre: Preprocessing) -> dict:
    """What a preprocessor is, as ``inspect`` and the records show it (the same keys for both kinds)."""
    return {
        "source": pre.source,
        "vocab_size": pre.vocab_size,
        "seq_length": pre.seq_length,
        "lower_case": pre.lower_case,
        "tokenizer": pre.flavour,
        "special_tokens": {k: v for k, v in pre.special.items() if k != "vocab_size"},
    }


def _declared_seq_length(module: Any) -> Optional[int]:
    """The padded length ``module.__call__`` declares in its saved output signature, if it is fixed."""
    try:
        fns = module.__call__.concrete_functions
    except AttributeError:
        return None
    for cf in fns:
        out = cf.structured_outputs
        if isinstance(out, dict) and "input_word_ids" in out:
            n = out["input_word_ids"].shape[-1]
            if n is not None:
                return int(n)
    return None


def from_vocab(
    vocab_file: str,
    lower_case: bool,
    source: Optional[str] = None,
    flavour: str = TENSORFLOW_TEXT,
    python: bool = False,
    seq_length: Optional[int] = None,
) -> Union[Preprocessor, PyPreprocessor]:
    """A preprocessor built in memory from a vocab file and casing: in TensorFlow (tokenizes eagerly, no trace), or
    with ``python=True`` in Python (``PyPreprocessor``: the same ids, no TensorFlow). ``seq_length``: its default
    (what it pads to when it runs alone; 128 when None)."""
    if python:
        source = source or f"built from {os.path.basename(vocab_file)} (do_lower_case={bool(lower_case)})"
        return PyPreprocessor(vocab_file, lower_case, source, flavour, seq_length=seq_length or 0)
    module = build_preprocessor(vocab_file, lower_case, seq_length=seq_length or DEFAULT_SEQ_LENGTH, flavour=flavour)
    special = {k: int(v) for k, v in module.tokenize._special.items()}  # read off the vocab, no trace
    return Preprocessor(
        module,
        source or f"built from {os.path.basename(vocab_file)} (do_lower_case={bool(lower_case)})",
        vocab_file,
        bool(lower_case),
        special=special,
        flavour=flavour,
    )


def ragged_rows(ragged: Any) -> List[np.ndarray]:
    """An int RaggedTensor [B, (words), (pieces)] or [B, (pieces)] -> B flat int32 arrays."""
    if ragged.shape.rank > 2:
        ragged = ragged.merge_dims(-2, -1)
    values = ragged.flat_values.numpy().astype(np.int32)
    splits = ragged.row_splits.numpy()
    return [values[splits[i] : splits[i + 1]] for i in range(len(splits) - 1)]
