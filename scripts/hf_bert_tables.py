"""Write hubembed/data/huggingface_bert_chars.json: the character classes of Hugging Face's BERT tokenizer.

Hugging Face's fast BERT tokenizer (``tokenizers``: ``BertNormalizer`` + ``BertPreTokenizer``) decides what a
character is from Unicode tables compiled into it, which are older than the ones tensorflow_text's and RE2's
regular expressions use (a character assigned since is "unassigned" to one and a letter, mark or punctuation
to the other). hubembed's Hugging Face tokenization (``hubembed._tokenizer``) therefore uses classes read off
the tokenizer itself, by asking it about every code point:

* ``drop``: removed by ``clean_text`` (control, format, private-use characters, U+0000, U+FFFD);
* ``space``: turned into a space by ``clean_text``;
* ``chinese``: padded with spaces by ``handle_chinese_chars``;
* ``mark``: removed by ``strip_accents`` (a character NFD leaves alone that comes out empty);
* ``punct``: split off on its own by ``BertPreTokenizer``.

Run it with the dev extras installed: ``.venv/bin/python scripts/hf_bert_tables.py``.
"""

import json
import os
import unicodedata

import tokenizers
from tokenizers import normalizers, pre_tokenizers

OUT = os.path.join(os.path.dirname(__file__), "..", "hubembed", "data", "huggingface_bert_chars.json")


def ranges(codepoints):
    out = []
    for c in sorted(codepoints):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def main():
    clean = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False
    )
    chinese = normalizers.BertNormalizer(
        clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    strip = normalizers.BertNormalizer(
        clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False
    )
    split = pre_tokenizers.BertPreTokenizer()
    classes = {k: [] for k in ("drop", "space", "chinese", "mark", "punct")}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        cleaned = clean.normalize_str("a" + c + "b")
        if cleaned == "ab":
            classes["drop"].append(cp)
        elif cleaned == "a b":
            classes["space"].append(cp)
        if chinese.normalize_str(c) == f" {c} ":
            classes["chinese"].append(cp)
        if unicodedata.normalize("NFD", c) == c and strip.normalize_str(c) == "":
            classes["mark"].append(cp)
        if [w for w, _ in split.pre_tokenize_str("a" + c + "b")] == ["a", c, "b"]:
            classes["punct"].append(cp)
    data = {
        "about": "The character classes of Hugging Face's BERT tokenizer (BertNormalizer, BertPreTokenizer), as "
        "[first, last] code point ranges read off the tokenizer by scripts/hf_bert_tables.py",
        "tokenizers": tokenizers.__version__,
        **{k: ranges(v) for k, v in classes.items()},
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
        f.write("\n")
    print({k: len(v) for k, v in classes.items()}, "->", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
