"""The per-text pipeline as one TensorFlow graph: a string tensor ``[B]`` in, vectors ``[B, D]`` out.

What ``hubembed export`` saves (``Encoder.export`` composes it, ``hubembed._formats.export`` writes the folder)::

    tokenize   the paired preprocessor's own ``tokenize`` (the tokens ``Encoder.embed`` gets; its fixes reach exports)
    batch      the call's texts sorted by length, in chunks of at most ``max_rows`` rows and ``max_tokens`` padded
               tokens (as ``batching.plan``), run one after the other in a ``tf.while_loop``
    pack       the preprocessor's ``bert_pack_inputs``: [CLS] text [SEP], each chunk padded to its own longest text,
               at most ``seq_length`` (a longer text is truncated to one window)
    encode     the backend, inlined: the Hub model's restored function, or the Model Garden rebuild's blocks
    select + combine the layers, pool (masked), transform, L2-normalise: TF twins of ``layers.Combine``,
               ``pooling.pool`` and ``transform.Whitening`` (tests check they agree)

The vectors come back in input order. Every function has a ``[None]`` string signature and is traced once, by
``tf.saved_model.save``: nothing retraces per batch size or length. The Keras feature layer (``hubembed.keras``)
packs its strings (``pack``) and makes its outputs (``Head``) with the same functions.
``ExportedEmbedder`` is the other end: an export loaded back (``hubembed.load(folder)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from hubembed._pipeline.info import ExtractionInfo
from hubembed._pipeline.layers import Combine
from hubembed._pipeline.spec import EmbedSpec
from hubembed._pipeline.texts import check_texts
from hubembed.errors import InputError

INPUT = "inputs"  # the serving signature's input and output names, as the TF Hub text-embedding modules name them
OUTPUT = "outputs"


# ---------------------------------------------------------------------------
# TF twins of the numpy stages (same numbers within float32 rounding)
# ---------------------------------------------------------------------------


def combine(picked: Sequence[Any], how: Combine) -> Any:
    """k tensors [B, S, H] -> [B, S, H'] as ``Combine.apply`` (``none`` only for one layer)."""
    import tensorflow as tf

    if len(picked) == 1:
        return picked[0]
    if how.how == "concat":
        return tf.concat(picked, axis=-1)
    if how.how == "mean":
        return tf.add_n(picked) / float(len(picked))
    if how.how == "sum":
        return tf.add_n(picked)
    if how.how in ("weighted", "scalar_mix"):
        coefficients = how.coefficients()
        assert coefficients is not None  # weighted and scalar_mix have them
        return tf.add_n([float(c) * t for c, t in zip(coefficients, picked)])
    raise InputError(f"combine={how.how!r} keeps a layer axis; an export gives one vector per text")


def received_attention(probs: Any, mask: Any) -> Any:
    """[B, heads, S, S] attention probabilities -> [B, S], as ``pooling.received_attention``."""
    import tensorflow as tf

    m = tf.cast(mask, probs.dtype)
    per_query = tf.reduce_mean(probs, axis=1) * m[:, :, None]
    return tf.reduce_sum(per_query, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1, keepdims=True), 1.0) * m


def special_positions(mask: Any, types: Any = None) -> Any:
    """[B, S] bool: [CLS] (position 0) and the [SEP] that ends each segment, found by the rows' lengths (not by
    token id, as ``batching.pack`` marks them): the last position of each row and, with the type ids ``types``
    [B, S] of sentence pairs, the last of the first segment (where the type id changes inside the row)."""
    import tensorflow as tf

    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1, keepdims=True)
    pos = tf.range(tf.shape(mask)[1])[None, :]
    special = tf.logical_or(tf.equal(pos, 0), tf.equal(pos, lengths - 1))
    if types is None:
        return special
    types = tf.cast(types, tf.int32)
    ends = tf.logical_and(tf.not_equal(types[:, :-1], types[:, 1:]), tf.cast(mask[:, 1:], tf.bool))
    return tf.logical_or(special, tf.pad(ends, [[0, 0], [0, 1]]))


def pool(x: Any, mask: Any, special: Any, pooling: str, special_tokens: bool = True, weights: Any = None) -> Any:
    """Masked pooling of x [B, S, H] -> [B, H'] ([B, 2H] for mean_max), as ``pooling.pool``."""
    import tensorflow as tf

    if pooling == "cls":
        return x[:, 0]
    w = tf.cast(mask, x.dtype)
    if not special_tokens:
        w = w * (1.0 - tf.cast(special, x.dtype))
    if pooling == "attention":
        w = tf.math.divide_no_nan(w * weights, tf.reduce_sum(w * weights, axis=1, keepdims=True))
        return tf.reduce_sum(x * w[:, :, None], axis=1)
    if pooling == "weightedmean":
        w = w * tf.cast(tf.range(1, tf.shape(x)[1] + 1), x.dtype)[None, :]
        return tf.reduce_sum(x * w[:, :, None], axis=1) / tf.maximum(tf.reduce_sum(w, axis=1, keepdims=True), 1e-9)
    count = tf.reduce_sum(w, axis=1, keepdims=True)
    total = tf.reduce_sum(x * w[:, :, None], axis=1)
    mean = total / tf.maximum(count, 1.0)
    if pooling in ("mean", "first_last_avg"):
        return mean
    if pooling == "mean_sqrt_len":
        return total / tf.sqrt(tf.maximum(count, 1.0))
    biggest = tf.reduce_max(tf.where(w[:, :, None] > 0, x, tf.fill(tf.shape(x), x.dtype.min)), axis=1)
    biggest = tf.where(count > 0, biggest, tf.zeros_like(biggest))
    if pooling == "max":
        return biggest
    if pooling == "mean_max":
        return tf.concat([mean, biggest], axis=-1)
    raise InputError(f"pooling={pooling!r} is not a token pooling")


def l2_normalize(v: Any) -> Any:
    """As ``pooling.l2_normalize``: v / max(|v|, 1e-12)."""
    import tensorflow as tf

    return v / tf.maximum(tf.norm(v, axis=-1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------

HEAD_OUTPUTS = ("embedding", "pooled", "sequence", "layers")


@dataclass(frozen=True)
class Head:
    """What turns the encoder's activations into the output: the spec resolved for one encoder.

    ``output``: ``"embedding"`` (one vector per text: the layers combined, pooled, transformed, normalised; what an
    export gives), ``"pooled"`` (the model's pooled output, normalised if asked), ``"sequence"`` (the combined
    token vectors [B, S, D]) or ``"layers"`` (the layers apart, [B, k, S, H]); ``return_mask``: a sequence or
    layers output comes with the padding mask, ``[y, mask]``; ``dtype``: what the outputs are cast to last (a
    Keras layer's compute dtype; None: as computed); ``mix``: a callable (k tensors [B, S, H] -> [B, S, H]) used
    instead of the plan's combination (the Keras layer's learnable scalar mix).
    """

    plan: Any  # LayerPlan
    pooling: Optional[str]
    special_tokens: bool = True
    normalize: bool = False
    transform: Any = None  # a Whitening, or None
    output: str = "embedding"
    return_mask: bool = False
    dtype: Any = None
    mix: Optional[Callable[[List[Any]], Any]] = None

    def __call__(self, acts: Any, mask: Any, types: Any = None) -> Any:
        """The output for ``acts`` (``Activations``) of rows packed with the padding mask ``mask`` [B, S] (and their
        type ids ``types`` [B, S], to find the [SEP] between the segments of sentence pairs)."""
        import tensorflow as tf

        if self.output == "pooled" or (self.output == "embedding" and self.pooling == "pooled"):
            return self._finish(acts.pooled)
        picked = [acts.layer(i) for i in self.plan.indices]
        if self.output == "layers":
            return self._tokens(tf.stack(picked, axis=1), mask)
        x = self._combine(picked)
        if self.output == "sequence":
            return self._tokens(x, mask)
        weights = None
        if self.plan.attention_layer is not None:
            weights = received_attention(acts.attention[self.plan.attention_layer], mask)
        assert self.pooling is not None  # an embedding pools
        return self._finish(pool(x, mask, special_positions(mask, types), self.pooling, self.special_tokens, weights))

    def _combine(self, picked: List[Any]) -> Any:
        if self.mix is not None:
            return self.mix(picked)
        if self.plan.combine.how == "none":  # one layer (an export refuses more); the Keras layer takes the first
            return picked[0]
        return combine(picked, self.plan.combine)

    def _finish(self, y: Any) -> Any:
        """A vector per text [B, D]: transformed, L2-normalised, cast, as asked."""
        import tensorflow as tf

        if self.transform is not None:
            y = tf.matmul(y - tf.constant(self.transform.mean), tf.constant(self.transform.W))
        return self._cast(l2_normalize(y) if self.normalize else y)

    def _tokens(self, y: Any, mask: Any) -> Any:
        """A sequence or layers output, with the padding mask if ``return_mask``."""
        return [self._cast(y), mask] if self.return_mask else self._cast(y)

    def _cast(self, y: Any) -> Any:
        import tensorflow as tf

        return y if self.dtype is None else tf.cast(y, self.dtype)


def token_lengths(tokens: Any) -> Any:
    """int32 [B]: word pieces per text, from the preprocessor's ragged [B, (words), (pieces)] or [B, (pieces)]."""
    import tensorflow as tf

    flat = tokens.merge_dims(-2, -1) if tokens.ragged_rank > 1 else tokens
    return tf.cast(flat.row_lengths(), tf.int32)


def packed_lengths(segments: Sequence[Any], seq_length: Any) -> Any:
    """int32 [B]: each row's packed length: the word pieces of its segments (one text, or a pair's two), [CLS] and
    a [SEP] per segment, at most ``seq_length``."""
    import tensorflow as tf

    return tf.minimum(tf.add_n([token_lengths(t) for t in segments]) + len(segments) + 1, seq_length)


def pack(preprocessor: Any, segments: Sequence[Any], seq_length: Any) -> Tuple[Any, Any, Any]:
    """Tokenized segments (one or two ragged [B, ...] from ``preprocessor.tokenize``) -> the encoder's int32 inputs
    (word ids, mask, type ids) [B, S]: ``[CLS] a [SEP] (b [SEP])`` by the preprocessor's ``bert_pack_inputs``, padded
    to the longest packed row (``packed_lengths``; at least 2). Longer rows are truncated to ``seq_length``."""
    import tensorflow as tf

    longest = tf.reduce_max(tf.concat([packed_lengths(segments, seq_length), [2]], 0))
    packed = preprocessor.bert_pack_inputs(list(segments), seq_length=longest)
    return packed["input_word_ids"], packed["input_mask"], packed["input_type_ids"]


def _chunk_rows(lengths: Any, start: Any, max_rows: int, max_tokens: int) -> Any:
    """How many rows from ``start`` form the next chunk: as many as fit ``max_rows`` and ``max_tokens`` padded
    tokens (``lengths`` ascending, so the last row is the longest; at least one), as ``batching.plan`` chooses."""
    import tensorflow as tf

    n = tf.minimum(max_rows, tf.shape(lengths)[0] - start)
    longest_so_far = lengths[start : start + n]
    fits = longest_so_far * tf.range(1, n + 1) <= max_tokens  # monotone: True, ..., True, False, ...
    return tf.maximum(1, tf.reduce_sum(tf.cast(fits, tf.int32)))


def embed_strings(
    preprocessor: Any, backend: Any, head: Head, strings: Any, *, seq_length: int, dim: int, batching: dict
) -> Any:
    """[B] strings -> [B, dim] vectors, in input order.

    The batch is tokenized once, sorted by length and encoded in chunks of at most ``batching["max_rows"]`` rows
    and ``batching["max_tokens"]`` padded tokens, each padded to its own longest text (at most ``seq_length``:
    longer texts are truncated; ``pack``), as ``Encoder.embed`` batches: a large unsorted batch costs no more
    padding than a sorted one, and memory stays bounded by one chunk.
    """
    import tensorflow as tf

    tokens = preprocessor.tokenize(strings)
    lengths = packed_lengths([tokens], seq_length)
    order = tf.argsort(lengths, stable=True)
    tokens, lengths = tf.gather(tokens, order), tf.gather(lengths, order)
    total = tf.shape(lengths)[0]

    def body(start: Any, k: Any, out: Any) -> tuple:
        rows = _chunk_rows(lengths, start, batching["max_rows"], batching["max_tokens"])
        ids, mask, types = pack(preprocessor, [tokens[start : start + rows]], seq_length)
        acts = backend(ids, mask, types, plan=head.plan)
        return start + rows, k + 1, out.write(k, head(acts, mask))

    out = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False, element_shape=[None, dim])
    # One chunk at a time: chunks do not depend on each other, and running several at once would multiply memory.
    _, _, out = tf.while_loop(
        lambda start, k, out: start < total, body, (tf.constant(0), tf.constant(0), out), parallel_iterations=1
    )
    vectors = tf.cond(total > 0, out.concat, lambda: tf.zeros([0, dim], tf.float32))
    return tf.scatter_nd(order[:, None], vectors, tf.stack([total, dim]))


def resources(module: Any) -> list:
    """The vocabulary tables, assets and variables under ``module``: what its ``tokenize`` captures, and so what the
    SavedModel must hold. Not the module itself: saving it would also save (and trace) every function it has."""
    import tensorflow as tf

    kinds = (tf.saved_model.experimental.TrackableResource, tf.saved_model.Asset, tf.Variable)
    return [o for o in tf.train.TrackableView(module).descendants() if isinstance(o, kinds)]


def build(
    preprocessor: Any, backend: Any, head: Head, *, seq_length: int, dim: int, batching: dict, variables: Sequence
) -> Tuple[Any, Any]:
    """The object ``tf.saved_model.save`` writes, and its serving signature.

    Args:
        preprocessor: the paired preprocessing module (``tokenize``, ``bert_pack_inputs``), called inside the
            graph; its vocabulary is the SavedModel's asset.
        backend: a ``Backend`` (the Hub model or the Model Garden rebuild), called inside the graph.
        head: the layers, pooling, transform and normalisation.
        seq_length: the window: longer texts are truncated to ``seq_length - 2`` word pieces.
        dim: the width of a vector.
        batching: {"max_rows", "max_tokens"}: the chunks a batch is encoded in (``embed_strings``).
        variables: the encoder's variables (what the backend's functions capture).

    Returns:
        (root, the serving function: strings [B] -> {"outputs": [B, D]}). ``root.__call__(strings [B]) -> [B, D]``;
        ``root.token_counts(strings [B]) -> [B]`` word pieces per text (more than ``seq_length - 2``: truncated).
    """
    import tensorflow as tf

    root = tf.train.Checkpoint()
    root.tokenizer_resources = resources(preprocessor)
    # The reusable-SavedModel attributes hub.KerasLayer and TFSMLayer read.
    root.variables = list(variables)
    root.trainable_variables = [v for v in variables if v.trainable]
    root.regularization_losses = []
    spec = tf.TensorSpec([None], tf.string, name=INPUT)

    @tf.function(input_signature=[spec], autograph=False)
    def call(inputs: Any) -> Any:
        return embed_strings(preprocessor, backend, head, inputs, seq_length=seq_length, dim=dim, batching=batching)

    @tf.function(input_signature=[spec], autograph=False)
    def token_counts(inputs: Any) -> Any:
        return token_lengths(preprocessor.tokenize(inputs))

    @tf.function(input_signature=[spec], autograph=False)
    def serve(inputs: Any) -> dict:
        return {OUTPUT: call(inputs)}

    root.__call__ = call
    root.token_counts = token_counts
    return root, serve


# ---------------------------------------------------------------------------
# An export loaded back
# ---------------------------------------------------------------------------


class ExportedEmbedder:
    """A ``hubembed export`` folder loaded back (what ``hubembed.load`` returns for one): strings in, vectors out.

    The spec (layers, pooling, transform, normalisation) and the window are baked in: ``embed`` takes texts.
    It is not an encoder: ``encode``, ``embed_tokens``, ``embed_words``, ``features``, ``internals`` and the
    other ``Encoder`` methods raise an ``InputError`` naming the model it was exported from (load that instead).

    >>> emb = hubembed.load("exported/")              # doctest: +SKIP
    >>> emb.embed(["a sentence", "another one"]).shape # doctest: +SKIP
    (2, 384)

    Attributes: ``path``; ``obj`` (the loaded SavedModel); ``info`` (``hubembed._formats.export.ExportInfo``:
    ``describe()``, ``to_json()``); ``record`` (its hubembed.json); ``spec`` (the ``EmbedSpec`` it was exported
    with, a transform as its description: ``enc.embed(texts, spec=emb.spec)`` refuses other weights, and asks for
    the transform back); ``dim``; ``seq_length``; ``weights_sha256`` (of the model it was exported from).
    """

    def __init__(self, path: str, obj: Any, info: Any, spec: Any = None) -> None:
        self.path, self.obj, self.info, self.spec = path, obj, info, spec
        self.handle = path
        self.record = info.record
        self.dim = int(self.record["dim"])
        self.seq_length = int(self.record["seq_length"])
        self.weights_sha256 = self.record.get("weights_sha256")

    def __repr__(self) -> str:
        return f"ExportedEmbedder({self.path!r}, model={self.record.get('model')!r}, dim={self.dim})"

    def __call__(self, strings: Any) -> Any:
        """The SavedModel's own call: a string tensor [B] -> a float32 tensor [B, D]."""
        return self.obj(strings)

    def output_shape(self, spec: Any = None) -> tuple:
        """The shape of one text's vector: ``(dim,)``."""
        self._check_spec(spec)
        return (self.dim,)

    def embed(self, texts: Any, *, spec: Any = None, batch_size: int = 1024, return_info: bool = False) -> Any:
        """Vectors for ``texts`` ([N, D] float32; one string -> [D]), in input order.

        Args:
            texts: strings (not pairs).
            spec: None, or the spec it was exported with (``self.spec``, or the default ``EmbedSpec()`` the
                command line passes): the spec is part of the export; any other is refused.
            batch_size: texts per call of the SavedModel (inside, each call is sorted by length and encoded in
                chunks, as ``Encoder.embed`` batches).
            return_info: also return what happened to each text (``ExtractionInfo``: truncated rows...).

        Texts longer than the window are truncated, and logged as a warning (never silent).
        """
        self._check_spec(spec)
        if isinstance(texts, (str, bytes)):
            out = self.embed([texts], batch_size=batch_size, return_info=return_info)
            return (out[0][0], out[1]) if return_info else out[0]
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size={batch_size!r}; it must be an integer >= 1")
        import tensorflow as tf

        texts = check_texts(texts, pairs=False)
        out = np.zeros((len(texts), self.dim), np.float32)
        counts = np.zeros(len(texts), np.int64)
        for start in range(0, len(texts), batch_size):
            batch = tf.constant(texts[start : start + batch_size], tf.string)
            out[start : start + batch_size] = self.obj(batch).numpy()
            counts[start : start + batch_size] = self.obj.token_counts(batch).numpy()
        info = self._info(counts)
        info.report()
        return (out, info) if return_info else out

    def _check_spec(self, spec: Any) -> None:
        if spec is None or spec == self.spec or spec == EmbedSpec():
            return
        s = self.record.get("spec", {})
        raise InputError(
            f"{self.path} is a hubembed export: its spec is baked in (layers {s.get('layers')}, combine "
            f"{s.get('combine')}, pooling {s.get('pooling')}, normalize {s.get('normalize')}) and cannot change. "
            f"Embed with the model it was exported from (hubembed.load({self.record.get('model')!r})), or export again"
        )

    def _info(self, counts: np.ndarray) -> ExtractionInfo:
        truncated = np.maximum(counts - (self.seq_length - 2), 0)
        info = ExtractionInfo(counts, np.ones(len(counts), np.int32), truncated, counts == 0)
        info.spec = dict(self.record.get("spec", {}))
        return info

    def describe(self) -> str:
        """What ``hubembed inspect`` prints for the folder."""
        return self.info.describe()

    def to_dict(self) -> dict:
        return self.info.to_dict()

    def to_json(self) -> str:
        return self.info.to_json()

    def __getattr__(self, name: str) -> Any:
        if name in ENCODER_ONLY:
            raise InputError(
                f"{self.path} is a hubembed export (strings -> {self.dim}-dim vectors, the spec baked in), not an "
                f"encoder: it has no {name}. Load the model it was exported from for that: "
                f"hubembed.load({self.record.get('model')!r})"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


# What an Encoder has and an export has not (asked of an export: an error that says so, not AttributeError).
ENCODER_ONLY = (
    "encode",
    "embed_tokens",
    "embed_words",
    "features",
    "internals",
    "garden",
    "signature",
    "plan",
    "backend_for",
    "context",
    "preprocessor",
    "word_tokenizer",
    "check_spec_source",
    "export",
)
