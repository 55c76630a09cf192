"""Embedding inside a tf.data pipeline: a dataset of strings in, a dataset of vectors out (``Encoder.embed_dataset``).

The stages::

    strings   batch(batch_size)       a dataset of single strings is read batch_size at a time (batches: as given)
    tokenize  map(num_parallel_calls=AUTOTUNE, deterministic=True): the paired preprocessor's own ``tokenize``, as
              TensorFlow ops on tf.data's input threads (several batches at once, in order)
    encode    map(tf.py_function): the batch's word-piece ids through the pipeline ``Encoder.embed`` runs (rows and
              windows, length-sorted batches of at most ``batch_size`` rows and ``max_tokens`` tokens, the backend,
              stitching, pooling, transform, truncate_dim, normalize, precision), one batch at a time
    unbatch   one vector per string again (for a dataset of single strings)

Why the encoding runs in Python (``tf.py_function``) and not as graph ops: long texts (overlapping windows stitched,
pooled as their windows stream), attention pooling, the transform and the output precision are numpy stages of
``Encoder.embed``; running those very stages gives ``embed``'s numbers for every spec, and the int8 model (LiteRT:
numpy in, numpy out) runs the same way. The encoder computes on its own threads (TensorFlow or LiteRT release the
GIL), one batch ahead, so the input threads keep tokenizing meanwhile. The price: the dataset holds a Python
function, so it runs in this process (not on tf.data service workers) and cannot be serialized; an in-graph
alternative with the same numbers for texts that fit one window is ``Encoder.export`` (its SavedModel maps over a
dataset: ``ds.batch(n).map(tf.saved_model.load(out))``).

This module receives the backend and plain values (``IdsEmbedder``), not the ``Encoder``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from hubembed._pipeline import batching
from hubembed._pipeline import quantize as quantize_mod
from hubembed._pipeline.info import ExtractionInfo
from hubembed._pipeline.run import Packing, pool_text, text_tokens
from hubembed._pipeline.spec import EmbedSpec, LayerPlan
from hubembed.errors import InputError


def check_batching(batch_size: Any, max_tokens: Any, seq_length: int) -> None:
    """``batch_size`` and ``max_tokens`` as ``Encoder.embed`` takes them, checked before any dataset is built.

    Raises:
        InputError: a batch size that is not an integer >= 1, a token budget that is not None or an integer of at
            least one window.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r}; it must be an integer >= 1")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer))):
        raise InputError(f"max_tokens={max_tokens!r}; valid: None (rows only) or an integer")
    batching.plan([], batch_size=int(batch_size), max_tokens=_int(max_tokens), seq_length=seq_length)  # its own checks


def _int(n: Any) -> Optional[int]:
    return None if n is None else int(n)


def text_spec(dataset: Any) -> Tuple[Any, bool]:
    """(the text component's ``tf.TensorSpec``, whether the element is a tuple) of a dataset ``embed_dataset``
    takes: elements that are strings (``[]``) or batches of strings (``[B]``), or tuples whose first item is one
    (the other items ride along: ``(text, label)`` gives ``(vector, label)``).

    Raises:
        InputError: not a ``tf.data.Dataset``, or elements of another kind (named, with what to pass instead).
    """
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        raise InputError(
            f"embed_dataset takes a tf.data.Dataset of strings, not {type(dataset).__name__}; for a list of texts "
            f"use embed(texts), or tf.data.Dataset.from_tensor_slices(texts)"
        )
    element = dataset.element_spec
    is_tuple = isinstance(element, tuple)
    text = element[0] if is_tuple and element else element
    if not (isinstance(text, tf.TensorSpec) and text.dtype == tf.string and text.shape.rank in (0, 1)):
        hint = "; map a dict to a tuple first: ds.map(lambda d: (d['text'], ...))" if isinstance(element, dict) else ""
        raise InputError(
            f"embed_dataset: elements must be strings [] or batches of strings [B], or tuples whose first item is "
            f"one (text, label...); this dataset's element is {element}{hint}"
        )
    return text, is_tuple


@dataclass(frozen=True)
class IdsEmbedder:
    """Word-piece ids of texts -> their vectors, as ``Encoder.embed`` computes them from the same ids.

    ``backend``: what encodes packed batches for ``plan`` (``Encoder.backend_for``); ``spec``: the call's spec;
    ``transform``: its loaded transform (or None); ``packing``: special ids, window, batch limits; ``hidden``: the
    encoder's width; ``prompt_ids``: the ids of the spec's prompt (resolved and tokenized by the encoder), or None.
    """

    backend: Any
    plan: LayerPlan
    spec: EmbedSpec
    transform: Any
    packing: Packing
    hidden: int
    prompt_ids: Optional[np.ndarray] = None

    @property
    def shape(self) -> Tuple[int, ...]:
        """One text's vector, as ``embed`` returns it."""
        return self.spec.shape(self.plan, self.hidden, self.transform)

    @property
    def dtype(self) -> Any:
        """The numpy dtype of the vectors (float32, or the codes' with ``precision``)."""
        return quantize_mod.dtype(self.spec.precision)

    def __call__(self, ids: List[np.ndarray]) -> np.ndarray:
        """[N] int32 id arrays (content pieces, no [CLS]/[SEP]) -> [N, *shape] vectors; logs what was not plain."""
        spec = self.spec
        if not ids:
            return np.zeros((0,) + self.shape, self.dtype)
        rows, n_windows, truncated = batching.make_rows(
            ids, self.packing.seq_length, long=spec.long, stride=spec.stride, prompt=self.prompt_ids
        )
        n_tokens = np.array([len(a) for a in ids], np.int64)
        info = ExtractionInfo(n_tokens, n_windows, truncated, n_tokens == 0)
        out = np.zeros((len(ids),) + spec.pooled_shape(self.plan, self.hidden), np.float32)
        pool = (spec.pooling, spec.special_tokens, spec.include_prompt)
        for t, tt in text_tokens(self.backend, rows, truncated, self.plan, self.packing, pool=pool):
            out[t] = pool_text(tt, self.plan, *pool)
        info.report()
        return np.asarray(spec.finish(out, self.transform), self.dtype)

    def from_ragged(self, values: Any, splits: Any) -> np.ndarray:
        """``__call__`` of a ragged batch's flat values and row splits (the tensors ``tf.py_function`` passes)."""
        values, splits = np.asarray(values, np.int32), np.asarray(splits, np.int64)
        return self([values[splits[i] : splits[i + 1]] for i in range(len(splits) - 1)])


def embed_dataset(dataset: Any, tokenize: Callable[[Any], Any], embedder: IdsEmbedder) -> Any:
    """``dataset`` (checked by ``text_spec``) with each string replaced by its vector (``IdsEmbedder``), in order.

    Args:
        dataset: strings or batches of strings, or tuples whose first item is one.
        tokenize: the paired preprocessor's ``tokenize`` (strings [B] -> ragged int ids [B, (words), (pieces)] or
            [B, (pieces)]), called in the graph of a parallel map.
        embedder: the call's ids -> vectors.

    Returns:
        A ``tf.data.Dataset`` of the same structure: vectors ``[*shape]`` (or ``[B, *shape]`` batches) where the
        strings were, float32 or the codes' dtype.
    """
    import tensorflow as tf

    text, is_tuple = text_spec(dataset)
    single = text.shape.rank == 0
    shape, dtype = embedder.shape, tf.as_dtype(embedder.dtype)

    def tokenized(*element: Any) -> tuple:
        pieces = tokenize(element[0])
        if pieces.shape.rank > 2:
            pieces = pieces.merge_dims(-2, -1)
        return (tf.cast(pieces.flat_values, tf.int32), pieces.row_splits) + tuple(element[1:])

    def encoded(values: Any, splits: Any, *rest: Any) -> Any:
        vectors = tf.py_function(
            lambda v, s: embedder.from_ragged(v.numpy(), s.numpy()), [values, splits], dtype, name="hubembed_encode"
        )
        vectors.set_shape([None, *shape])
        return (vectors, *rest) if is_tuple else vectors

    ds = dataset.batch(embedder.packing.batch_size) if single else dataset
    ds = ds.map(tokenized, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(encoded)  # one batch at a time: the encoder itself computes on several threads, a batch ahead
    if not single:
        return ds
    ds = ds.unbatch()
    n = int(dataset.cardinality())
    # One vector per string: a known count survives unbatch (Keras' fit then knows its steps from the first epoch).
    return ds.apply(tf.data.experimental.assert_cardinality(n)) if n >= 0 else ds
