"""Encode: run one packed batch through an encoder, whatever its format.

Every backend takes ``(input_word_ids, input_mask, input_type_ids)`` int32
``[B, S]`` tensors and returns a dict with ``pooled`` [B, H], ``sequence``
[B, S, H] and ``layers`` (a list of L [B, S, H] tensors, or None when the
model does not export them).

Called eagerly, a restored SavedModel function pays a one-time cost for every
new ``[batch, length]`` shape it sees (the runtime instantiates and optimises
the function graph per input shape). So the Hub backend calls the restored
model from inside one ``tf.function`` whose input signature is ``[None, None]``:
traced once, it serves every batch size and length. A model whose saved
functions only accept fixed shapes (``[None, 128]``) cannot be traced that way;
it is called eagerly, as before, and a log line says so.
"""

from __future__ import annotations

import threading


class HubBackend:
    """A TF2 (dict- or list-style) or TF1 Hub encoder behind one call."""

    def __init__(self, obj, fmt: str):
        self.obj = obj
        self.format = fmt
        self._tokens = obj.signatures["tokens"] if fmt == "tf1_hub" else None
        self._fns = {}                 # training -> tf.function
        self._lock = threading.Lock()  # one trace, even with threads racing for it
        self.eager_calls = 0           # calls that ran the restored model eagerly (each new shape costs)

    def raw(self, word_ids, mask, type_ids, training: bool = False) -> dict:
        """Call the restored model as it is (eagerly when called eagerly; inlined inside a graph)."""
        import tensorflow as tf

        if not tf.inside_function():
            self.eager_calls += 1
        if self.format == "tf2_dict":
            out = self.obj({"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids},
                           training=training)
            return {"pooled": out.get("pooled_output"), "sequence": out["sequence_output"],
                    "layers": list(out["encoder_outputs"]) if "encoder_outputs" in out else None}
        if self.format == "tf2_list":
            pooled, sequence = self.obj([word_ids, mask, type_ids], training=training)
            return {"pooled": pooled, "sequence": sequence, "layers": None}
        out = self._tokens(input_ids=word_ids, input_mask=mask, segment_ids=type_ids)
        return {"pooled": out["pooled_output"], "sequence": out["sequence_output"], "layers": None}

    def compiled(self, training: bool = False):
        """The ``tf.function`` over ``[None, None]`` int32 inputs that calls the model, traced once."""
        import tensorflow as tf

        training = bool(training)
        with self._lock:
            if training not in self._fns:
                spec = tf.TensorSpec([None, None], tf.int32)

                @tf.function(input_signature=[spec, spec, spec], autograph=False)
                def call(word_ids, mask, type_ids):
                    return self.raw(word_ids, mask, type_ids, training=training)

                call.get_concrete_function()
                self._fns[training] = call
        return self._fns[training]

    def __call__(self, word_ids, mask, type_ids, training: bool = False) -> dict:
        import tensorflow as tf

        if tf.inside_function():  # already in a graph (a Keras layer, a tf.function): inline the model
            return self.raw(word_ids, mask, type_ids, training=training)
        return self.compiled(training)(tf.convert_to_tensor(word_ids, tf.int32),
                                       tf.convert_to_tensor(mask, tf.int32), tf.convert_to_tensor(type_ids, tf.int32))
