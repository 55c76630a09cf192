"""Encode: run one packed batch through an encoder, whatever its format.

Every backend takes ``(input_word_ids, input_mask, input_type_ids)`` int32
``[B, S]`` tensors and returns a dict with ``pooled`` [B, H], ``sequence``
[B, S, H] and ``layers`` (a list of L [B, S, H] tensors, or None when the
model does not export them).
"""

from __future__ import annotations


class HubBackend:
    """A TF2 (dict- or list-style) or TF1 Hub encoder behind one call."""

    def __init__(self, obj, fmt: str):
        self.obj = obj
        self.format = fmt
        self._tokens = obj.signatures["tokens"] if fmt == "tf1_hub" else None

    def __call__(self, word_ids, mask, type_ids, training: bool = False) -> dict:
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
