"""hubembed._pipeline.tokens: pieces -> words (subword rules), given words, on hand-made embeddings."""

import numpy as np
import pytest

from hubembed._pipeline.tokens import TokenEmbeddings, Words, join_words, to_given_words, to_words, token_ids

TEXT = "unaffable cats sat"
#        0123456789012345678
# pieces: un ##aff ##able | cats | sa ##t
PIECES = ["un", "##aff", "##able", "cats", "sa", "##t"]
PIECE_SPANS = np.array([[0, 2], [2, 5], [5, 9], [10, 14], [15, 17], [17, 18]])
PIECE_WORD = np.array([0, 0, 0, 1, 2, 2])
WORD_SPANS = np.array([[0, 9], [10, 14], [15, 18]])
VECS = np.array(
    [[1.0, -4.0], [3.0, 0.0], [2.0, 8.0], [5.0, 5.0], [-1.0, 2.0], [7.0, -6.0]],
    np.float32,
)


def _te(n=6, vectors=VECS):
    return TokenEmbeddings(TEXT, PIECES[:n], np.arange(n), PIECE_SPANS[:n], vectors[:n], n_windows=2, truncated=6 - n)


def _words():
    return Words(np.arange(6), PIECE_WORD, PIECE_SPANS, WORD_SPANS)


@pytest.mark.parametrize(
    "subword,expected",
    [
        ("first", [[1, -4], [5, 5], [-1, 2]]),
        ("last", [[2, 8], [5, 5], [7, -6]]),
        ("mean", [[2, 4 / 3], [5, 5], [3, -2]]),
        ("max", [[3, 8], [5, 5], [7, 2]]),
        ("first_last", [[1, -4, 2, 8], [5, 5, 5, 5], [-1, 2, 7, -6]]),
    ],
)
def test_to_words(subword, expected):
    we = to_words(_te(), _words(), subword)
    assert we.words == ["unaffable", "cats", "sat"]
    np.testing.assert_array_equal(we.spans, WORD_SPANS)
    np.testing.assert_allclose(we.vectors, np.array(expected, np.float32), rtol=1e-6)
    assert (we.n_windows, we.truncated) == (2, 0)


def test_to_words_after_truncation_keeps_the_words_with_a_piece():
    # 5 pieces left: "sat" has only "sa"; its span is still the whole word.
    we = to_words(_te(n=5), _words(), "mean")
    assert we.words == ["unaffable", "cats", "sat"] and we.truncated == 1
    np.testing.assert_allclose(we.vectors[2], [-1, 2])
    we = to_words(_te(n=3), _words(), "last")
    assert we.words == ["unaffable"]
    np.testing.assert_allclose(we.vectors, [[2, 8]])


@pytest.mark.parametrize("subword,width", [("mean", (2,)), ("first_last", (4,))])
def test_to_words_of_no_piece_is_empty(subword, width):
    we = to_words(_te(n=0), _words(), subword)
    assert we.words == [] and we.vectors.shape == (0,) + width


def test_to_words_keeps_a_layer_axis():
    v = np.stack([VECS, 10 * VECS], axis=1)  # [6, k=2, H=2]
    we = to_words(_te(vectors=v), _words(), "max")
    assert we.vectors.shape == (3, 2, 2)
    np.testing.assert_allclose(we.vectors[0], [[3, 8], [30, 80]])


def test_join_words():
    text, spans = join_words(["New", "York", "", "is"])
    assert text == "New York  is"
    np.testing.assert_array_equal(spans, [[0, 3], [4, 8], [9, 9], [10, 12]])
    assert [text[s:e] for s, e in spans] == ["New", "York", "", "is"]
    text, spans = join_words([])
    assert text == "" and spans.shape == (0, 2)


def test_to_given_words_takes_the_pieces_inside_each_span():
    # Given words "unaffable cats" and "sat": the first spans two BERT words.
    spans = np.array([[0, 14], [15, 18], [18, 18]])
    we = to_given_words(_te(), ["unaffable cats", "sat", ""], spans, "mean")
    np.testing.assert_allclose(we.vectors[0], VECS[:4].mean(0), rtol=1e-6)
    np.testing.assert_allclose(we.vectors[1], VECS[4:].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(we.vectors[2], [0, 0])
    assert we.no_piece == [2] and we.words == ["unaffable cats", "sat", ""]
    fl = to_given_words(_te(), ["unaffable cats", "sat", ""], spans, "first_last")
    np.testing.assert_allclose(fl.vectors[:2], [[1, -4, 5, 5], [-1, 2, 7, -6]])
    assert fl.vectors.shape == (3, 4)


def test_to_given_words_after_truncation_lists_words_without_pieces():
    spans = np.array([[0, 9], [10, 14], [15, 18]])
    we = to_given_words(_te(n=3), ["unaffable", "cats", "sat"], spans, "first")
    np.testing.assert_allclose(we.vectors, [[1, -4], [0, 0], [0, 0]])
    assert we.no_piece == [1, 2] and we.truncated == 3
    empty = to_given_words(_te(n=0), ["a"], np.array([[0, 1]]), "max")
    assert empty.no_piece == [0] and empty.vectors.shape == (1, 2)


def test_token_ids_asks_the_preprocessor_once_and_not_for_nothing():
    class Pre:
        calls = []

        def token_arrays(self, texts):
            self.calls.append(texts)
            return [np.array([len(t)], np.int32) for t in texts]

    pre = Pre()
    assert token_ids(pre, []) == [] and pre.calls == []
    out = token_ids(pre, ("ab", "cde"))
    assert [a.tolist() for a in out] == [[2], [3]] and pre.calls == [["ab", "cde"]]


def test_word_tokenizer_spans_slice_the_original_text(tmp_path):
    from hubembed._pipeline.tokens import WordTokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + PIECES + [","]) + "\n")
    tok = WordTokenizer(str(vocab), lower_case=True)
    text = "Unaffable,  ÇATS sat"  # the accent and case are normalised away; spans still slice the original
    (w,) = tok.words([text])
    assert tok.piece_strings(w.ids) == ["un", "##aff", "##able", ",", "cats", "sa", "##t"]
    assert [text[s:e] for s, e in w.piece_spans] == ["Un", "aff", "able", ",", "ÇATS", "sa", "t"]
    assert w.piece_word.tolist() == [0, 0, 0, 1, 2, 3, 3]
    assert [text[s:e] for s, e in w.word_spans] == ["Unaffable", ",", "ÇATS", "sat"]
    assert tok.words([]) == []
    (empty,) = tok.words(["   "])
    assert len(empty.ids) == 0 and empty.word_spans.shape == (0, 2)
