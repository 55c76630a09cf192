"""Tokenize: texts -> WordPiece ids, and (for words and tokens) their words and character spans.

Ids for encoding come from the paired preprocessor (its own ``tokenize``, or the Python WordPiece where the
process runs without TensorFlow). Words and spans come from the same tokenization in Python
(``hubembed._wordpiece``, the preprocessor's flavour, over the same vocabulary: ``WordTokenizer``):
each character is normalised on its own and remembers where it came from, so every span slices the original
text, and a word spans all of its characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Protocol, Sequence, Tuple

import numpy as np

from hubembed._wordpiece import TENSORFLOW_TEXT, WordPiece, Words


class Tokenizing(Protocol):
    """What this stage needs of a preprocessor (``hubembed._hub.preprocess.Preprocessor``; ``_pipeline`` does not
    import ``_hub``): its vocab file and casing, if known, and its WordPiece ids."""

    @property
    def vocab_file(self) -> Optional[str]: ...

    @property
    def lower_case(self) -> Optional[bool]: ...

    def token_arrays(self, texts: List[str]) -> List[np.ndarray]: ...


class VocabSource(Protocol):
    """What this stage needs of an encoder's signature (``hubembed._hub.signature.Signature``)."""

    @property
    def vocab_file(self) -> Optional[str]: ...

    @property
    def casing(self) -> Optional[str]: ...


def token_ids(preprocessor: Tokenizing, texts: Sequence[str]) -> List[np.ndarray]:
    """Content WordPiece ids per text (no [CLS]/[SEP]), from the paired preprocessor."""
    if not texts:
        return []
    return preprocessor.token_arrays(list(texts))


class WordTokenizer(WordPiece):
    """The preprocessor's tokenization over its vocab file, with character spans in the original text: the Python
    WordPiece of ``hubembed._wordpiece`` (id for id the preprocessor's flavour; no TensorFlow)."""

    def __init__(self, vocab_file: str, lower_case: bool, flavour: str = TENSORFLOW_TEXT) -> None:
        with open(vocab_file, encoding="utf-8") as f:
            super().__init__([line.rstrip("\n") for line in f], lower_case, flavour)


def word_tokenizer_for(pre: Tokenizing, signature: VocabSource) -> Optional[WordTokenizer]:
    """The WordTokenizer matching a preprocessor (its vocab file and casing; the encoder's signature's if the
    preprocessor does not say)."""
    vocab = pre.vocab_file or signature.vocab_file
    if vocab is None:
        return None
    lower = pre.lower_case if pre.lower_case is not None else signature.casing != "cased"
    return WordTokenizer(vocab, lower, getattr(pre, "flavour", TENSORFLOW_TEXT))


SUBWORD = ("first", "last", "mean", "max", "first_last")


@dataclass
class TokenEmbeddings:
    """One text's content tokens (no [CLS]/[SEP]) with their character spans and vectors."""

    text: str
    tokens: List[str]
    ids: np.ndarray
    spans: np.ndarray  # [n, 2] character [start, end) in text
    vectors: np.ndarray  # [n, H'] (or [n, k, H] with combine="none")
    n_windows: int = 1
    truncated: int = 0


@dataclass
class WordEmbeddings:
    """One text's words (as the BERT basic tokenizer splits them) with spans and vectors."""

    text: str
    words: List[str]
    spans: np.ndarray  # [n, 2] character [start, end) in text; text[s:e] == words[i]
    vectors: np.ndarray  # [n, H'] ([n, 2H'] for subword="first_last")
    n_windows: int = 1
    truncated: int = 0
    # Given words (split_into_words=True) that yield no piece (nothing the tokenizer keeps, or truncated away):
    # their vectors are zeros.
    no_piece: List[int] = field(default_factory=list)


def _subword(pieces: np.ndarray, subword: str) -> np.ndarray:
    """One vector from a word's piece vectors [p, ...]."""
    if subword == "first":
        return pieces[0]
    if subword == "last":
        return pieces[-1]
    if subword == "mean":
        return pieces.mean(axis=0)
    if subword == "max":
        return pieces.max(axis=0)
    return np.concatenate([pieces[0], pieces[-1]], axis=-1)


def to_words(te: TokenEmbeddings, w: Words, subword: str) -> WordEmbeddings:
    n = len(te.ids)
    piece_word = w.piece_word[:n]
    n_words = int(piece_word.max()) + 1 if n else 0
    vecs = [_subword(te.vectors[piece_word == k], subword) for k in range(n_words)]
    width = te.vectors.shape[1:] if subword != "first_last" else (2 * te.vectors.shape[-1],)
    spans = w.word_spans[:n_words]
    return WordEmbeddings(
        te.text,
        [te.text[s:e] for s, e in spans],
        spans,
        np.stack(vecs) if vecs else np.zeros((0,) + tuple(width), np.float32),
        te.n_windows,
        te.truncated,
    )


def join_words(words: Sequence[str]) -> Tuple[str, np.ndarray]:
    """Pre-tokenized input: the text the caller's words make, joined by single spaces, and each word's
    [start, end) in it (as Hugging Face's ``is_split_into_words`` and flair treat given words)."""
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]]).astype(np.int64) if words else np.zeros(0, np.int64)
    spans = np.stack([starts, starts + np.array([len(w) for w in words], np.int64)], axis=1) if words else starts
    return " ".join(words), spans.reshape(-1, 2)


def to_given_words(te: TokenEmbeddings, words: Sequence[str], spans: np.ndarray, subword: str) -> WordEmbeddings:
    """One vector per given word from the pieces inside its span; a word with no piece gets zeros and is listed
    in ``no_piece``."""
    width = te.vectors.shape[1:] if subword != "first_last" else (2 * te.vectors.shape[-1],)
    vecs = np.zeros((len(words),) + tuple(width), np.float32)
    missing = []
    for k, (s, e) in enumerate(spans):
        inside = (te.spans[:, 0] >= s) & (te.spans[:, 1] <= e) if len(te.spans) else np.zeros(0, bool)
        if inside.any():
            vecs[k] = _subword(te.vectors[inside], subword)
        else:
            missing.append(k)
    return WordEmbeddings(te.text, list(words), spans, vecs, te.n_windows, te.truncated, missing)
