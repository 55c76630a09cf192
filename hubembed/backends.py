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

import logging
import threading

log = logging.getLogger("hubembed")


class HubBackend:
    """A TF2 (dict- or list-style) or TF1 Hub encoder behind one call."""

    def __init__(self, obj, fmt: str):
        self.obj = obj
        self.format = fmt
        self._tokens = obj.signatures["tokens"] if fmt == "tf1_hub" else None
        self._fns = {}                 # training -> tf.function, or None where only eager calls work
        self._lock = threading.Lock()  # one trace, even with threads racing for it
        self.eager_calls = 0           # calls that ran the restored function eagerly (per-shape cost)

    def raw(self, word_ids, mask, type_ids, training: bool = False) -> dict:
        """Call the restored model as it is (eagerly when called eagerly; inlined inside a graph)."""
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
        """The ``tf.function`` over ``[None, None]`` int32 inputs that calls the model (traced once), or None
        when the model's saved functions do not accept variable shapes."""
        training = bool(training)
        with self._lock:
            if training not in self._fns:
                self._fns[training] = self._trace(training)
        return self._fns[training]

    def _trace(self, training: bool):
        import tensorflow as tf

        spec = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[spec, spec, spec], autograph=False)
        def call(word_ids, mask, type_ids):
            return self.raw(word_ids, mask, type_ids, training=training)

        try:
            call.get_concrete_function()
        except (ValueError, TypeError) as e:  # e.g. "Could not find matching concrete function"
            log.info("hubembed: the model's functions do not take [None, None] inputs (%s); calling it eagerly, "
                     "which costs a one-time trace per new input shape", str(e).splitlines()[0][:200])
            return None
        return call

    def __call__(self, word_ids, mask, type_ids, training: bool = False) -> dict:
        import tensorflow as tf

        if tf.inside_function():  # already in a graph (a Keras layer, a tf.function): inline the model
            return self.raw(word_ids, mask, type_ids, training=training)
        fn = self.compiled(training)
        if fn is None:
            self.eager_calls += 1
            return self.raw(word_ids, mask, type_ids, training=training)
        return fn(tf.convert_to_tensor(word_ids, tf.int32), tf.convert_to_tensor(mask, tf.int32),
                  tf.convert_to_tensor(type_ids, tf.int32))
