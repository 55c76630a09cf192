"""Tokenize: texts -> WordPiece ids, and (for words and tokens) their words and character spans.

Ids for encoding come from the paired preprocessor's own ``tokenize``. Words and
spans come from the same tokenization (``hubembed._tokenizer.WordPiece``, the
preprocessor's flavour) built from the same vocabulary (``WordTokenizer``). Its
offsets are bytes of the text *after* normalisation (case folding, NFD, accent
stripping, dropped characters), so each character is normalised on its own and a
map from normalised bytes back to original characters is kept: every span slices
the original text, and a word spans all of its characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Protocol, Sequence, Tuple

import numpy as np

from hubembed._tokenizer import TENSORFLOW_TEXT, WordPiece


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


@dataclass
class Words:
    """The pieces of one text grouped into words, with character spans in the original text."""

    ids: np.ndarray  # [P] content piece ids
    piece_word: np.ndarray  # [P] word index of each piece
    piece_spans: np.ndarray  # [P, 2] character [start, end) of each piece
    word_spans: np.ndarray  # [W, 2] character [start, end) of each word


class WordTokenizer:
    """The preprocessor's tokenization (``hubembed._tokenizer.WordPiece``) over a vocab file, with character
    spans in the original text."""

    def __init__(self, vocab_file: str, lower_case: bool, flavour: str = TENSORFLOW_TEXT) -> None:
        import tensorflow as tf

        self.lower_case = bool(lower_case)
        with open(vocab_file, encoding="utf-8") as f:
            self.vocab = [line.rstrip("\n") for line in f]
        init = tf.lookup.KeyValueTensorInitializer(tf.constant(self.vocab), tf.range(len(self.vocab), dtype=tf.int64))
        table = tf.lookup.StaticHashTable(init, default_value=-1)
        self._tok = WordPiece(table, lower_case, flavour)

    def _normalize_chars(self, texts: Sequence[str]) -> List[Tuple[str, np.ndarray]]:
        """Per text: (normalised string, original char index of each normalised byte)."""
        import tensorflow as tf

        chars = [list(t) for t in texts]
        flat = [c for cs in chars for c in cs]
        # Each character normalised on its own (the normalisations are per character): a dropped one gives
        # no bytes, a case-folded ligature several, all mapped back to it.
        normed = [b.decode("utf-8") for b in self._tok.normalize(tf.constant(flat)).numpy()] if flat else []
        out: List[Tuple[str, np.ndarray]] = []
        k = 0
        for cs in chars:
            pieces = normed[k : k + len(cs)]
            k += len(cs)
            lens = np.array([len(p.encode("utf-8")) for p in pieces], dtype=np.int64)
            byte_to_char = np.repeat(np.arange(len(pieces), dtype=np.int64), lens)
            out.append(("".join(pieces), byte_to_char))
        return out

    def words(self, texts: Sequence[str]) -> List[Words]:
        import tensorflow as tf

        if not texts:
            return []
        normed = self._normalize_chars(texts)
        tokens, starts, ends = self._tok.pieces_with_offsets(tf.constant([n for n, _ in normed]))
        # [B, (words), (pieces)] -> flat numpy once (indexing the RaggedTensor per text is ~20x slower).
        flat_ids = tokens.flat_values.numpy().astype(np.int32)
        word_splits = tokens.row_splits.numpy()  # text -> words
        piece_splits = tokens.values.row_splits.numpy()  # word -> pieces
        flat_s, flat_e = starts.flat_values.numpy(), ends.flat_values.numpy()
        out = []
        for i, (_, b2c) in enumerate(normed):
            w0, w1 = word_splits[i], word_splits[i + 1]
            p0, p1 = piece_splits[w0], piece_splits[w1]
            ids = flat_ids[p0:p1]
            n_words = int(w1 - w0)
            per_word = np.diff(piece_splits[w0 : w1 + 1])
            s, e = flat_s[p0:p1], flat_e[p0:p1]
            if len(ids):
                piece_spans = np.stack([b2c[s], b2c[np.maximum(e - 1, 0)] + 1], axis=1)
            else:
                piece_spans = np.zeros((0, 2), np.int64)
            piece_word = np.repeat(np.arange(n_words), per_word)
            first = (
                np.concatenate([[0], np.cumsum(per_word)[:-1]]).astype(np.int64) if n_words else np.zeros(0, np.int64)
            )
            last = first + per_word - 1
            word_spans = (
                np.stack([piece_spans[first, 0], piece_spans[last, 1]], axis=1)
                if n_words
                else np.zeros((0, 2), np.int64)
            )
            out.append(Words(ids, piece_word, piece_spans, word_spans))
        return out

    def piece_strings(self, ids: np.ndarray) -> List[str]:
        return [self.vocab[i] for i in ids]


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
