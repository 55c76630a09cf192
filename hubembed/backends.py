"""Encode: run one packed batch through an encoder, whatever its format.

Every backend takes ``(input_word_ids, input_mask, input_type_ids)`` int32
``[B, S]`` tensors and returns a dict with ``pooled`` [B, H], ``sequence``
[B, S, H] and ``layers`` (a list of L [B, S, H] tensors, or None when the
model does not export them).

Called eagerly, a restored SavedModel function pays a one-time cost for every
new ``[batch, length]`` shape it sees (the runtime instantiates and optimises
the function graph per input shape). So the Hub backend calls the restored
model from inside one ``tf.function`` whose input signature is ``[None, None]``:
traced once per layer selection, it serves every batch size and length.
"""

from __future__ import annotations

import threading


class HubBackend:
    """A TF2 (dict- or list-style) or TF1 Hub encoder behind one call."""

    def __init__(self, obj, fmt: str):
        self.obj = obj
        self.format = fmt
        self._tokens = obj.signatures["tokens"] if fmt == "tf1_hub" else None
        self._fns = {}                 # (training, layers kept) -> tf.function
        self._lock = threading.Lock()  # one trace, even with threads racing for it
        self.eager_calls = 0           # calls that ran the restored model eagerly (each new shape costs)

    def raw(self, word_ids, mask, type_ids, training: bool = False, keep=None) -> dict:
        """Call the restored model as it is (eagerly when called eagerly; inlined inside a graph).

        keep: the layer indices to return (the others are None in ``layers``, so a compiled function can free
        them as soon as the next block has used them); None: every layer the model exports.
        """
        import tensorflow as tf

        if not tf.inside_function():
            self.eager_calls += 1
        if self.format == "tf2_dict":
            out = self.obj({"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids},
                           training=training)
            layers = list(out["encoder_outputs"]) if "encoder_outputs" in out else None
            if layers is not None and keep is not None:
                wanted = {i % len(layers) for i in keep}
                layers = [x if i in wanted else None for i, x in enumerate(layers)]
            return {"pooled": out.get("pooled_output"), "sequence": out["sequence_output"], "layers": layers}
        if self.format == "tf2_list":
            pooled, sequence = self.obj([word_ids, mask, type_ids], training=training)
            return {"pooled": pooled, "sequence": sequence, "layers": None}
        out = self._tokens(input_ids=word_ids, input_mask=mask, segment_ids=type_ids)
        return {"pooled": out["pooled_output"], "sequence": out["sequence_output"], "layers": None}

    def compiled(self, training: bool = False, keep=None):
        """The ``tf.function`` over ``[None, None]`` int32 inputs that calls the model, traced once (per
        ``training`` and ``keep``, never per shape)."""
        import tensorflow as tf

        key = (bool(training), None if keep is None else tuple(sorted(set(keep))))
        with self._lock:
            if key not in self._fns:
                spec = tf.TensorSpec([None, None], tf.int32)

                @tf.function(input_signature=[spec, spec, spec], autograph=False)
                def call(word_ids, mask, type_ids):
                    return self.raw(word_ids, mask, type_ids, training=key[0], keep=key[1])

                call.get_concrete_function()
                self._fns[key] = call
        return self._fns[key]

    def __call__(self, word_ids, mask, type_ids, training: bool = False, keep=None) -> dict:
        import tensorflow as tf

        if tf.inside_function():  # already in a graph (a Keras layer, a tf.function): inline the model
            return self.raw(word_ids, mask, type_ids, training=training, keep=keep)
        return self.compiled(training, keep)(tf.convert_to_tensor(word_ids, tf.int32),
                                       tf.convert_to_tensor(mask, tf.int32), tf.convert_to_tensor(type_ids, tf.int32))
