"""Write hubembed/data/wordpiece_chars.json: what each of BERT's two tokenizer flavours does to every character.

hubembed tokenizes without TensorFlow on its int8 path (``hubembed._wordpiece``). Both flavours
normalise text one character at a time, so the whole of their normalisation is a table: for every code point,
the string it becomes (kept here only where that is not the character itself). The tables, and the classes
that split words, are read off the tokenizers themselves by asking them about every code point, not taken from
Python's ``unicodedata``: its Unicode version follows the Python release (3.11: Unicode 14), while ICU and RE2
inside tensorflow_text and the tables compiled into Hugging Face's ``tokenizers`` have their own.

* ``tensorflow_text``: tensorflow_text's BertTokenizer steps (``hubembed._tokenizer.WordPiece.normalize``:
  ICU's NFKC case folding, NFD, \\p{Mn} dropped, \\p{Cc}/\\p{Cf} to spaces; cased: only the last step), and the
  RE2 classes of its split: ``space`` (a delimiter, dropped) and ``keep`` (a word of its own: punctuation, CJK).
* ``huggingface``: ``tokenizers``' ``BertNormalizer`` (clean_text, strip_accents with lowercase) and
  ``BertPreTokenizer``'s classes: ``space`` (whitespace after normalisation) and ``keep`` (punctuation, and the
  CJK characters ``handle_chinese_chars`` isolates).

Run it with the dev extras installed: ``.venv/bin/python scripts/wordpiece_tables.py``.
"""

import json
import os

import tensorflow as tf
import tensorflow_text as text
import tokenizers
from hf_bert_tables import ranges  # the same [first, last] runs as the Hugging Face table
from tokenizers import normalizers, pre_tokenizers

from hubembed._tokenizer import _tf_text_patterns

OUT = os.path.join(os.path.dirname(__file__), "..", "hubembed", "data", "wordpiece_chars.json")
CODEPOINTS = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


def changed(chars, outputs):
    """What normalisation does where it changes a character: ``drop`` and ``blank`` (ranges of the code points that
    become nothing or one space) and ``map`` (code point -> string, every other change)."""
    drop, blank, other = [], [], {}
    for c, o in zip(chars, outputs):
        if o == c:
            continue
        if o in ("", " "):
            (drop if o == "" else blank).append(ord(c))
        else:
            other[str(ord(c))] = o
    return {"drop": ranges(drop), "blank": ranges(blank), "map": other}


def tf_text_tables(chars):
    strings = tf.constant(chars)
    tables = {}
    for lower in (True, False):
        s = strings
        if lower:
            s = tf.strings.regex_replace(text.normalize_utf8(text.case_fold_utf8(s), "NFD"), r"\p{Mn}", "")
        s = tf.strings.regex_replace(s, r"\p{Cc}|\p{Cf}", " ")
        tables["lower" if lower else "cased"] = changed(chars, [b.decode("utf-8") for b in s.numpy()])
    delim, keep = _tf_text_patterns()
    is_delim = tf.strings.regex_full_match(strings, delim).numpy()
    is_keep = tf.strings.regex_full_match(strings, keep).numpy()
    tables["space"] = ranges(ord(c) for c, d, k in zip(chars, is_delim, is_keep) if d and not k)
    tables["keep"] = ranges(ord(c) for c, k in zip(chars, is_keep) if k)
    return tables


def huggingface_tables(chars):
    tables = {}
    for lower in (True, False):
        norm = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=False, strip_accents=None, lowercase=lower
        )
        tables["lower" if lower else "cased"] = changed(chars, [norm.normalize_str(c) for c in chars])
    chinese = normalizers.BertNormalizer(
        clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    split = pre_tokenizers.BertPreTokenizer()
    space, keep = [], []
    for c in chars:
        words = [w for w, _ in split.pre_tokenize_str("a" + c + "b")]
        if words == ["a", "b"]:
            space.append(ord(c))
        elif words == ["a", c, "b"] or chinese.normalize_str(c) == f" {c} ":
            keep.append(ord(c))
    tables["space"], tables["keep"] = ranges(space), ranges(keep)
    return tables


def main():
    chars = [chr(cp) for cp in CODEPOINTS]
    data = {
        "about": (
            "Per flavour: lower/cased, what normalisation does to a code point where it changes it (drop, blank: "
            "ranges that become nothing or a space; map: code point -> string); space/keep, [first, last] ranges "
            "of the characters that end a word (dropped) or are a word of their own. Read off the tokenizers by "
            "scripts/wordpiece_tables.py"
        ),
        "versions": {"tensorflow_text": text.__version__, "tokenizers": tokenizers.__version__},
        "tensorflow_text": tf_text_tables(chars),
        "huggingface": huggingface_tables(chars),
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"), ensure_ascii=True, sort_keys=True)
        f.write("\n")
    sizes = {
        fl: {k: len(v) if k in ("space", "keep") else {m: len(x) for m, x in v.items()} for k, v in data[fl].items()}
        for fl in ("tensorflow_text", "huggingface")
    }
    print(sizes, os.path.getsize(OUT), "bytes ->", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
