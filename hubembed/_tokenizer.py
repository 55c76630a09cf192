"""BERT's WordPiece tokenization in TensorFlow ops, in the two flavours BERT checkpoints come with.

* ``"tensorflow_text"``: tensorflow_text's ``BertTokenizer`` as tfhub.dev's BERT preprocessors run it. Uncased:
  NFKC case folding, NFD, accents stripped. Control and format characters become spaces; a word of more
  than 100 *bytes* is ``[UNK]``. The reference for encoders from TF Hub (their preprocessors tokenize so).
* ``"huggingface"``: Hugging Face's ``BertTokenizer`` (``BertNormalizer`` + ``BertPreTokenizer`` +
  ``WordPiece``). Control, format, private-use and unassigned characters (and U+FFFD) are dropped, every
  Unicode space (U+2028, U+3000, ...) is a space; uncased: NFD, accents stripped, then each character
  lowercased on its own (no NFKC, no final-sigma rule); a word of more than 100 *characters* is ``[UNK]``.
  The reference for what ``hubembed convert`` writes (and so the embedded default): a converted checkpoint
  tokenizes as the tokenizer it was trained with.

Both split words the same way (whitespace; punctuation and CJK characters on their own) and run inside a
graph (a preprocessing SavedModel, an exported embedder) as well as eagerly. ``pieces_with_offsets``
gives every piece its byte span in the normalised text; a word replaced by ``[UNK]`` spans the whole word.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Dict, Sequence, Tuple

from hubembed._util import require_text
from hubembed.errors import InputError

TENSORFLOW_TEXT, HUGGINGFACE = "tensorflow_text", "huggingface"
FLAVOURS = (TENSORFLOW_TEXT, HUGGINGFACE)
MAX_WORD = 100  # bytes (tensorflow_text) or characters (Hugging Face) in a word before it is [UNK]
_TABLES = os.path.join(os.path.dirname(__file__), "data", "huggingface_bert_chars.json")


def check_flavour(flavour: str) -> str:
    """``flavour`` if it is one of ``FLAVOURS``, else InputError."""
    if flavour not in FLAVOURS:
        raise InputError(f"tokenizer flavour {flavour!r}; valid: {', '.join(FLAVOURS)}")
    return flavour


@functools.lru_cache(maxsize=None)
def hf_classes() -> Dict[str, str]:
    """RE2 character classes of Hugging Face's BERT tokenizer: drop, space, chinese, mark, punct.

    Read off the tokenizer itself (``scripts/hf_bert_tables.py``), not taken from RE2's Unicode categories:
    its Unicode tables are older, so a character assigned since (a new format character, mark or
    punctuation) is an ordinary one to it and must stay so here.
    """
    with open(_TABLES, encoding="utf-8") as f:
        data = json.load(f)

    def re2(ranges: Sequence[Sequence[int]]) -> str:
        return "[" + "".join(f"\\x{{{a:X}}}" + (f"-\\x{{{b:X}}}" if b > a else "") for a, b in ranges) + "]"

    return {k: re2(data[k]) for k in ("drop", "space", "chinese", "mark", "punct")}


def _tf_text_patterns() -> Tuple[str, str]:
    """tensorflow_text's BertTokenizer split: (delimiters, delimiters kept as tokens)."""
    from tensorflow_text.python.ops import bert_tokenizer as bt

    return bt._DELIM_REGEX_PATTERN, bt._KEEP_DELIM_NO_WHITESPACE_PATTERN


def _hf_patterns() -> Tuple[str, str]:
    """Hugging Face's BertPreTokenizer split (after normalisation only spaces are whitespace)."""
    c = hf_classes()
    keep = f"{c['punct']}|{c['chinese']}"
    return f" +|{keep}", keep


class WordPiece:
    """BERT tokenization over a vocab lookup ``table`` (int64 ids), in one of ``FLAVOURS``."""

    def __init__(self, table: Any, lower_case: bool, flavour: str = TENSORFLOW_TEXT) -> None:
        import tensorflow as tf

        text = require_text()
        self.lower_case = bool(lower_case)
        self.flavour = check_flavour(flavour)
        self._text = text
        self._delim, self._keep = _tf_text_patterns() if flavour == TENSORFLOW_TEXT else _hf_patterns()
        self._pieces = text.WordpieceTokenizer(
            table,
            token_out_type=tf.int64,
            unknown_token="[UNK]",
            suffix_indicator="##",
            max_bytes_per_word=4 * MAX_WORD,  # never reached: _unk_long_words decides first
        )

    def normalize(self, strings: Any) -> Any:
        """The text as the flavour's tokenizer sees it before splitting (string tensor in, same shape out)."""
        import tensorflow as tf

        text = self._text
        if self.flavour == TENSORFLOW_TEXT:  # tensorflow_text's BasicTokenizer, step by step
            if self.lower_case:
                strings = text.normalize_utf8(text.case_fold_utf8(strings), "NFD")
                strings = tf.strings.regex_replace(strings, r"\p{Mn}", "")
            return tf.strings.regex_replace(strings, r"\p{Cc}|\p{Cf}", " ")
        c = hf_classes()
        strings = tf.strings.regex_replace(strings, c["drop"], "")
        strings = tf.strings.regex_replace(strings, c["space"], " ")
        if not self.lower_case:
            return strings
        strings = tf.strings.regex_replace(text.normalize_utf8(strings, "NFD"), c["mark"], "")
        # Each character lowercased on its own, as Rust's char::to_lowercase: ICU's lower() would turn a
        # word-final capital sigma into the final form, which Hugging Face's fast tokenizer never does.
        return tf.strings.lower(tf.strings.regex_replace(strings, "\u03a3", "\u03c3"), encoding="utf-8")

    def _too_long(self, words: Any) -> Any:
        import tensorflow as tf

        unit = "UTF8_CHAR" if self.flavour == HUGGINGFACE else "BYTE"
        return tf.strings.length(words, unit=unit) > MAX_WORD

    def _unk_long_words(self, words: Any) -> Any:
        import tensorflow as tf

        return tf.ragged.map_flat_values(lambda w: tf.where(self._too_long(w), "[UNK]", w), words)

    def _words(self, normalized: Any) -> Tuple[Any, Any, Any]:
        """(words, byte starts, byte ends), RaggedTensors [B, (words)]: whitespace splits, punctuation and
        CJK characters are words of their own."""
        return self._text.regex_split_with_offsets(normalized, self._delim, self._keep)

    def tokenize(self, strings: Any) -> Any:
        """int64 RaggedTensor [B, (words), (pieces)] of WordPiece ids."""
        words, _, _ = self._words(self.normalize(strings))
        return self._pieces.tokenize(self._unk_long_words(words))

    def pieces_with_offsets(self, normalized: Any) -> Tuple[Any, Any, Any]:
        """(ids, starts, ends): RaggedTensors [B, (words), (pieces)]; byte offsets into ``normalized`` (the
        output of ``normalize``). A word too long for the vocabulary is one ``[UNK]`` spanning the word."""
        import tensorflow as tf

        words, w_start, w_end = self._words(normalized)
        ids, p_start, p_end = self._pieces.tokenize_with_offsets(self._unk_long_words(words))
        long = tf.expand_dims(self._too_long(words), -1)  # [B, (words), 1]
        starts = tf.where(long, tf.expand_dims(w_start, -1), p_start + tf.expand_dims(w_start, -1))
        ends = tf.where(long, tf.expand_dims(w_end, -1), p_end + tf.expand_dims(w_start, -1))
        return ids, starts, ends
