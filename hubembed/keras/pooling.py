"""The pooling layers' logic (ScalarMix, masked and attention pooling) and the TF pooling they share with exports.

Each ``...Logic`` class holds one layer's methods, for both Keras flavours: ``hubembed.keras.flavours`` puts it on
that Keras' ``Layer`` (``self._keras`` is the flavour's Keras module).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from hubembed._pipeline import graph
from hubembed.errors import InputError


def masked_pool(x: Any, mask: Any, pooling: str, special: Any = None, weights: Any = None) -> Any:
    """TF masked pooling of x [B, S, D] with mask [B, S] (1 = counts); ``special`` [B, S]: positions left out.

    The one TF pooling (``hubembed._pipeline.graph.pool``, which exports use too), in the layers' signature.
    """
    return graph.pool(x, mask, special, pooling, special_tokens=special is None, weights=weights)


received_attention = graph.received_attention  # TF twin of ``pooling.received_attention``: [B, N, S, S] -> [B, S]


def input_shapes(shape: Any) -> List[Tuple[Optional[int], ...]]:
    """A Keras input shape (one shape, or a list or dict of them; tuples or TensorShapes) -> list of tuples."""
    import tensorflow as tf

    if isinstance(shape, dict):
        return [tuple(tf.TensorShape(v).as_list()) for v in shape.values()]
    if isinstance(shape, tf.TensorShape):
        return [tuple(shape.as_list())]
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple, tf.TensorShape)):
        return [tuple(tf.TensorShape(s).as_list()) for s in shape]
    return [tuple(shape)]


def _layer_norm_all(x: Any, mask: Any) -> Any:
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


def _split_masked(inputs: Any, mask: Any = None) -> Tuple[Any, Any]:
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


class ScalarMixLogic:
    """gamma * sum_k softmax(w)_k * layer_k (ELMo; AllenNLP's ScalarMix), w and gamma learnable.

    Input: a list of k tensors [B, S, H] or one stacked tensor [B, k, S, H] (or [B, k, H]);
    with ``layer_norm=True`` each layer is normalised over its unmasked elements first
    (pass ``mask=`` [B, S]). ``initial_weights`` (k values, default zeros: a plain mean).
    """

    def __init__(
        self,
        num_layers: int,
        initial_weights: Optional[Sequence[float]] = None,
        initial_gamma: float = 1.0,
        layer_norm: bool = False,
        trainable_weights_: bool = True,
        **kwargs: Any,
    ) -> None:
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
    def _one_mask(mask: Any) -> Any:
        """Keras gives one mask per item of a list input (all alike, or None)."""
        return next((m for m in mask if m is not None), None) if isinstance(mask, (list, tuple)) else mask

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return self._one_mask(mask)

    def call(self, inputs: Any, mask: Any = None) -> Any:
        import tensorflow as tf

        layers = list(inputs) if isinstance(inputs, (list, tuple)) else tf.unstack(inputs, axis=1)
        mask = self._one_mask(mask)  # Keras 3 passes [None] * k for a list input without masks
        if len(layers) != self.num_layers:
            raise InputError(f"ScalarMix expects {self.num_layers} layers, got {len(layers)}")
        w = tf.nn.softmax(tf.cast(self.scalars, layers[0].dtype))
        if self.layer_norm:
            layers = [_layer_norm_all(t, mask) for t in layers]
        return tf.cast(self.gamma, layers[0].dtype) * tf.add_n([w[i] * t for i, t in enumerate(layers)])

    def compute_output_shape(self, input_shape: Any) -> Tuple[Optional[int], ...]:
        shapes = input_shapes(input_shape)
        if len(shapes) > 1:
            return shapes[0]
        return (shapes[0][0],) + shapes[0][2:]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "initial_weights": self.initial_weights,
            "initial_gamma": self.initial_gamma,
            "layer_norm": self.layer_norm,
            "trainable_weights_": self.trainable_weights_,
        }


class MaskedPoolingLogic:
    """Pooling over unpadded positions (``how``: a ``masked_pool`` pooling)."""

    how = "mean"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs: Any, mask: Any = None) -> Any:
        x, m = _split_masked(inputs, mask)
        return masked_pool(x, m, self.how)

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None

    def compute_output_shape(self, input_shape: Any) -> Tuple[Optional[int], ...]:
        s = input_shapes(input_shape)[0]
        return (s[0], s[-1] * (2 if self.how == "mean_max" else 1))


class MaskedMeanPoolingLogic(MaskedPoolingLogic):
    """Mean over unpadded positions: input x [B, S, D] with a Keras mask, or [x, mask [B, S]]."""

    how = "mean"


class MaskedMaxPoolingLogic(MaskedPoolingLogic):
    """Max over unpadded positions (zeros for a row with none)."""

    how = "max"


class AttentionPoolingLogic:
    """Learned attention pooling: softmax over unpadded tokens of v . tanh(W x + b), then the weighted sum.

    Input x [B, S, D] (Keras mask) or [x, mask]. ``units``: width of the scoring layer.
    (``HubFeatureLayer(pooling="attention")`` weights tokens by the model's own attention instead.)
    """

    def __init__(self, units: int = 128, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.supports_masking = True
        self.hidden = self._keras.layers.Dense(self.units, activation="tanh", name="score_hidden")
        self.score = self._keras.layers.Dense(1, use_bias=False, name="score")

    def build(self, input_shape: Any) -> None:
        s = input_shapes(input_shape)[0]
        self.hidden.build(tuple(s))
        self.score.build(tuple(s[:-1]) + (self.units,))
        self.built = True

    def call(self, inputs: Any, mask: Any = None) -> Any:
        import tensorflow as tf

        x, m = _split_masked(inputs, mask)
        scores = tf.squeeze(self.score(self.hidden(x)), -1)  # [B, S]
        scores = tf.where(tf.cast(m, tf.bool), scores, tf.fill(tf.shape(scores), tf.constant(-1e9, scores.dtype)))
        w = tf.nn.softmax(scores, axis=-1) * tf.cast(m, scores.dtype)
        w = tf.math.divide_no_nan(w, tf.reduce_sum(w, axis=-1, keepdims=True))
        return tf.reduce_sum(x * w[:, :, None], axis=1)

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None

    def compute_output_shape(self, input_shape: Any) -> Tuple[Optional[int], ...]:
        s = input_shapes(input_shape)[0]
        return (s[0], s[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}
