"""The Python WordPiece (``hubembed._wordpiece``, what the int8 path tokenizes with, no TensorFlow) against
the tokenizers nobody here wrote, on the fuzzed corpus of ``test_tokenizer``: tensorflow_text's ``BertTokenizer``
(ids) and Hugging Face's fast tokenizer (ids and the character offsets of every piece), cased and uncased; and
against hubembed's TensorFlow tokenization of both flavours (ids)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from hubembed._tokenizer import WordPiece as TFWordPiece
from hubembed._wordpiece import HUGGINGFACE, TENSORFLOW_TEXT, WordPiece
from hubembed.errors import FormatError, InputError
from tests.pipeline.test_tokenizer import fuzzed


@pytest.fixture(scope="module")
def vocab(minilm_source):
    path = os.path.join(minilm_source, "vocab.txt")
    with open(path, encoding="utf-8") as f:
        return path, [line.rstrip("\n") for line in f]


def _table(words):
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(words), tf.range(len(words), dtype=tf.int64))
    return tf.lookup.StaticHashTable(init, -1)


@pytest.mark.parametrize("lower_case", [True, False])
def test_the_tensorflow_text_flavour_equals_bert_tokenizer(vocab, lower_case):
    import tensorflow_text as text

    _, words = vocab
    texts = fuzzed(2000, seed=11)
    ref = text.BertTokenizer(_table(words), lower_case=lower_case, token_out_type=tf.int64, max_bytes_per_word=100)
    expected = ref.tokenize(tf.constant(texts)).merge_dims(-2, -1).to_list()
    ours = [row.tolist() for row in WordPiece(words, lower_case, TENSORFLOW_TEXT).ids(texts)]
    bad = [(t, a, b) for t, a, b in zip(texts, ours, expected) if a != b]
    assert not bad, f"{len(bad)} of {len(texts)} differ, e.g. {bad[:3]}"


@pytest.mark.parametrize("lower_case", [True, False])
def test_the_huggingface_flavour_equals_the_fast_tokenizer_ids_and_offsets(vocab, lower_case):
    from tokenizers import BertWordPieceTokenizer  # what BertTokenizerFast runs

    path, words = vocab
    hf = BertWordPieceTokenizer(path, clean_text=True, handle_chinese_chars=True, lowercase=lower_case)
    texts = fuzzed(2000, seed=12)
    ref = hf.encode_batch(texts, add_special_tokens=False)
    assert len({i for r in ref for i in r.ids}) > 100  # the corpus exercises the vocabulary
    wp = WordPiece(words, lower_case, HUGGINGFACE)
    got = wp.words(texts)
    bad = [
        (t, r.ids, w.ids.tolist())
        for t, r, w in zip(texts, ref, got)
        if r.ids != w.ids.tolist() or [list(o) for o in r.offsets] != w.piece_spans.tolist()
    ]
    assert not bad, f"{len(bad)} of {len(texts)} differ, e.g. {bad[:3]}"
    assert [r.tolist() for r in wp.ids(texts)] == [r.ids for r in ref]  # the ids-only path agrees


@pytest.mark.parametrize("flavour", [TENSORFLOW_TEXT, HUGGINGFACE])
@pytest.mark.parametrize("lower_case", [True, False])
def test_both_flavours_equal_hubembeds_tensorflow_tokenization(vocab, flavour, lower_case):
    _, words = vocab
    texts = fuzzed(1500, seed=13)
    expected = TFWordPiece(_table(words), lower_case, flavour).tokenize(tf.constant(texts)).merge_dims(-2, -1)
    wp = WordPiece(words, lower_case, flavour)
    assert [r.tolist() for r in wp.ids(texts)] == expected.to_list()
    assert [w.ids.tolist() for w in wp.words(texts)] == expected.to_list()  # words() tokenizes the same


def test_words_group_pieces_and_span_the_original_text(vocab):
    _, words = vocab
    wp = WordPiece(words, True, HUGGINGFACE)
    text = "Crème\u200b brûlée, unbelievably \x00good!"
    (w,) = wp.words([text])
    # A dropped character (U+200B, U+0000) belongs to no word: spans run from a word's first kept character to its
    # last, as Hugging Face's offsets do.
    assert [text[s:e] for s, e in w.word_spans] == ["Crème", "brûlée", ",", "unbelievably", "good", "!"]
    pieces = wp.piece_strings(w.ids)
    assert pieces[:3] == ["cr", "##eme", "br"] and "##bly" in pieces
    assert np.all(np.diff(w.piece_word) >= 0) and w.piece_word[-1] == len(w.word_spans) - 1
    assert wp.words([""])[0].ids.shape == (0,) and wp.words(["\u200b "])[0].word_spans.shape == (0, 2)


def test_long_words_are_unk_by_bytes_or_by_characters(vocab):
    _, words = vocab
    unk = words.index("[UNK]")
    word = "привет" * 9  # 54 characters, 108 bytes
    assert WordPiece(words, True, TENSORFLOW_TEXT).ids([word])[0].tolist() == [unk]
    assert len(WordPiece(words, True, HUGGINGFACE).ids([word])[0]) > 9
    assert WordPiece(words, True, HUGGINGFACE).ids(["привет" * 17])[0].tolist() == [unk]  # 102 characters


def test_bad_vocabularies_and_flavours_are_refused():
    with pytest.raises(InputError, match="flavour"):
        WordPiece(["[UNK]"], True, "sentencepiece")
    with pytest.raises(FormatError, match=r"\[UNK\]"):
        WordPiece(["a", "b"], True, HUGGINGFACE)
