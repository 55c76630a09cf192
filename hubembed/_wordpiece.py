"""Tokenize without TensorFlow: BERT's WordPiece in Python, id for id the two flavours of ``hubembed._tokenizer``.

The int8 path (LiteRT) runs with no TensorFlow in the process, so it tokenizes here. Both flavours normalise text
one character at a time, so their whole normalisation is a table, read off the tokenizers themselves by
``scripts/wordpiece_tables.py`` (``hubembed/data/wordpiece_chars.json``: tensorflow_text's ICU and RE2 steps,
Hugging Face's ``BertNormalizer`` and ``BertPreTokenizer``), not computed with Python's ``unicodedata``, whose
Unicode version follows the Python release. Then words are split (``space`` ends a word, ``keep`` is a word of
its own), a word too long is ``[UNK]`` (more than 100 bytes for tensorflow_text, 100 characters for Hugging
Face), and the rest is greedy longest-match-first WordPiece with ``##`` continuations, as both libraries do.

Each normalised character remembers the original character it came from, so pieces and words get character
spans in the original text directly (a dropped character gives nothing; a word spans all of its characters).
"""

from __future__ import annotations

import bisect
import functools
import json
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from hubembed.errors import FormatError, InputError

TENSORFLOW_TEXT, HUGGINGFACE = "tensorflow_text", "huggingface"  # as hubembed._tokenizer.FLAVOURS
MAX_WORD = 100  # bytes (tensorflow_text) or characters (Hugging Face) in a word before it is [UNK]
_TABLES = os.path.join(os.path.dirname(__file__), "data", "wordpiece_chars.json")
_WORD, _SPACE, _KEEP = 0, 1, 2  # what a normalised character does to the split


@functools.lru_cache(maxsize=None)
def _tables() -> dict:
    with open(_TABLES, encoding="utf-8") as f:
        return json.load(f)


class _Ranges:
    """Membership in sorted [first, last] code point ranges."""

    def __init__(self, ranges: Sequence[Sequence[int]]) -> None:
        self.firsts = [a for a, _ in ranges]
        self.lasts = [b for _, b in ranges]

    def __contains__(self, cp: int) -> bool:
        i = bisect.bisect_right(self.firsts, cp) - 1
        return i >= 0 and cp <= self.lasts[i]


def _class_pattern(ranges: Sequence[Sequence[int]]) -> str:
    return "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges)


@dataclass
class Words:
    """The pieces of one text grouped into words, with character spans in the original text."""

    ids: np.ndarray  # [P] content piece ids
    piece_word: np.ndarray  # [P] word index of each piece
    piece_spans: np.ndarray  # [P, 2] character [start, end) of each piece
    word_spans: np.ndarray  # [W, 2] character [start, end) of each word


class WordPiece:
    """A WordPiece vocabulary with one flavour's normalisation and split (see the module's docstring).

    Args:
        vocab: the vocabulary, one piece per id.
        lower_case: the uncased variant (case folding and accents stripped).
        flavour: "tensorflow_text" or "huggingface".
    """

    def __init__(self, vocab: Sequence[str], lower_case: bool, flavour: str = TENSORFLOW_TEXT) -> None:
        if flavour not in (TENSORFLOW_TEXT, HUGGINGFACE):
            raise InputError(f"tokenizer flavour {flavour!r}; valid: {TENSORFLOW_TEXT}, {HUGGINGFACE}")
        self.vocab = list(vocab)
        self.lower_case, self.flavour = bool(lower_case), flavour
        self._ids = {piece: i for i, piece in enumerate(self.vocab)}
        if "[UNK]" not in self._ids:
            raise FormatError("the vocabulary has no [UNK] token (a BERT WordPiece vocabulary needs one)")
        self._unk = self._ids["[UNK]"]
        tables = _tables()[flavour]
        casing = tables["lower" if lower_case else "cased"]
        self._map: Dict[str, str] = {chr(int(k)): v for k, v in casing["map"].items()}
        self._drop, self._blank = _Ranges(casing["drop"]), _Ranges(casing["blank"])
        self._space, self._keep = _Ranges(tables["space"]), _Ranges(tables["keep"])
        self._norm: Dict[str, str] = {}
        self._kind: Dict[str, int] = {}
        self._pieces: Dict[str, Tuple[Tuple[int, int, int], ...]] = {}
        space, keep = _class_pattern(tables["space"]), _class_pattern(tables["keep"])
        self._split = re.compile(f"[{space}]+|([{keep}])")
        self._bytes = flavour == TENSORFLOW_TEXT  # the long-word limit counts bytes (else characters)

    @classmethod
    def from_file(cls, vocab_file: str, lower_case: bool, flavour: str = TENSORFLOW_TEXT) -> "WordPiece":
        with open(vocab_file, encoding="utf-8") as f:
            return cls([line.rstrip("\n") for line in f], lower_case, flavour)

    # -- characters ------------------------------------------------------------------------------------------------
    def normalize_char(self, c: str) -> str:
        """What one character becomes before the split."""
        out = self._norm.get(c)
        if out is None:
            cp = ord(c)
            out = self._map.get(c)
            if out is None:
                out = "" if cp in self._drop else " " if cp in self._blank else c
            self._norm[c] = out
        return out

    def _kind_of(self, c: str) -> int:
        k = self._kind.get(c)
        if k is None:
            cp = ord(c)
            k = _SPACE if cp in self._space else _KEEP if cp in self._keep else _WORD
            self._kind[c] = k
        return k

    def normalize(self, text: str) -> str:
        """The text as the flavour's tokenizer sees it before splitting."""
        norm = self._norm
        try:
            return "".join([norm[c] for c in text])
        except KeyError:
            return "".join([self.normalize_char(c) for c in text])

    # -- words and pieces ------------------------------------------------------------------------------------------
    def split(self, normalized: str) -> List[str]:
        """The words of a normalised text (delimiters dropped, punctuation and CJK characters on their own)."""
        return [w for w in self._split.split(normalized) if w]

    def pieces(self, word: str) -> Tuple[Tuple[int, int, int], ...]:
        """(id, start, end) per piece of one word, offsets in the word's characters; ``[UNK]`` for the whole word
        when it is too long or a part of it is not in the vocabulary."""
        got = self._pieces.get(word)
        if got is not None:
            return got
        n = len(word)
        whole = ((self._unk, 0, n),)
        if (len(word.encode("utf-8")) if self._bytes else n) > MAX_WORD:
            self._pieces[word] = whole
            return whole
        out: List[Tuple[int, int, int]] = []
        start = 0
        while start < n:
            end, found = n, None
            while start < end:
                found = self._ids.get(word[start:end] if start == 0 else "##" + word[start:end])
                if found is not None:
                    break
                end -= 1
            if found is None:
                out = list(whole)
                break
            out.append((found, start, end))
            start = end
        self._pieces[word] = got = tuple(out)
        return got

    def ids(self, texts: Sequence[str]) -> List[np.ndarray]:
        """The WordPiece ids of each text (int32, flat, no special tokens)."""
        out = []
        for text in texts:
            row = [p[0] for w in self.split(self.normalize(text)) for p in self.pieces(w)]
            out.append(np.array(row, np.int32))
        return out

    def words(self, texts: Sequence[str]) -> List[Words]:
        """Per text: its pieces grouped into words, with character spans in the original text."""
        return [self._words_of(t) for t in texts]

    def _words_of(self, text: str) -> Words:
        words: List[Tuple[str, List[int]]] = []  # (word, original character index of each of its characters)
        chars: List[str] = []
        origin: List[int] = []
        for i, c in enumerate(text):
            for x in self.normalize_char(c):
                kind = self._kind_of(x)
                if kind == _WORD:
                    chars.append(x)
                    origin.append(i)
                    continue
                if chars:
                    words.append(("".join(chars), origin))
                    chars, origin = [], []
                if kind == _KEEP:
                    words.append((x, [i]))
        if chars:
            words.append(("".join(chars), origin))
        ids, piece_word, piece_spans, word_spans = [], [], [], []
        for k, (word, where) in enumerate(words):
            for pid, s, e in self.pieces(word):
                ids.append(pid)
                piece_word.append(k)
                piece_spans.append((where[s], where[e - 1] + 1))
            word_spans.append((where[0], where[-1] + 1))
        return Words(
            np.array(ids, np.int32),
            np.array(piece_word, np.int64),
            np.array(piece_spans, np.int64).reshape(-1, 2),
            np.array(word_spans, np.int64).reshape(-1, 2),
        )

    def piece_strings(self, ids: np.ndarray) -> List[str]:
        return [self.vocab[i] for i in ids]
