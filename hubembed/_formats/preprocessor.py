"""``BertPreprocessor``: a ``tf.Module`` with the exact interface of the tfhub.dev BERT preprocessors
(``__call__``, ``tokenize`` with ``get_special_tokens_dict``, ``bert_pack_inputs(segments, seq_length=N)``),
built with tensorflow_text from a WordPiece vocabulary. It is what ``hubembed convert`` saves next to an
encoder, what ``hubembed.testing`` ships, and what pairs an unlisted encoder with the tokenizer its own
``vocab_file`` and ``do_lower_case`` describe.
"""

from __future__ import annotations

from typing import Sequence

from hubembed._tokenizer import TENSORFLOW_TEXT, WordPiece
from hubembed._util import require_text
from hubembed.errors import FormatError

DEFAULT_SEQ_LENGTH = 128


def _tf():
    import tensorflow as tf

    return tf


def build_preprocessor(
    vocab_file: str, lower_case: bool, seq_length: int = DEFAULT_SEQ_LENGTH, flavour: str = TENSORFLOW_TEXT
):
    """A ``BertPreprocessor`` (tf.Module) for a WordPiece vocabulary file, tokenizing as ``flavour`` says
    (``hubembed._tokenizer``: tfhub.dev's tensorflow_text tokenization, or Hugging Face's)."""
    return _make_class()(vocab_file, lower_case, seq_length, flavour)


_CLASS = None


def _make_class():
    """Define BertPreprocessor lazily so importing hubembed does not import TF."""
    global _CLASS
    if _CLASS is None:
        tf = _tf()
        _CLASS = _preprocessor_class(tf, _tokenize_class(tf), _pack_class(tf))
    return _CLASS


def _tokenize_class(tf):
    class _Tokenize(tf.Module):
        def __init__(self, tokenizer, special):
            super().__init__()
            self._tokenizer = tokenizer
            self._special = special

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, strings):
            return tf.cast(self._tokenizer.tokenize(strings), tf.int32)

        @tf.function(input_signature=[])
        def get_special_tokens_dict(self):
            return {k: tf.constant(v, tf.int32) for k, v in self._special.items()}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def tokenize_with_offsets(self, strings):
            # Byte offsets into the normalised text, as tensorflow_text's BertTokenizer reports them.
            tokens, starts, ends = self._tokenizer.pieces_with_offsets(self._tokenizer.normalize(strings))
            return {"tokens": tf.cast(tokens, tf.int32), "start_offsets": starts, "end_offsets": ends}

    return _Tokenize


def _pack_class(tf):
    class _PackInputs(tf.Module):
        def __init__(self, special, default_seq_length):
            super().__init__()
            self._special = special
            self._default_seq_length = default_seq_length

        # reduce_retracing: one trace serves every batch size and seq_length.
        @tf.function(autograph=False, reduce_retracing=True)
        def __call__(self, inputs, seq_length=None):
            if seq_length is None:
                seq_length = self._default_seq_length
            return pack_inputs(
                inputs,
                seq_length,
                start_of_sequence_id=self._special["start_of_sequence_id"],
                end_of_segment_id=self._special["end_of_segment_id"],
                padding_id=self._special["padding_id"],
            )

    return _PackInputs


def _preprocessor_class(tf, _Tokenize, _PackInputs):
    class BertPreprocessor(tf.Module):
        """tfhub.dev-compatible BERT preprocessing, built from a WordPiece vocab.

        >>> pre = build_preprocessor(vocab_path, lower_case=True)   # doctest: +SKIP
        >>> pre(tf.constant(["hello world"]))["input_word_ids"].shape  # doctest: +SKIP
        TensorShape([1, 128])
        """

        def __init__(
            self, vocab_file: str, lower_case: bool, seq_length: int = DEFAULT_SEQ_LENGTH, flavour=TENSORFLOW_TEXT
        ):
            super().__init__()
            with open(vocab_file, encoding="utf-8") as f:
                vocab = [line.rstrip("\n") for line in f]
            special = special_ids(vocab)
            self.vocab_file = tf.saved_model.Asset(vocab_file)
            self.do_lower_case = tf.Variable(bool(lower_case), trainable=False, name="do_lower_case")
            init = tf.lookup.TextFileInitializer(
                self.vocab_file,
                key_dtype=tf.string,
                key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                value_dtype=tf.int64,
                value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            )
            self._table = tf.lookup.StaticHashTable(init, default_value=-1)
            self._tokenizer = WordPiece(self._table, lower_case, flavour)
            self.flavour = flavour  # a Python attribute: the saved graph itself tokenizes so
            self.tokenize = _Tokenize(self._tokenizer, special)
            self.bert_pack_inputs = _PackInputs(special, seq_length)
            self._seq_length = int(seq_length)

        def tokenize_eagerly(self, strings):
            """``tokenize`` without a trace: tensorflow_text's ops run eagerly (one call per corpus chunk, so
            the trace ``tokenize`` would cost, about a second, is never paid back)."""
            return tf.cast(self._tokenizer.tokenize(strings), tf.int32)

        def trace_for_export(self):
            """Trace what a SavedModel needs, as Model Garden's export does: 1 or 2
            segments, ragged rank 1 (pieces) or 2 (words, pieces), with and without seq_length."""
            for ragged_rank in (1, 2):
                for n in (1, 2):
                    specs = [tf.RaggedTensorSpec([None] * (ragged_rank + 1), tf.int32) for _ in range(n)]
                    self.bert_pack_inputs.__call__.get_concrete_function(specs, seq_length=tf.TensorSpec([], tf.int32))
                    self.bert_pack_inputs.__call__.get_concrete_function(specs)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, strings):
            return self.bert_pack_inputs([self.tokenize(strings)], seq_length=self._seq_length)

    return BertPreprocessor


def special_ids(vocab: Sequence[str]) -> dict:
    """The special-token ids of a WordPiece vocabulary, as tfhub.dev preprocessors report them."""
    index = {tok: i for i, tok in enumerate(vocab)}
    missing_tokens = [t for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]") if t not in index]
    if missing_tokens:
        raise FormatError(
            f"the vocabulary has no {', '.join(missing_tokens)} token(s); a BERT WordPiece vocabulary "
            f"needs [PAD], [UNK], [CLS] and [SEP] (and usually [MASK])"
        )
    return {
        "vocab_size": len(vocab),
        "start_of_sequence_id": index["[CLS]"],
        "end_of_segment_id": index["[SEP]"],
        "padding_id": index["[PAD]"],
        "mask_id": index.get("[MASK]", index["[UNK]"]),
    }


def pack_inputs(inputs, seq_length, *, start_of_sequence_id, end_of_segment_id, padding_id):
    """``[CLS] a [SEP] (b [SEP])`` + padding to ``seq_length``, round-robin truncation.

    The same computation as Model Garden's ``BertPackInputs.bert_pack_inputs``.
    """
    tf = _tf()
    text = require_text()
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    segments = [t.merge_dims(-2, -1) if t.shape.rank > 2 else t for t in inputs]
    segments = [tf.cast(s, tf.int32) for s in segments]
    budget = seq_length - (len(segments) + 1)
    trimmed = text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
    combined, type_ids = text.combine_segments(
        trimmed, start_of_sequence_id=start_of_sequence_id, end_of_segment_id=end_of_segment_id
    )
    word_ids, mask = text.pad_model_inputs(combined, seq_length, pad_value=padding_id)
    type_ids, _ = text.pad_model_inputs(type_ids, seq_length, pad_value=0)
    return {
        "input_word_ids": tf.cast(word_ids, tf.int32),
        "input_mask": tf.cast(mask, tf.int32),
        "input_type_ids": tf.cast(type_ids, tf.int32),
    }


def save_preprocessor(
    vocab_file: str,
    lower_case: bool,
    out_dir: str,
    seq_length: int = DEFAULT_SEQ_LENGTH,
    flavour: str = TENSORFLOW_TEXT,
) -> str:
    """Write a tfhub.dev-style preprocessing SavedModel; returns ``out_dir``."""
    tf = _tf()
    module = build_preprocessor(vocab_file, lower_case, seq_length, flavour)
    module.trace_for_export()
    tf.saved_model.save(module, out_dir)
    return out_dir
