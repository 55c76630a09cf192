"""The plain BERT computation over a dict of Hub-named weights, in TensorFlow ops (written once; the
SavedModel writers trace it). "gelu" is the exact (erf) GELU, as Hugging Face's; "gelu_tanh" the tanh
approximation (Model Garden's and the original BERT's "gelu").
"""

from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Tuple

import numpy as np

from hubembed._formats.names import ACTIVATIONS, BertConfig
from hubembed.errors import InputError


def _activation(name: str) -> Callable[[Any], Any]:
    import tensorflow as tf

    if name == "gelu":
        # Exact (erf) GELU, written in the form grappler fuses with the preceding MatMul + BiasAdd.
        return lambda x: 0.5 * x * (1.0 + tf.math.erf(x * 0.7071067811865476))
    if name == "gelu_tanh":
        return lambda x: tf.nn.gelu(x, approximate=True)
    if name == "relu":
        return tf.nn.relu
    raise InputError(f"activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


def _layer_norm(x: Any, gamma: Any, beta: Any, eps: float) -> Any:
    import tensorflow as tf

    # moments + batch_normalization, as Keras' LayerNormalization: a pattern oneDNN can fuse.
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return tf.nn.batch_normalization(x, mean, var, offset=beta, scale=gamma, variance_epsilon=eps)


def _dense(x2: Any, kernel: Any, bias: Any) -> Any:
    """[R, in] x kernel (any shape whose leading dims are `in`) + bias, as 2-D MatMul + BiasAdd.

    2-D MatMul + BiasAdd (+ activation) is what grappler's remapper fuses into one
    oneDNN kernel; an einsum over 3-D tensors would become BatchMatMul and miss it.
    """
    import tensorflow as tf

    n_in = x2.shape[-1]
    return tf.nn.bias_add(tf.matmul(x2, tf.reshape(kernel, [n_in, -1])), tf.reshape(bias, [-1]))


def _dropout(rate: float, training: bool) -> Callable[[Any], Any]:
    """Dropout as Hugging Face's and Model Garden's BERT apply it; the identity unless training."""
    import tensorflow as tf

    if not training or not rate:
        return lambda x: x  # inference: the graph is exactly the one without dropout
    return lambda x: tf.nn.dropout(x, rate=rate)


def bert_forward(
    w: Mapping[str, Any], cfg: BertConfig, word_ids: Any, mask: Any, type_ids: Any, training: bool = False
) -> Tuple[Optional[Any], List[Any]]:
    """The BERT encoder: returns (pooled [B,H] or None without a pooler, [layer outputs [B,S,H]] x L).

    ``training`` (a Python bool) applies the config's dropout where BERT has it: after the embedding
    layer norm, on the attention probabilities, and on each sub-layer's output before its residual.
    """
    import tensorflow as tf

    act = _activation(cfg.activation)
    drop = _dropout(cfg.hidden_dropout, training)
    drop_attention = _dropout(cfg.attention_dropout, training)
    eps = cfg.layer_norm_eps
    H, N = cfg.hidden_size, cfg.num_heads
    D = H // N
    batch, seq_len = tf.shape(word_ids)[0], tf.shape(word_ids)[1]
    x = (
        tf.gather(w["word_embeddings/embeddings"], word_ids)
        + tf.gather(w["type_embeddings/embeddings"], type_ids)
        + tf.expand_dims(tf.slice(w["position_embedding/embeddings"], [0, 0], [seq_len, H]), 0)
    )
    x = drop(_layer_norm(x, w["embeddings/layer_norm/gamma"], w["embeddings/layer_norm/beta"], eps))
    x2 = tf.reshape(x, [-1, H])  # [B*S, H]: every dense layer works on rows
    # Additive mask over keys: 0 where attended, a large negative where padded.
    adder = tf.reshape(1.0 - tf.cast(mask, x.dtype), [batch, 1, 1, seq_len]) * -1e9
    scale = 1.0 / float(np.sqrt(D))

    def heads(t: Any) -> Any:  # [B*S, H] -> [B, N, S, D]
        return tf.transpose(tf.reshape(t, [batch, seq_len, N, D]), [0, 2, 1, 3])

    layers = []
    for i in range(cfg.num_layers):
        p = f"transformer/layer_{i}/"
        q = heads(_dense(x2, w[p + "self_attention/query/kernel"], w[p + "self_attention/query/bias"]))
        k = heads(_dense(x2, w[p + "self_attention/key/kernel"], w[p + "self_attention/key/bias"]))
        v = heads(_dense(x2, w[p + "self_attention/value/kernel"], w[p + "self_attention/value/bias"]))
        scores = tf.matmul(q * scale, k, transpose_b=True) + adder  # [B, N, S, S]
        probs = drop_attention(tf.nn.softmax(scores, axis=-1))
        ctx = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [-1, H])
        attn = _dense(
            ctx, w[p + "self_attention/attention_output/kernel"], w[p + "self_attention/attention_output/bias"]
        )
        x2 = _layer_norm(
            x2 + drop(attn), w[p + "self_attention_layer_norm/gamma"], w[p + "self_attention_layer_norm/beta"], eps
        )
        inter = act(_dense(x2, w[p + "intermediate/kernel"], w[p + "intermediate/bias"]))
        out = _dense(inter, w[p + "output/kernel"], w[p + "output/bias"])
        x2 = _layer_norm(x2 + drop(out), w[p + "output_layer_norm/gamma"], w[p + "output_layer_norm/beta"], eps)
        layers.append(tf.reshape(x2, [batch, seq_len, H]))
    if "pooler_transform/kernel" not in w:
        return None, layers
    first = tf.reshape(tf.slice(layers[-1], [0, 0, 0], [batch, 1, H]), [batch, H])
    pooled = tf.tanh(_dense(first, w["pooler_transform/kernel"], w["pooler_transform/bias"]))
    return pooled, layers


def mlm_logits(w: Mapping[str, Any], cfg: BertConfig, sequence: Any, positions: Any) -> Any:
    """MLM head (transform + layer norm + tied output embedding) at ``positions`` [B,P]."""
    import tensorflow as tf

    act = _activation(cfg.activation)
    h = tf.gather(sequence, positions, batch_dims=1)
    h = act(tf.einsum("bph,hk->bpk", h, w["mlm/transform/kernel"]) + w["mlm/transform/bias"])
    h = _layer_norm(h, w["mlm/layer_norm/gamma"], w["mlm/layer_norm/beta"], cfg.layer_norm_eps)
    return tf.einsum("bph,vh->bpv", h, w["word_embeddings/embeddings"]) + w["mlm/output_bias"]
