"""Keras layers: a Hub encoder as a feature layer, ScalarMix, attention and masked pooling.

The same layers exist for both Keras flavours TensorFlow 2.20 ships:

* Keras 3 (``import keras``; what ``tf.keras`` is unless ``TF_USE_LEGACY_KERAS=1``):
  ``hubembed.keras.HubFeatureLayer`` etc., or ``hubembed.keras.keras3.HubFeatureLayer``;
* tf_keras (Keras 2): ``hubembed.keras.legacy.HubFeatureLayer`` etc. (the default names
  when ``TF_USE_LEGACY_KERAS=1``).

``hub.KerasLayer`` is a tf_keras layer and breaks in Keras 3 models; ``HubFeatureLayer``
registers the Hub model's variables with whichever Keras it belongs to, so it works in
Sequential and functional models of both, frozen or fine-tuned.

>>> from hubembed.keras import HubFeatureLayer          # doctest: +SKIP
>>> model = keras.Sequential([keras.Input((), dtype="string"),
...                           HubFeatureLayer("minilm", output="embedding", pooling="mean"),
...                           keras.layers.Dense(2)])     # doctest: +SKIP

Inputs: a string tensor ``[B]`` (or ``[B, 1]``), or a pair ``(a, b)`` / ``{"a": .., "b": ..}``
of them for sentence pairs. Outputs (``output=``):

* ``"embedding"``: one vector per text, ``[B, D]``: layers selected, combined, pooled (as ``embed``);
* ``"pooled"``: the model's ``pooled_output`` ``[B, H]``;
* ``"sequence"``: token vectors ``[B, S, D]`` of the combined layers (``return_mask=True`` adds
  the ``[B, S]`` padding mask, for ``MaskedMeanPooling`` & co.);
* ``"layers"``: the selected layers apart, ``[B, k, S, H]`` (``return_mask`` as above).

Each batch is packed to its own longest text (at most ``seq_length``). ``trainable=True``
fine-tunes the encoder; ``frozen_layers=n`` keeps its embeddings and first n blocks frozen
(``GradualUnfreezing`` thaws them epoch by epoch). A learnable ``combine="scalar_mix"``
trains even when the encoder is frozen.
"""

from __future__ import annotations

import logging
import os
import re
from types import SimpleNamespace
from typing import Optional

import numpy as np

from hubembed._pipeline import graph
from hubembed._pipeline.spec import EmbedSpec, layer_plan
from hubembed.errors import InputError

log = logging.getLogger("hubembed")

OUTPUTS = ("embedding", "pooled", "sequence", "layers")


# ---------------------------------------------------------------------------
# Framework-free pieces (TF ops only)
# ---------------------------------------------------------------------------


def masked_pool(x, mask, pooling: str, special=None, weights=None):
    """TF masked pooling of x [B, S, D] with mask [B, S] (1 = counts); ``special`` [B, S]: positions left out.

    The one TF pooling (``hubembed._pipeline.graph.pool``, which exports use too), in the layers' signature.
    """
    return graph.pool(x, mask, special, pooling, special_tokens=special is None, weights=weights)


received_attention = graph.received_attention  # TF twin of ``pooling.received_attention``: [B, N, S, S] -> [B, S]


def _block_of(name: str, uses_pooler: bool = True):
    """The freezing group of an encoder variable: -1 embeddings, i block i, 'shared' (ALBERT), None other,
    'fixed' never trained (an MLM head; the pooler when the layer's output does not use it: no gradient
    reaches it, and Keras would warn about it at every step)."""
    from hubembed import garden

    mg = garden.garden_name(name)
    if mg is None:
        # Not an encoder weight by its name: an MLM head is not used for features (never trained here);
        # anything else (names hubembed does not know) trains with the encoder.
        return "fixed" if re.search(r"(^|/)(mlm|cls/predictions)/", name) else None
    m = re.match(r"transformer/layer_(\d+)/", mg)
    if m:
        return int(m.group(1))
    if mg.startswith("transformer/"):
        return "shared"
    if mg.startswith("pooler_transform"):
        return None if uses_pooler else "fixed"
    return -1


def _frozen(group, n: int, num_layers: int) -> bool:
    if n <= 0 or group is None:
        return False
    if group == "shared":
        return n >= num_layers
    return group < n


def _shapes(shape):
    """A Keras input shape (one shape, or a list of them; tuples or TensorShapes) -> list of tuples."""
    import tensorflow as tf

    if isinstance(shape, dict):
        return [tuple(tf.TensorShape(v).as_list()) for v in shape.values()]
    if isinstance(shape, tf.TensorShape):
        return [tuple(shape.as_list())]
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple, tf.TensorShape)):
        return [tuple(tf.TensorShape(s).as_list()) for s in shape]
    return [tuple(shape)]


def default_keras():
    """The Keras that ``tf.keras`` is: tf_keras with TF_USE_LEGACY_KERAS=1, else Keras 3."""
    return "legacy" if os.environ.get("TF_USE_LEGACY_KERAS", "0").lower() in ("1", "true", "yes") else "keras3"


def _layer_norm_all(x, mask):
    """AllenNLP ScalarMix's layer norm: mean/variance over every unmasked element."""
    import tensorflow as tf

    if mask is None:
        mean, var = tf.nn.moments(x, axes=list(range(len(x.shape))))
        return (x - mean) / tf.sqrt(var + 1e-12)
    m = tf.cast(mask, x.dtype)[:, :, None]
    n = tf.maximum(tf.reduce_sum(m) * tf.cast(tf.shape(x)[-1], x.dtype), 1.0)
    mean = tf.reduce_sum(x * m) / n
    var = tf.reduce_sum(((x - mean) * m) ** 2) / n
    return (x - mean) / tf.sqrt(var + 1e-12)


def _split_masked(inputs, mask=None):
    """A pooling layer's input (x, or [x, mask]) -> x [B, S, D] and its mask [B, S] (the Keras mask, else all ones)."""
    import tensorflow as tf

    x, m = inputs, None
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 2:
            raise InputError("pooling layers take x [B, S, D] or [x, mask [B, S]]")
        x, m = inputs
    if m is None:
        m = mask if mask is not None else tf.ones(tf.shape(x)[:2], x.dtype)
    return x, m


# ---------------------------------------------------------------------------
# The layers' logic, written once for both Keras flavours.
#
# Each ``_...Logic`` mixin holds one class's methods; the flavour factories below combine it with that
# Keras' ``Layer`` (or ``Callback``) and register the result. ``self._keras`` is the flavour's Keras module.
# ---------------------------------------------------------------------------


class _ScalarMixLogic:
    """gamma * sum_k softmax(w)_k * layer_k (ELMo; AllenNLP's ScalarMix), w and gamma learnable.

    Input: a list of k tensors [B, S, H] or one stacked tensor [B, k, S, H] (or [B, k, H]);
    with ``layer_norm=True`` each layer is normalised over its unmasked elements first
    (pass ``mask=`` [B, S]). ``initial_weights`` (k values, default zeros: a plain mean).
    """

    def __init__(
        self,
        num_layers: int,
        initial_weights=None,
        initial_gamma: float = 1.0,
        layer_norm: bool = False,
        trainable_weights_: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_layers = int(num_layers)
        init = (
            np.zeros(self.num_layers, np.float32)
            if initial_weights is None
            else np.asarray(initial_weights, np.float32).ravel()
        )
        if init.shape != (self.num_layers,):
            raise InputError(f"ScalarMix: {init.size} initial weights for {self.num_layers} layers")
        self.initial_weights = [float(v) for v in init]
        self.initial_gamma = float(initial_gamma)
        self.layer_norm = bool(layer_norm)
        self.trainable_weights_ = bool(trainable_weights_)
        constant = self._keras.initializers.Constant
        self.scalars = self.add_weight(
            name="scalars",
            shape=(self.num_layers,),
            initializer=constant(self.initial_weights),
            trainable=self.trainable_weights_,
        )
        self.gamma = self.add_weight(
            name="gamma", shape=(), initializer=constant(self.initial_gamma), trainable=self.trainable_weights_
        )
        self.supports_masking = True  # the layers' padding mask is the mix's: it passes through

    @staticmethod
    def _one_mask(mask):
        """Keras gives one mask per item of a list input (all alike, or None)."""
        return next((m for m in mask if m is not None), None) if isinstance(mask, (list, tuple)) else mask

    def compute_mask(self, inputs, mask=None):
        return self._one_mask(mask)

    def call(self, inputs, mask=None):
        import tensorflow as tf

        layers = list(inputs) if isinstance(inputs, (list, tuple)) else tf.unstack(inputs, axis=1)
        mask = self._one_mask(mask)  # Keras 3 passes [None] * k for a list input without masks
        if len(layers) != self.num_layers:
            raise InputError(f"ScalarMix expects {self.num_layers} layers, got {len(layers)}")
        w = tf.nn.softmax(tf.cast(self.scalars, layers[0].dtype))
        if self.layer_norm:
            layers = [_layer_norm_all(t, mask) for t in layers]
        return tf.cast(self.gamma, layers[0].dtype) * tf.add_n([w[i] * t for i, t in enumerate(layers)])

    def compute_output_shape(self, input_shape):
        shapes = _shapes(input_shape)
        if len(shapes) > 1:
            return shapes[0]
        return (shapes[0][0],) + shapes[0][2:]

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "initial_weights": self.initial_weights,
            "initial_gamma": self.initial_gamma,
            "layer_norm": self.layer_norm,
            "trainable_weights_": self.trainable_weights_,
        }


class _MaskedPoolingLogic:
    """Pooling over unpadded positions (``how``: a ``masked_pool`` pooling)."""

    how = "mean"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        x, m = _split_masked(inputs, mask)
        return masked_pool(x, m, self.how)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        s = _shapes(input_shape)[0]
        return (s[0], s[-1] * (2 if self.how == "mean_max" else 1))


class _MaskedMeanPoolingLogic(_MaskedPoolingLogic):
    """Mean over unpadded positions: input x [B, S, D] with a Keras mask, or [x, mask [B, S]]."""

    how = "mean"


class _MaskedMaxPoolingLogic(_MaskedPoolingLogic):
    """Max over unpadded positions (zeros for a row with none)."""

    how = "max"


class _AttentionPoolingLogic:
    """Learned attention pooling: softmax over unpadded tokens of v . tanh(W x + b), then the weighted sum.

    Input x [B, S, D] (Keras mask) or [x, mask]. ``units``: width of the scoring layer.
    (``HubFeatureLayer(pooling="attention")`` weights tokens by the model's own attention instead.)
    """

    def __init__(self, units: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.supports_masking = True
        self.hidden = self._keras.layers.Dense(self.units, activation="tanh", name="score_hidden")
        self.score = self._keras.layers.Dense(1, use_bias=False, name="score")

    def build(self, input_shape):
        s = _shapes(input_shape)[0]
        self.hidden.build(tuple(s))
        self.score.build(tuple(s[:-1]) + (self.units,))
        self.built = True

    def call(self, inputs, mask=None):
        import tensorflow as tf

        x, m = _split_masked(inputs, mask)
        scores = tf.squeeze(self.score(self.hidden(x)), -1)  # [B, S]
        scores = tf.where(tf.cast(m, tf.bool), scores, tf.fill(tf.shape(scores), tf.constant(-1e9, scores.dtype)))
        w = tf.nn.softmax(scores, axis=-1) * tf.cast(m, scores.dtype)
        w = tf.math.divide_no_nan(w, tf.reduce_sum(w, axis=-1, keepdims=True))
        return tf.reduce_sum(x * w[:, :, None], axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        s = _shapes(input_shape)[0]
        return (s[0], s[-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _init_record(args: dict) -> dict:
    """HubFeatureLayer.__init__'s arguments (its ``locals()`` on entry) by name, as get_config returns them."""
    record = {k: v for k, v in args.items() if k not in ("self", "kwargs", "__class__")}
    record.update(handle=str(record["handle"]), gamma=float(record["gamma"]))
    record.update({k: bool(record[k]) for k in ("special_tokens", "normalize", "trainable", "return_mask")})
    return record


class _HubFeatureLogic:
    """A Hub encoder (+ its preprocessor) as a Keras layer: strings in, features out.

    Inputs: a string tensor ``[B]`` (or ``[B, 1]``), or a pair ``(a, b)`` / ``{"a": .., "b": ..}`` of
    them. Each batch is packed to its own longest text (at most ``seq_length``).

    Args:
        handle: What ``hubembed.load`` takes (registry name, tfhub.dev handle, Kaggle URL, folder).
        output: ``"embedding"`` (one vector per text), ``"pooled"`` (the model's pooled_output),
            ``"sequence"`` (token vectors of the combined layers) or ``"layers"`` (the selected layers apart).
        layers: The layers to use, as ``Encoder.embed`` takes them.
        combine: How the layers combine, as ``Encoder.embed``; ``"scalar_mix"`` is learnable.
        pooling: How tokens pool into one vector (``output="embedding"``), as ``Encoder.embed``.
        weights: The layer weights of ``combine="weighted"``, or the initial ones of ``"scalar_mix"``.
        gamma: The scale of ``combine="weighted"``, or the initial one of ``"scalar_mix"``.
        special_tokens: Whether ``[CLS]``/``[SEP]`` count in the pooling.
        normalize: L2-normalise the embedding (or pooled) vectors.
        attention_layer: The layer whose attention ``pooling="attention"`` uses, as ``Encoder.embed``.
        seq_length: The longest packed row (default: the encoder's, at most 512).
        trainable: Fine-tune the encoder (the layer's own weights, e.g. a scalar mix, train regardless).
        frozen_layers: With ``trainable``, keep the embeddings and the first n blocks frozen
            (``freeze`` changes it; ``GradualUnfreezing`` thaws them epoch by epoch).
        backend: ``"auto"``, ``"hub"`` or ``"garden"`` (the Model Garden rebuild; TF1 modules are fine-tuned
            through it). Under a mixed precision policy the rebuild computes in the policy's half precision;
            a Hub SavedModel computes in its own dtype (float32), as ``hub.KerasLayer`` does. Either way the
            layer's outputs are in the policy's compute dtype.
        preprocess: A preprocessor handle to pair with the encoder instead of its own.
        return_mask: With ``output="sequence"`` or ``"layers"``, also return the ``[B, S]`` padding mask.
        **kwargs: Keras layer arguments (``name``, ``dtype``, ...).

    Raises:
        InputError: An unknown output or pooling, a pooled output the model does not export, or an invalid
            ``frozen_layers``.
    """

    def __init__(
        self,
        handle: str,
        output: str = "embedding",
        layers=-1,
        combine: str = "mean",
        pooling: str = "mean",
        weights=None,
        gamma: float = 1.0,
        special_tokens: bool = True,
        normalize: bool = False,
        attention_layer=None,
        seq_length: Optional[int] = None,
        trainable: bool = False,
        frozen_layers: int = 0,
        backend: str = "auto",
        preprocess: Optional[str] = None,
        return_mask: bool = False,
        **kwargs,
    ):
        # The constructor's arguments, by name: what get_config returns (frozen_layers as it is then).
        self._init_args = _init_record(locals())
        mixed = self._check_policy(kwargs.get("dtype"), backend)
        super().__init__(trainable=True, **kwargs)  # the encoder's trainability is separate (below)
        if output not in OUTPUTS:
            raise InputError(f"output={output!r}; valid: {', '.join(OUTPUTS)}")
        # What decides the numbers, validated as everywhere (``layer.spec``) before the model loads; the plan
        # below adapts it to the output kind. A learnable scalar mix's weights are optional initial values:
        # validated as a mean here, the spec records the mix and its initial weights once the count is known.
        learnable = combine == "scalar_mix"
        self.spec = EmbedSpec(
            layers=layers,
            combine="mean" if learnable else combine,
            weights=None if learnable else weights,
            gamma=gamma,
            pooling=pooling,
            special_tokens=special_tokens,
            normalize=normalize,
            attention_layer=attention_layer,
        )
        self.handle, self.output_kind, self.pooling = str(handle), output, pooling
        self.special_tokens, self.normalize, self.return_mask = bool(special_tokens), bool(normalize), bool(return_mask)
        self.encoder_trainable = bool(trainable)
        enc = self._load_encoder(handle, preprocess, seq_length, backend)
        # Not tracked: the encoder's variables are registered below. (A tracked list of them would register
        # the variables twice.)
        self._holder = SimpleNamespace(enc=enc, vars=[], groups=[])
        self._plan = plan = self._make_plan(
            enc.signature, enc.backend, layers, combine, weights, gamma, attention_layer
        )
        self._use_garden = (
            plan.garden or enc.backend == "garden" or (self.encoder_trainable and enc.signature.format == "tf1_hub")
        )
        if self._use_garden:
            plan.garden = True
        self._garden = None
        if self._use_garden:
            self._garden = enc.garden().with_policy(mixed) if mixed else enc.garden()
        self.mix = None
        if learnable and output in ("embedding", "sequence"):
            self.mix = self._ScalarMix(
                len(plan.indices), initial_weights=weights, initial_gamma=gamma, name="scalar_mix"
            )
            self.spec = self.spec.replace(combine="scalar_mix", weights=self.mix.initial_weights)
        self._register_encoder_variables()
        self._hold_resources(enc)
        self.frozen_layers = 0
        self.freeze(frozen_layers)

    @classmethod
    def _check_policy(cls, dtype, backend):
        """The mixed-precision policy the encoder computes in: the rebuild's when backend="garden", else None
        (float32: a Hub SavedModel's dtype is its own; the outputs are cast to the policy, see ``_out``)."""
        if dtype is not None:
            name = getattr(dtype, "name", str(dtype))
        else:
            policy = cls._keras.mixed_precision.global_policy()
            name = getattr(policy, "name", str(policy))
        return name if name.startswith("mixed") and backend == "garden" else None

    def _load_encoder(self, handle, preprocess, seq_length, backend):
        import hubembed

        enc = hubembed.load(handle, preprocess=preprocess, seq_length=seq_length, backend=backend)
        if self.encoder_trainable and enc.signature.format == "tf1_hub" and backend == "auto":
            log.info("%s is a TF1 Hub module; fine-tuning it through the Model Garden rebuild", handle)
            enc.engine.backend = "garden"
        return enc

    def _make_plan(self, sig, backend, layers, combine, weights, gamma, attention_layer):
        """The layers to compute and how they combine and pool; a learnable scalar mix replaces the combination."""

        output, pooling = self.output_kind, self.pooling
        learnable = combine == "scalar_mix"
        plan = layer_plan(
            sig,
            layers,
            "none" if output == "layers" else ("mean" if learnable else combine),
            None if learnable else weights,
            gamma,
            pooling if output == "embedding" else None,
            backend=backend,
            attention_layer=attention_layer if pooling == "attention" else None,
        )
        if output == "pooled":
            if not sig.has_pooled_output:
                raise InputError(f"{self.handle} exports no pooled_output; use output='embedding'")
            plan.need_pooled = True
            if plan.upto is not None:  # the pooler reads the last block
                plan.upto = sig.num_layers - 1
        return plan

    def get_config(self):
        config = {k: v for k, v in super().get_config().items() if k != "trainable"}  # `trainable`: the encoder's
        weights = self._init_args["weights"]
        return {
            **config,
            **self._init_args,
            "frozen_layers": self.frozen_layers,
            "weights": None if weights is None else [float(w) for w in np.ravel(weights)],
        }

    # -- variables -------------------------------------------------------
    @property
    def _enc_vars(self):
        return self._holder.vars

    @property
    def _groups(self):
        return self._holder.groups

    def _source_variables(self):
        enc = self._holder.enc
        if self._use_garden:
            return list(self._garden.model.variables)
        if enc.signature.format == "tf1_hub":
            return []  # TF1 modules: inference only through their signatures
        return list(getattr(enc.obj, "variables", []) or [])

    def _register_encoder_variables(self):
        import tensorflow as tf

        train_ids = set()
        if not self._use_garden:
            train_ids = {id(v) for v in getattr(self._holder.enc.obj, "trainable_variables", []) or []}
        for v in self._source_variables():
            trainable_source = id(v) in train_ids if not self._use_garden else v.trainable
            if v.dtype not in (tf.float32, tf.float16, tf.bfloat16):
                trainable_source = False
            group = _block_of(v.name, self._plan.need_pooled) if trainable_source else "fixed"
            self._groups.append(group)
            self._enc_vars.append(self._track_encoder_variable(v))

    def freeze(self, n: int) -> None:
        """Freeze the embeddings and the first n blocks (n=0: the whole encoder trains, if trainable)."""
        L = self._holder.enc.signature.num_layers
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= L:
            raise InputError(f"frozen_layers={n!r}; valid: 0..{L}")
        if n and not self.encoder_trainable:
            raise InputError("frozen_layers needs trainable=True (a frozen encoder has every layer frozen)")
        if n and not any(isinstance(g, int) or g == "shared" for g in self._groups):
            raise InputError(
                f"{self.handle}: its variable names do not say which block they belong to; "
                f"use backend='garden' (Model Garden names) for per-layer freezing"
            )
        if "shared" in self._groups and 0 < n < L:
            raise InputError("ALBERT shares one block across all its layers: freeze all of it or none")
        self.frozen_layers = int(n)
        for w, g in zip(self._enc_vars, self._groups):
            self._set_encoder_trainable(w, self.encoder_trainable and g != "fixed" and not _frozen(g, n, L))

    # -- computation -----------------------------------------------------
    def build(self, input_shape=None):
        """Nothing to build: the encoder's variables exist from __init__ (and Keras 3 would warn otherwise)."""
        self.built = True

    @staticmethod
    def _strings(x):
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        if x.shape.rank == 2:
            x = tf.squeeze(x, axis=-1)
        return x

    def _pack(self, inputs):
        import tensorflow as tf

        enc = self._holder.enc
        pre = enc.preprocessor.module
        if isinstance(inputs, dict):
            inputs = [inputs[k] for k in sorted(inputs)]
        segs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(segs) not in (1, 2):
            raise InputError(f"HubFeatureLayer takes one string tensor or a pair, got {len(segs)}")
        toks = [pre.tokenize(self._strings(s)) for s in segs]
        lengths = (
            tf.add_n(
                [
                    tf.cast(t.merge_dims(-2, -1).row_lengths() if t.ragged_rank > 1 else t.row_lengths(), tf.int32)
                    for t in toks
                ]
            )
            + len(segs)
            + 1
        )
        seq = tf.minimum(tf.reduce_max(tf.concat([lengths, [2]], 0)), enc.seq_length)
        packed = pre.bert_pack_inputs(toks, seq_length=seq)
        return packed["input_word_ids"], packed["input_mask"], packed["input_type_ids"]

    def _encode(self, ids, mask, types, training):
        """The encoder's ``Activations`` for the plan, through the same backend call as ``Encoder.embed``."""
        backend = self._garden if self._use_garden else self._holder.enc.hub
        return backend(ids, mask, types, training=bool(training) and self.encoder_trainable, plan=self._plan)

    def call(self, inputs, training=None):
        import tensorflow as tf

        ids, mask, types = self._pack(inputs)
        out = self._encode(ids, mask, types, training)
        if self.output_kind == "pooled":
            return self._finish(out.pooled)
        picked = [out.layer(i) for i in self._plan.indices]
        if self.output_kind == "layers":
            return self._with_mask(tf.stack(picked, axis=1), mask)
        x = self.mix(picked) if self.mix is not None else self._combine(picked)
        if self.output_kind == "sequence":
            return self._with_mask(x, mask)
        if self.pooling == "pooled":
            return self._finish(out.pooled)
        return self._finish(self._pool(x, mask, picked[0].dtype, ids, out))

    def _combine(self, picked):
        if self._plan.combine.how == "none":
            return picked[0]
        return graph.combine(picked, self._plan.combine)

    def _pool(self, x, mask, dtype, ids, out):
        """One vector per text from the token vectors x [B, S, D] (mask [B, S], cast to dtype for the pooling)."""
        import tensorflow as tf

        fmask = tf.cast(mask, dtype)
        special = None
        if not self.special_tokens:
            sep = self._holder.enc.preprocessor.special["end_of_segment_id"]
            pos0 = tf.one_hot(tf.zeros(tf.shape(ids)[:1], tf.int32), tf.shape(ids)[1], dtype=fmask.dtype)
            special = tf.maximum(pos0, tf.cast(tf.equal(ids, sep), fmask.dtype))
        weights = None
        if self.pooling == "attention":
            weights = received_attention(out.attention[self._plan.attention_layer], mask)
        return masked_pool(x, fmask, self.pooling, special=special, weights=weights)

    def _finish(self, y):
        """An embedding or pooled vector [B, D]: L2-normalised if asked, then as ``_out``."""
        import tensorflow as tf

        return self._out(tf.math.l2_normalize(y, -1) if self.normalize else y)

    def _with_mask(self, y, mask):
        """A sequence or layers output, with the padding mask if ``return_mask``."""
        return [self._out(y), mask] if self.return_mask else self._out(y)

    def _out(self, y):
        """Outputs in the layer's compute dtype (float32, or half precision under a mixed policy)."""
        import tensorflow as tf

        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        H = self._holder.enc.signature.hidden_size
        k = len(self._plan.indices)
        first = _shapes(input_shape)[0]
        B = first[0] if first else None
        width = H * k if self._plan.combine.how == "concat" and self.mix is None else H
        if self.output_kind == "pooled":
            return (B, H)
        if self.output_kind == "layers":
            shape = (B, k, None, H)
        elif self.output_kind == "sequence":
            shape = (B, None, width)
        else:
            return (B, 2 * width if self.pooling == "mean_max" else width)
        return [shape, (B, None)] if self.return_mask else shape


class _GradualUnfreezingLogic:
    """Thaw a fine-tuned HubFeatureLayer's blocks from the top, epoch by epoch (ULMFiT).

    schedule: frozen block count per epoch (``hubembed.garden.unfreezing_schedule``); by default
    all L blocks frozen at epoch 0, one more thawed each epoch. The optimizer is built with every
    encoder variable up front, so variables thawed later are known to it.
    """

    def __init__(self, layer, schedule=None, every: int = 1):
        super().__init__()
        self.layer = layer
        self.schedule = schedule
        self.every = every
        self.history = []

    def _frozen_at(self, epoch: int) -> int:
        from hubembed.garden import unfreezing_schedule

        L = self.layer._holder.enc.signature.num_layers
        sched = self.schedule or unfreezing_schedule(L, epoch + 1, every=self.every)
        return sched[min(epoch, len(sched) - 1)]

    def on_train_begin(self, logs=None):
        # Build the optimizer with every encoder variable, frozen ones included: an optimizer only
        # updates the variables it was built with, and thawed blocks must be among them.
        opt = self.model.optimizer
        if not getattr(opt, "built", False):
            ids = {id(v) for v in self.model.trainable_weights}
            extra = [v for v, g in zip(self.layer._enc_vars, self.layer._groups) if g != "fixed" and id(v) not in ids]
            opt.build(list(self.model.trainable_weights) + extra)

    def on_epoch_begin(self, epoch, logs=None):
        n = self._frozen_at(epoch)
        if n != self.layer.frozen_layers or epoch == 0:
            self.layer.freeze(n)
            self.model.make_train_function(force=True)
        self.history.append(n)


# ---------------------------------------------------------------------------
# What differs between the flavours: how HubFeatureLayer registers the Hub model's variables (and, in
# tf_keras, its resources and weight lists). Mixed into HubFeatureLayer before the Keras Layer.
# ---------------------------------------------------------------------------


class _Keras3Tracking:
    """Keras 3: each encoder variable is wrapped (not copied) in a tracked ``keras.Variable``; its ``trainable``
    says whether it trains."""

    def _track_encoder_variable(self, v):
        w = self._keras.Variable(
            initializer=v, trainable=False, dtype=v.dtype, shape=v.shape, name=re.sub(r"[/:]", "_", v.name)
        )
        self._track_variable(w)
        return w

    @staticmethod
    def _set_encoder_trainable(w, trainable: bool) -> None:
        w.trainable = trainable

    def _hold_resources(self, enc) -> None:
        """Nothing to do: a Keras 3 model saves the layer's variables, and rebuilds the rest from its config."""


class _LegacyTracking:
    """tf_keras: the encoder's own variables are the layer's weights; which of them train is the layer's choice."""

    def _track_encoder_variable(self, v):
        return self.add_weight(
            name=v.name.split(":")[0], shape=v.shape, dtype=v.dtype, trainable=False, getter=lambda *_, _v=v, **__: _v
        )

    @staticmethod
    def _set_encoder_trainable(w, trainable: bool) -> None:
        w._hubembed_trainable = trainable

    def _hold_resources(self, enc) -> None:
        """Track the encoder's and the preprocessor's resources (vocabulary tables, restored functions).

        A tf_keras SavedModel export reaches them only through tracked attributes.
        """
        import tensorflow as tf

        deps = tf.__internal__.tracking.AutoTrackable()
        deps.preprocessor = enc.preprocessor.module
        deps.encoder = tf.__internal__.tracking.AutoTrackable()
        deps.encoder.obj = self._garden.model if self._use_garden else enc.obj
        self._resources = deps

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        own = [w for w in self._trainable_weights]
        enc = [w for w in self._enc_vars if getattr(w, "_hubembed_trainable", False)]
        return self._dedup_weights(own + self._gather_children_attribute("trainable_variables") + enc)

    @property
    def non_trainable_weights(self):
        enc_ids = {id(w) for w in self.trainable_weights}
        rest = [w for w in self._non_trainable_weights if id(w) not in enc_ids]
        children = self._gather_children_attribute("non_trainable_variables")
        if not self.trainable:
            children = self._gather_children_attribute("variables")
            rest = self._trainable_weights + self._non_trainable_weights
        return self._dedup_weights(rest + children)

    @property
    def weights(self):  # a fixed order (saving), whatever is frozen
        return self._dedup_weights(
            self._trainable_weights + self._non_trainable_weights + self._gather_children_attribute("variables")
        )


# ---------------------------------------------------------------------------
# The classes, made once per Keras flavour
# ---------------------------------------------------------------------------


def _keras3() -> SimpleNamespace:
    """The layers on Keras 3 (``import keras``)."""
    import keras as K

    return _assemble("keras3", K, K.saving.register_keras_serializable(package="hubembed"), _Keras3Tracking)


def _legacy() -> SimpleNamespace:
    """The layers on tf_keras (Keras 2)."""
    import tf_keras as K

    return _assemble("legacy", K, K.utils.register_keras_serializable(package="hubembed"), _LegacyTracking)


def _assemble(name: str, K, register, tracking) -> SimpleNamespace:
    """Each logic mixin on K's Layer, registered as ``hubembed>ClassName``; GradualUnfreezing on K's Callback."""

    def make(cls_name, logic, base, *flavour_mixins, **attrs):
        namespace = {"__module__": __name__, "__qualname__": cls_name, "__doc__": logic.__doc__, "_keras": K, **attrs}
        return type(cls_name, (logic, *flavour_mixins, base), namespace)

    import tensorflow as tf

    layer = K.layers.Layer
    mix = register(make("ScalarMix", _ScalarMixLogic, layer))
    # call() has no tensor-dependent Python control flow: autograph need not convert it (tf_keras would, and its
    # conversion cache, keyed by code objects, once handed back another method's conversion in a long run).
    call = tf.autograph.experimental.do_not_convert(_HubFeatureLogic.call)
    return SimpleNamespace(
        HubFeatureLayer=register(make("HubFeatureLayer", _HubFeatureLogic, layer, tracking, _ScalarMix=mix, call=call)),
        ScalarMix=mix,
        AttentionPooling=register(make("AttentionPooling", _AttentionPoolingLogic, layer)),
        MaskedMeanPooling=register(make("MaskedMeanPooling", _MaskedMeanPoolingLogic, layer)),
        MaskedMaxPooling=register(make("MaskedMaxPooling", _MaskedMaxPoolingLogic, layer)),
        GradualUnfreezing=make("GradualUnfreezing", _GradualUnfreezingLogic, K.callbacks.Callback),
        keras=K,
        flavour=name,
    )


_FACTORIES = {"keras3": _keras3, "legacy": _legacy}
_FLAVOURS: dict = {}


def flavour(name: str) -> SimpleNamespace:
    """The layers for one Keras, made (and registered for deserialisation) on first use.

    Args:
        name: ``"keras3"`` (Keras 3, ``import keras``) or ``"legacy"`` (tf_keras, Keras 2).

    Returns:
        A namespace with ``HubFeatureLayer``, ``ScalarMix``, ``AttentionPooling``, ``MaskedMeanPooling``,
        ``MaskedMaxPooling``, ``GradualUnfreezing``, ``keras`` (that Keras module) and ``flavour`` (name).

    Raises:
        InputError: name is neither "keras3" nor "legacy".
    """
    if name not in _FACTORIES:
        raise InputError(f"Keras flavour {name!r}; valid: keras3, legacy")
    if name not in _FLAVOURS:
        _FLAVOURS[name] = _FACTORIES[name]()
    return _FLAVOURS[name]


_NAMES = (
    "HubFeatureLayer",
    "ScalarMix",
    "AttentionPooling",
    "MaskedMeanPooling",
    "MaskedMaxPooling",
    "GradualUnfreezing",
)


def __getattr__(name):
    if name == "keras3":
        return flavour("keras3")
    if name == "legacy":
        return flavour("legacy")
    if name in _NAMES:
        # Both flavours are registered for deserialisation as soon as one is used.
        flavour("keras3"), flavour("legacy")
        return getattr(flavour(default_keras()), name)
    raise AttributeError(f"module 'hubembed.keras' has no attribute {name!r}")
