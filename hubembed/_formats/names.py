"""Hub BERT weight names and shapes: the names Model Garden's ``export_tfhub_lib`` gives the weights
(TF Hub BERT formats, section 1), their TF1 checkpoint names, and the configuration they follow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict

import numpy as np

ACTIVATIONS = ("gelu", "gelu_tanh", "relu")


@dataclass
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int = 512
    type_vocab_size: int = 2
    activation: str = "gelu"  # exact (erf) GELU, as Hugging Face's "gelu"
    layer_norm_eps: float = 1e-12
    # Dropout when called with training=True (Hugging Face's hidden_dropout_prob and
    # attention_probs_dropout_prob); inference never drops anything.
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def weight_shapes(cfg: BertConfig, with_mlm: bool = False, with_pooler: bool = True) -> Dict[str, tuple]:
    """Model Garden export names -> shapes, in a fixed order."""
    H, N, F = cfg.hidden_size, cfg.num_heads, cfg.intermediate_size
    D = H // N
    s = {
        "word_embeddings/embeddings": (cfg.vocab_size, H),
        "position_embedding/embeddings": (cfg.max_positions, H),
        "type_embeddings/embeddings": (cfg.type_vocab_size, H),
        "embeddings/layer_norm/gamma": (H,),
        "embeddings/layer_norm/beta": (H,),
    }
    for i in range(cfg.num_layers):
        p = f"transformer/layer_{i}/"
        for n in ("query", "key", "value"):
            s[p + f"self_attention/{n}/kernel"] = (H, N, D)
            s[p + f"self_attention/{n}/bias"] = (N, D)
        s[p + "self_attention/attention_output/kernel"] = (N, D, H)
        s[p + "self_attention/attention_output/bias"] = (H,)
        s[p + "self_attention_layer_norm/gamma"] = (H,)
        s[p + "self_attention_layer_norm/beta"] = (H,)
        s[p + "intermediate/kernel"] = (H, F)
        s[p + "intermediate/bias"] = (F,)
        s[p + "output/kernel"] = (F, H)
        s[p + "output/bias"] = (H,)
        s[p + "output_layer_norm/gamma"] = (H,)
        s[p + "output_layer_norm/beta"] = (H,)
    if with_pooler:
        s["pooler_transform/kernel"] = (H, H)
        s["pooler_transform/bias"] = (H,)
    if with_mlm:
        s["mlm/transform/kernel"] = (H, H)
        s["mlm/transform/bias"] = (H,)
        s["mlm/layer_norm/gamma"] = (H,)
        s["mlm/layer_norm/beta"] = (H,)
        s["mlm/output_bias"] = (cfg.vocab_size,)
    return s


def random_weights(cfg: BertConfig, seed: int = 0, with_mlm: bool = False) -> Dict[str, np.ndarray]:
    """Random weights (std 0.2; layer norms near 1) for test models."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in weight_shapes(cfg, with_mlm).items():
        if name.endswith("gamma"):
            out[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            out[name] = (0.2 * rng.standard_normal(shape)).astype(np.float32)
    return out


def tf1_name(name: str) -> str:
    """Model Garden export name -> the TF1 BERT checkpoint name."""
    fixed = {
        "word_embeddings/embeddings": "bert/embeddings/word_embeddings",
        "position_embedding/embeddings": "bert/embeddings/position_embeddings",
        "type_embeddings/embeddings": "bert/embeddings/token_type_embeddings",
        "embeddings/layer_norm/gamma": "bert/embeddings/LayerNorm/gamma",
        "embeddings/layer_norm/beta": "bert/embeddings/LayerNorm/beta",
        "pooler_transform/kernel": "bert/pooler/dense/kernel",
        "pooler_transform/bias": "bert/pooler/dense/bias",
        "mlm/transform/kernel": "cls/predictions/transform/dense/kernel",
        "mlm/transform/bias": "cls/predictions/transform/dense/bias",
        "mlm/layer_norm/gamma": "cls/predictions/transform/LayerNorm/gamma",
        "mlm/layer_norm/beta": "cls/predictions/transform/LayerNorm/beta",
        "mlm/output_bias": "cls/predictions/output_bias",
    }
    if name in fixed:
        return fixed[name]
    # transformer/layer_i/<rest>
    _, layer, rest = name.split("/", 2)
    i = layer.split("_")[1]
    sub = {
        "self_attention/query/kernel": "attention/self/query/kernel",
        "self_attention/query/bias": "attention/self/query/bias",
        "self_attention/key/kernel": "attention/self/key/kernel",
        "self_attention/key/bias": "attention/self/key/bias",
        "self_attention/value/kernel": "attention/self/value/kernel",
        "self_attention/value/bias": "attention/self/value/bias",
        "self_attention/attention_output/kernel": "attention/output/dense/kernel",
        "self_attention/attention_output/bias": "attention/output/dense/bias",
        "self_attention_layer_norm/gamma": "attention/output/LayerNorm/gamma",
        "self_attention_layer_norm/beta": "attention/output/LayerNorm/beta",
        "intermediate/kernel": "intermediate/dense/kernel",
        "intermediate/bias": "intermediate/dense/bias",
        "output/kernel": "output/dense/kernel",
        "output/bias": "output/dense/bias",
        "output_layer_norm/gamma": "output/LayerNorm/gamma",
        "output_layer_norm/beta": "output/LayerNorm/beta",
    }[rest]
    return f"bert/encoder/layer_{i}/{sub}"
