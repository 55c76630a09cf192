"""Write BERT encoders in the TF Hub formats (used by ``convert`` and ``hubembed.testing``).

The encoder is ``forward.bert_forward`` over a dict of weights named as Model Garden's ``export_tfhub_lib``
names them (``names``), saved in one of four styles:

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
encoders do. Model Garden is not needed.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable, Dict, Iterable, Mapping

import numpy as np

from hubembed._formats.forward import bert_forward, mlm_logits
from hubembed._formats.names import BertConfig, tf1_name, weight_shapes
from hubembed.errors import InputError

STYLES = ("dict", "dict_no_layers", "list", "tf1")


def _expected(weights: Mapping[str, Any], cfg: BertConfig) -> Dict[str, tuple]:
    return weight_shapes(cfg, with_mlm="mlm/output_bias" in weights, with_pooler="pooler_transform/kernel" in weights)


def _input_specs() -> Dict[str, Any]:
    import tensorflow as tf

    return {
        n: tf.TensorSpec([None, None], tf.int32, name=n) for n in ("input_word_ids", "input_mask", "input_type_ids")
    }


def _vocab_attrs(obj: Any, vocab_file: str, do_lower_case: bool) -> None:
    import tensorflow as tf

    obj.vocab_file = tf.saved_model.Asset(vocab_file)
    obj.do_lower_case = tf.Variable(bool(do_lower_case), trainable=False, name="do_lower_case")


def save_encoder(
    weights: Dict[str, np.ndarray],
    cfg: BertConfig,
    out_dir: str,
    *,
    vocab_file: str,
    do_lower_case: bool,
    style: str = "dict",
) -> str:
    """Write a Hub-format encoder of the given style to ``out_dir`` (which must not exist).

    Raises:
        InputError: an unknown style; a style that needs pooler weights without them; a weight the config
            needs that is missing or has another shape.
    """
    if style not in STYLES:
        raise InputError(f"style {style!r}; valid: {', '.join(STYLES)}")
    expected = _expected(weights, cfg)
    if "pooler_transform/kernel" not in weights and style in ("list", "tf1"):
        raise InputError(f"style {style!r} needs pooler weights (its outputs always include pooled_output)")
    for name, shape in expected.items():
        if name not in weights:
            raise InputError(f"weight {name} is missing (the config needs it)")
        if tuple(weights[name].shape) != tuple(shape):
            raise InputError(
                f"weight {name} has shape {tuple(weights[name].shape)}, expected {tuple(shape)} (from the config)"
            )
    if style == "tf1":
        return _save_tf1(weights, cfg, out_dir, vocab_file=vocab_file, do_lower_case=do_lower_case)
    return _save_tf2(weights, cfg, out_dir, vocab_file=vocab_file, do_lower_case=do_lower_case, style=style)


def _save_tf2(
    weights: Dict[str, np.ndarray], cfg: BertConfig, out_dir: str, *, vocab_file: str, do_lower_case: bool, style: str
) -> str:
    import tensorflow as tf

    names = list(_expected(weights, cfg))
    variables = [tf.Variable(weights[n], name=n) for n in names]
    w = dict(zip(names, variables))
    has_mlm = "mlm/output_bias" in w

    def outputs(inputs: Mapping[str, Any], training: bool) -> Dict[str, Any]:
        ids, mask, types = inputs["input_word_ids"], inputs["input_mask"], inputs["input_type_ids"]
        pooled, layers = bert_forward(w, cfg, ids, mask, types, training=training)
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
        def call(inputs: Any, training: bool = False) -> Any:
            ids, mask, seg = inputs
            out = outputs({"input_word_ids": ids, "input_mask": mask, "input_type_ids": seg}, training)
            return [out["pooled_output"], out["sequence_output"]]

        spec: Any = [
            tf.TensorSpec([None, None], tf.int32, name=n) for n in ("input_word_ids", "input_mask", "segment_ids")
        ]
    else:

        @tf.function
        def call(inputs: Any, training: bool = False) -> Any:
            return outputs(inputs, training)

        spec = _input_specs()
    for training in (False, True):
        call.get_concrete_function(spec, training=training)
    root.__call__ = call

    if has_mlm and style != "list":
        root.mlm = _mlm_object(outputs, w, cfg, variables)

    # The serving signature must be flat: encoder_outputs become encoder_outputs_<i>, much
    # as Keras mangles them in official exports (readers use __call__'s structured outputs).
    @tf.function
    def serving(*args: Any) -> Dict[str, Any]:
        out = call(list(args) if style == "list" else args[0], training=False)
        if style == "list":
            return {"pooled_output": out[0], "sequence_output": out[1]}
        flat = {k: v for k, v in out.items() if k != "encoder_outputs"}
        flat.update({f"encoder_outputs_{i}": t for i, t in enumerate(out.get("encoder_outputs", []))})
        return flat

    serving_fn = serving.get_concrete_function(*spec) if style == "list" else serving.get_concrete_function(spec)
    tf.saved_model.save(root, out_dir, signatures={"serving_default": serving_fn})
    return out_dir


def _mlm_object(
    outputs: Callable[[Any, bool], Dict[str, Any]], w: Dict[str, Any], cfg: BertConfig, variables: list
) -> Any:
    """The ``.mlm`` sub-object: ``outputs`` (the encoder call) plus ``mlm_logits`` at ``masked_lm_positions``."""
    import tensorflow as tf

    mlm = tf.train.Checkpoint()

    @tf.function
    def mlm_call(inputs: Mapping[str, Any], training: bool = False) -> Dict[str, Any]:
        out = outputs(inputs, training)
        out["mlm_logits"] = mlm_logits(w, cfg, out["sequence_output"], inputs["masked_lm_positions"])
        return out

    mlm_spec = dict(
        _input_specs(), masked_lm_positions=tf.TensorSpec([None, None], tf.int32, name="masked_lm_positions")
    )
    for training in (False, True):
        mlm_call.get_concrete_function(mlm_spec, training=training)
    mlm.__call__ = mlm_call
    mlm.variables = variables
    mlm.trainable_variables = list(variables)
    mlm.regularization_losses = []
    return mlm


def _save_tf1(
    weights: Dict[str, np.ndarray], cfg: BertConfig, out_dir: str, *, vocab_file: str, do_lower_case: bool
) -> str:
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
        def tf1_value(n: str) -> np.ndarray:
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

        def sig(inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> Any:
            info = v1.saved_model.utils.build_tensor_info
            return v1.saved_model.signature_def_utils.build_signature_def(
                inputs={k: info(t) for k, t in inputs.items()},
                outputs={k: info(t) for k, t in outputs.items()},
                method_name="tensorflow/serving/predict",
            )

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
                sess,
                tags=[],
                signature_def_map=signatures,
                assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
                strip_default_attrs=True,
            )
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


def write_tiny_vocab(path: str, extra_words: Iterable[str] = ()) -> str:
    """A small WordPiece vocabulary for test models."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    base = (
        "the a an is was be to of and in on at it this that with for as by from hello world "
        "good bad movie film great terrible love hate cat dog sat mat quick brown fox jumps over "
        "lazy day night sun moon ! , . ? ' \" - ( ) : ; caf ##e ##s ##ing ##ed ##ly 1 2 3 "
        "un ##believ ##able emb ##ed ##ding ##ings é 日 本 語 😀"
    ).split()
    seen = set(words)
    for t in (
        list(base)
        + list(extra_words)
        + [chr(c) for c in range(ord("a"), ord("z") + 1)]
        + ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    ):
        if t not in seen:
            seen.add(t)
            words.append(t)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(words) + "\n")
    return path
