"""Write BERT encoders in the TF Hub formats (used by ``convert`` and ``hubembed.testing``).

The encoder is the plain BERT computation, written once (``bert_forward``) over
a dict of weights named as Model Garden's ``export_tfhub_lib`` names them
(TF Hub BERT formats, section 1), and saved in one of four styles:

* ``"dict"``: the TF2 reusable SavedModel of BERT v3/v4 (``pooled_output``,
  ``sequence_output``, ``default``, ``encoder_outputs``), with an ``.mlm``
  sub-object when MLM weights are given;
* ``"dict_no_layers"``: the same without ``encoder_outputs``;
* ``"list"``: the list-style v1/v2 call, ``[ids, mask, segment_ids] ->
  [pooled_output, sequence_output]``;
* ``"tf1"``: a TF1 Hub module (``tfhub_module.pb``; ``tokens``,
  ``tokenization_info``, ``default`` and ``mlm`` signatures; variables named
  as the original TF1 BERT checkpoints, ``bert/encoder/layer_i/...``).

Every style carries ``vocab_file`` and ``do_lower_case`` as the official
encoders do. Model Garden is not needed: its "gelu" is the tanh approximation,
while the checkpoints converted here (Hugging Face BERT) use the exact one.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from typing import Dict

import numpy as np

STYLES = ("dict", "dict_no_layers", "list", "tf1")
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


# ---------------------------------------------------------------------------
# The computation
# ---------------------------------------------------------------------------

def _activation(name: str):
    import tensorflow as tf

    if name == "gelu":
        # Exact (erf) GELU, written in the form grappler fuses with the preceding MatMul + BiasAdd.
        return lambda x: 0.5 * x * (1.0 + tf.math.erf(x * 0.7071067811865476))
    if name == "gelu_tanh":
        return lambda x: tf.nn.gelu(x, approximate=True)
    if name == "relu":
        return tf.nn.relu
    raise ValueError(f"activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


def _layer_norm(x, gamma, beta, eps):
    import tensorflow as tf

    # moments + batch_normalization, as Keras' LayerNormalization: a pattern oneDNN can fuse.
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return tf.nn.batch_normalization(x, mean, var, offset=beta, scale=gamma, variance_epsilon=eps)


def _dense(x2, kernel, bias):
    """[R, in] x kernel (any shape whose leading dims are `in`) + bias, as 2-D MatMul + BiasAdd.

    2-D MatMul + BiasAdd (+ activation) is what grappler's remapper fuses into one
    oneDNN kernel; an einsum over 3-D tensors would become BatchMatMul and miss it.
    """
    import tensorflow as tf

    n_in = x2.shape[-1]
    return tf.nn.bias_add(tf.matmul(x2, tf.reshape(kernel, [n_in, -1])), tf.reshape(bias, [-1]))


def bert_forward(w, cfg: BertConfig, word_ids, mask, type_ids):
    """The BERT encoder: returns (pooled [B,H] or None without a pooler, [layer outputs [B,S,H]] x L)."""
    import tensorflow as tf

    act = _activation(cfg.activation)
    eps = cfg.layer_norm_eps
    H, N = cfg.hidden_size, cfg.num_heads
    D = H // N
    batch, seq_len = tf.shape(word_ids)[0], tf.shape(word_ids)[1]
    x = (tf.gather(w["word_embeddings/embeddings"], word_ids)
         + tf.gather(w["type_embeddings/embeddings"], type_ids)
         + w["position_embedding/embeddings"][tf.newaxis, :seq_len, :])
    x = _layer_norm(x, w["embeddings/layer_norm/gamma"], w["embeddings/layer_norm/beta"], eps)
    x2 = tf.reshape(x, [-1, H])  # [B*S, H]: every dense layer works on rows
    # Additive mask over keys: 0 where attended, a large negative where padded.
    adder = (1.0 - tf.cast(mask, x.dtype))[:, tf.newaxis, tf.newaxis, :] * -1e9
    scale = 1.0 / float(np.sqrt(D))

    def heads(t):  # [B*S, H] -> [B, N, S, D]
        return tf.transpose(tf.reshape(t, [batch, seq_len, N, D]), [0, 2, 1, 3])

    layers = []
    for i in range(cfg.num_layers):
        p = f"transformer/layer_{i}/"
        q = heads(_dense(x2, w[p + "self_attention/query/kernel"], w[p + "self_attention/query/bias"]))
        k = heads(_dense(x2, w[p + "self_attention/key/kernel"], w[p + "self_attention/key/bias"]))
        v = heads(_dense(x2, w[p + "self_attention/value/kernel"], w[p + "self_attention/value/bias"]))
        scores = tf.matmul(q * scale, k, transpose_b=True) + adder  # [B, N, S, S]
        probs = tf.nn.softmax(scores, axis=-1)
        ctx = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [-1, H])
        attn = _dense(ctx, w[p + "self_attention/attention_output/kernel"],
                      w[p + "self_attention/attention_output/bias"])
        x2 = _layer_norm(x2 + attn, w[p + "self_attention_layer_norm/gamma"],
                         w[p + "self_attention_layer_norm/beta"], eps)
        inter = act(_dense(x2, w[p + "intermediate/kernel"], w[p + "intermediate/bias"]))
        out = _dense(inter, w[p + "output/kernel"], w[p + "output/bias"])
        x2 = _layer_norm(x2 + out, w[p + "output_layer_norm/gamma"], w[p + "output_layer_norm/beta"], eps)
        layers.append(tf.reshape(x2, [batch, seq_len, H]))
    if "pooler_transform/kernel" not in w:
        return None, layers
    first = layers[-1][:, 0, :]
    pooled = tf.tanh(_dense(first, w["pooler_transform/kernel"], w["pooler_transform/bias"]))
    return pooled, layers


def mlm_logits(w, cfg: BertConfig, sequence, positions):
    """MLM head (transform + layer norm + tied output embedding) at ``positions`` [B,P]."""
    import tensorflow as tf

    act = _activation(cfg.activation)
    h = tf.gather(sequence, positions, batch_dims=1)
    h = act(tf.einsum("bph,hk->bpk", h, w["mlm/transform/kernel"]) + w["mlm/transform/bias"])
    h = _layer_norm(h, w["mlm/layer_norm/gamma"], w["mlm/layer_norm/beta"], cfg.layer_norm_eps)
    return tf.einsum("bph,vh->bpv", h, w["word_embeddings/embeddings"]) + w["mlm/output_bias"]


# ---------------------------------------------------------------------------
# Savers
# ---------------------------------------------------------------------------

def _expected(weights, cfg) -> Dict[str, tuple]:
    return weight_shapes(cfg, with_mlm="mlm/output_bias" in weights,
                         with_pooler="pooler_transform/kernel" in weights)


def _input_specs():
    import tensorflow as tf

    return {n: tf.TensorSpec([None, None], tf.int32, name=n)
            for n in ("input_word_ids", "input_mask", "input_type_ids")}


def _vocab_attrs(obj, vocab_file: str, do_lower_case: bool):
    import tensorflow as tf

    obj.vocab_file = tf.saved_model.Asset(vocab_file)
    obj.do_lower_case = tf.Variable(bool(do_lower_case), trainable=False, name="do_lower_case")


def save_encoder(weights: Dict[str, np.ndarray], cfg: BertConfig, out_dir: str, *, vocab_file: str,
                 do_lower_case: bool, style: str = "dict") -> str:
    """Write a Hub-format encoder of the given style to ``out_dir`` (which must not exist)."""
    if style not in STYLES:
        raise ValueError(f"style {style!r}; valid: {', '.join(STYLES)}")
    expected = _expected(weights, cfg)
    if "pooler_transform/kernel" not in weights and style in ("list", "tf1"):
        raise ValueError(f"style {style!r} needs pooler weights (its outputs always include pooled_output)")
    for name, shape in expected.items():
        if name not in weights:
            raise KeyError(f"weight {name} is missing")
        if tuple(weights[name].shape) != tuple(shape):
            raise ValueError(f"weight {name} has shape {weights[name].shape}, expected {shape}")
    if style == "tf1":
        return _save_tf1(weights, cfg, out_dir, vocab_file=vocab_file, do_lower_case=do_lower_case)
    return _save_tf2(weights, cfg, out_dir, vocab_file=vocab_file, do_lower_case=do_lower_case, style=style)


def _save_tf2(weights, cfg, out_dir, *, vocab_file, do_lower_case, style):
    import tensorflow as tf

    names = list(_expected(weights, cfg))
    variables = [tf.Variable(weights[n], name=n) for n in names]
    w = dict(zip(names, variables))
    has_mlm = "mlm/output_bias" in w

    def outputs(inputs):
        pooled, layers = bert_forward(w, cfg, inputs["input_word_ids"], inputs["input_mask"],
                                      inputs["input_type_ids"])
        out = {"sequence_output": layers[-1]}
        if pooled is not None:  # a checkpoint without a pooler exports no pooled_output
            out.update(pooled_output=pooled, default=pooled)
        if style == "dict":
            out["encoder_outputs"] = layers
        return out

    root = tf.train.Checkpoint()
    root.variables = variables
    root.trainable_variables = [v for v in variables]
    root.regularization_losses = []
    _vocab_attrs(root, vocab_file, do_lower_case)

    if style == "list":
        @tf.function
        def call(inputs, training=False):
            ids, mask, seg = inputs
            out = outputs({"input_word_ids": ids, "input_mask": mask, "input_type_ids": seg})
            return [out["pooled_output"], out["sequence_output"]]

        spec = [tf.TensorSpec([None, None], tf.int32, name=n)
                for n in ("input_word_ids", "input_mask", "segment_ids")]
    else:
        @tf.function
        def call(inputs, training=False):
            return outputs(inputs)

        spec = _input_specs()
    for training in (False, True):
        call.get_concrete_function(spec, training=training)
    root.__call__ = call

    if has_mlm and style != "list":
        mlm = tf.train.Checkpoint()

        @tf.function
        def mlm_call(inputs, training=False):
            out = outputs(inputs)
            out["mlm_logits"] = mlm_logits(w, cfg, out["sequence_output"], inputs["masked_lm_positions"])
            return out

        mlm_spec = dict(_input_specs(), masked_lm_positions=tf.TensorSpec([None, None], tf.int32,
                                                                          name="masked_lm_positions"))
        for training in (False, True):
            mlm_call.get_concrete_function(mlm_spec, training=training)
        mlm.__call__ = mlm_call
        mlm.variables = variables
        mlm.trainable_variables = list(variables)
        mlm.regularization_losses = []
        root.mlm = mlm
    # The serving signature must be flat: encoder_outputs become encoder_outputs_<i>, much
    # as Keras mangles them in official exports (readers use __call__'s structured outputs).
    @tf.function
    def serving(*args):
        out = call(list(args) if style == "list" else args[0], training=False)
        if style == "list":
            return {"pooled_output": out[0], "sequence_output": out[1]}
        flat = {k: v for k, v in out.items() if k != "encoder_outputs"}
        flat.update({f"encoder_outputs_{i}": t for i, t in enumerate(out.get("encoder_outputs", []))})
        return flat

    serving_fn = serving.get_concrete_function(*spec) if style == "list" else serving.get_concrete_function(spec)
    tf.saved_model.save(root, out_dir, signatures={"serving_default": serving_fn})
    return out_dir


def _save_tf1(weights, cfg, out_dir, *, vocab_file, do_lower_case):
    """A TF1 Hub module: a TF1 SavedModel with empty tags + tfhub_module.pb."""
    import tensorflow as tf

    v1 = tf.compat.v1
    has_mlm = "mlm/output_bias" in weights
    names = list(_expected(weights, cfg))
    graph = tf.Graph()
    with graph.as_default():
        H = cfg.hidden_size
        # TF1 BERT checkpoints keep q/k/v and attention-output kernels 2-D (biases 1-D): store
        # them so. bert_forward's dense layers take a kernel of any shape (reshaped to [in, -1]).
        def tf1_value(n):
            a = weights[n]
            if "/self_attention/" in n and n.endswith("kernel"):
                return a.reshape(H, H)
            if "/self_attention/" in n and n.endswith("bias") and a.ndim == 2:
                return a.reshape(H)
            return a

        w = {n: v1.get_variable(tf1_name(n), initializer=tf.constant(tf1_value(n))) for n in names}
        ids = v1.placeholder(tf.int32, [None, None], name="input_ids")
        mask = v1.placeholder(tf.int32, [None, None], name="input_mask")
        seg = v1.placeholder(tf.int32, [None, None], name="segment_ids")
        pooled, layers = bert_forward(w, cfg, ids, mask, seg)
        vocab_const = tf.constant(vocab_file, name="vocab_file")
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, vocab_const)
        lower = tf.constant(bool(do_lower_case), name="do_lower_case")
        def sig(inputs, outputs):
            info = v1.saved_model.utils.build_tensor_info
            return v1.saved_model.signature_def_utils.build_signature_def(
                inputs={k: info(t) for k, t in inputs.items()},
                outputs={k: info(t) for k, t in outputs.items()},
                method_name="tensorflow/serving/predict")

        token_inputs = {"input_ids": ids, "input_mask": mask, "segment_ids": seg}
        signatures = {
            "tokens": sig(token_inputs, {"pooled_output": pooled, "sequence_output": layers[-1]}),
            "default": sig(token_inputs, {"default": pooled}),
            "tokenization_info": sig({}, {"vocab_file": vocab_const, "do_lower_case": lower}),
        }
        if has_mlm:
            positions = v1.placeholder(tf.int32, [None, None], name="mlm_positions")
            logits = mlm_logits(w, cfg, layers[-1], positions)
            signatures["mlm"] = sig(dict(token_inputs, mlm_positions=positions), {"mlm_logits": logits})
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(out_dir)
            builder.add_meta_graph_and_variables(
                sess, tags=[], signature_def_map=signatures,
                assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS), strip_default_attrs=True)
            builder.save()
    # ModuleDef format 3: what tensorflow_hub checks to treat the folder as a TF1 Hub module.
    with open(os.path.join(out_dir, "tfhub_module.pb"), "wb") as f:
        f.write(b"\x08\x03")
    return out_dir


def replace_dir(tmp_dir: str, out_dir: str) -> None:
    """Move a finished ``tmp_dir`` to ``out_dir`` (replacing it)."""
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.replace(tmp_dir, out_dir)


def write_tiny_vocab(path: str, extra_words=()) -> str:
    """A small WordPiece vocabulary for test models."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    base = ("the a an is was be to of and in on at it this that with for as by from hello world "
            "good bad movie film great terrible love hate cat dog sat mat quick brown fox jumps over "
            "lazy day night sun moon ! , . ? ' \" - ( ) : ; caf ##e ##s ##ing ##ed ##ly 1 2 3 "
            "un ##believ ##able emb ##ed ##ding ##ings é 日 本 語 😀").split()
    seen = set(words)
    for t in list(base) + list(extra_words) + [chr(c) for c in range(ord("a"), ord("z") + 1)] + \
            ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]:
        if t not in seen:
            seen.add(t)
            words.append(t)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(words) + "\n")
    return path
