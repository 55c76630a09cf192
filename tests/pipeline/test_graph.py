"""One string packing (``hubembed._pipeline.graph.pack``) for the Keras layer and exports: texts and pairs packed to
the longest row, truncated to ``seq_length``; the [SEP]s ``special_positions`` finds by length are the packed ones."""

from typing import Any, List

import numpy as np
import tensorflow as tf

from hubembed._pipeline import graph

TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog", "a", ""]
SECOND = ["the cat", "good movie", "great film, the best", "x"]


def _packed(enc: Any, *segments: List[str], seq_length: int) -> tuple:
    pre = enc.preprocessor.module
    tokens = [pre.tokenize(tf.constant(s)) for s in segments]
    lengths = graph.packed_lengths(tokens, seq_length).numpy()
    ids, mask, types = (t.numpy() for t in graph.pack(pre, tokens, seq_length))
    return tokens, lengths, ids, mask, types


def test_texts_and_pairs_pack_to_the_longest_row(tiny_encoders: dict) -> None:
    enc = tiny_encoders["tf2_dict"]
    special = enc.preprocessor.special
    cls, sep = special["start_of_sequence_id"], special["end_of_segment_id"]
    for segments in ([TEXTS], [TEXTS, SECOND]):
        tokens, lengths, ids, mask, types = _packed(enc, *segments, seq_length=64)
        pieces = sum(graph.token_lengths(t).numpy() for t in tokens)
        np.testing.assert_array_equal(lengths, pieces + len(segments) + 1)
        np.testing.assert_array_equal(mask.sum(1), lengths)
        assert ids.shape[1] == lengths.max() and (ids[:, 0] == cls).all()
        by_id = (ids == cls) | (ids == sep)
        by_length = graph.special_positions(mask, types if len(segments) == 2 else None).numpy()
        np.testing.assert_array_equal(by_length, by_id & (mask == 1))
        assert (by_id.sum(1) == 1 + len(segments)).all()


def test_long_rows_are_truncated_to_seq_length(tiny_encoders: dict) -> None:
    enc = tiny_encoders["tf2_dict"]
    _, lengths, ids, mask, _ = _packed(enc, TEXTS, seq_length=5)
    assert ids.shape == (len(TEXTS), 5) and lengths.max() == 5
    np.testing.assert_array_equal(mask.sum(1), lengths)
    sep = enc.preprocessor.special["end_of_segment_id"]
    assert all(ids[i, n - 1] == sep for i, n in enumerate(lengths))


def test_a_batch_of_empty_texts_packs_to_two_tokens(tiny_encoders: dict) -> None:
    enc = tiny_encoders["tf2_dict"]
    _, lengths, ids, _, _ = _packed(enc, ["", ""], seq_length=16)
    assert ids.shape == (2, 2) and list(lengths) == [2, 2]
