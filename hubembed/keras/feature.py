"""``HubFeatureLayer``'s logic: a Hub encoder (+ its preprocessor) as a Keras layer, strings in, features out.

Configuration, loading and the plan (asked of ``EmbedSpec.plan``), then a call that is the export graph's: the
strings packed by ``graph.pack``, the encoder's backend, and ``graph.Head`` for the output. The variables are
``hubembed.keras.tracking``'s; ``hubembed.keras.flavours`` makes the class for each Keras.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from hubembed._load import LoadOptions
from hubembed._pipeline import graph
from hubembed._pipeline.spec import EmbedSpec, LayerPlan
from hubembed.errors import InputError
from hubembed.keras.pooling import input_shapes
from hubembed.keras.tracking import EncoderVariables

log = logging.getLogger("hubembed")

OUTPUTS = graph.HEAD_OUTPUTS  # "embedding", "pooled", "sequence", "layers"


def _init_record(args: dict) -> dict:
    """HubFeatureLayer.__init__'s arguments (its ``locals()`` on entry) by name, as get_config returns them."""
    record = {k: v for k, v in args.items() if k not in ("self", "kwargs", "__class__")}
    record.update(handle=str(record["handle"]), gamma=float(record["gamma"]))
    record.update({k: bool(record[k]) for k in ("special_tokens", "normalize", "trainable", "return_mask")})
    return record


def string_segments(inputs: Any) -> List[Any]:
    """The layer's input -> one or two string tensors [B]: a tensor [B] or [B, 1], or a pair of them as a list,
    tuple or dict (its values in key order)."""
    import tensorflow as tf

    if isinstance(inputs, dict):
        inputs = [inputs[k] for k in sorted(inputs)]
    segments = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if len(segments) not in (1, 2):
        raise InputError(f"HubFeatureLayer takes one string tensor or a pair, got {len(segments)}")
    out = []
    for s in segments:
        s = tf.convert_to_tensor(s)
        out.append(tf.squeeze(s, axis=-1) if s.shape.rank == 2 else s)
    return out


class HubFeatureLogic(EncoderVariables):
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
        layers: Any = -1,
        combine: str = "mean",
        pooling: str = "mean",
        weights: Optional[Sequence[float]] = None,
        gamma: float = 1.0,
        special_tokens: bool = True,
        normalize: bool = False,
        attention_layer: Optional[int] = None,
        seq_length: Optional[int] = None,
        trainable: bool = False,
        frozen_layers: int = 0,
        backend: str = "auto",
        preprocess: Optional[str] = None,
        return_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        # The constructor's arguments, by name: what get_config returns (frozen_layers as it is then).
        self._init_args = _init_record(locals())
        mixed = self._check_policy(kwargs.get("dtype"), backend)
        super().__init__(trainable=True, **kwargs)  # the encoder's trainability is separate (below)
        if output not in OUTPUTS:
            raise InputError(f"output={output!r}; valid: {', '.join(OUTPUTS)}")
        # What decides the numbers, validated as everywhere (``layer.spec``) before the model loads. A learnable
        # scalar mix's weights are optional initial values: validated as a mean here, the spec records the mix and
        # its initial weights once the count is known.
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
        self._plan = self._make_plan(enc)
        self._garden = None
        if self._plan.garden:
            self._garden = enc.garden().with_policy(mixed) if mixed else enc.garden()
        self.mix = None
        if learnable and output in ("embedding", "sequence"):
            self.mix = self._ScalarMix(
                len(self._plan.indices), initial_weights=weights, initial_gamma=gamma, name="scalar_mix"
            )
            self.spec = self.spec.replace(combine="scalar_mix", weights=self.mix.initial_weights)
        self._register_encoder_variables()
        self._hold_resources(enc)
        self.frozen_layers = 0
        self.freeze(frozen_layers)

    @classmethod
    def _check_policy(cls, dtype: Any, backend: str) -> Optional[str]:
        """The mixed-precision policy the encoder computes in: the rebuild's when backend="garden", else None
        (float32: a Hub SavedModel's dtype is its own; the outputs are cast to the policy, see ``_head``)."""
        if dtype is not None:
            name = getattr(dtype, "name", str(dtype))
        else:
            policy = cls._keras.mixed_precision.global_policy()
            name = getattr(policy, "name", str(policy))
        return name if name.startswith("mixed") and backend == "garden" else None

    def _load_encoder(self, handle: str, preprocess: Optional[str], seq_length: Optional[int], backend: str) -> Any:
        enc = LoadOptions(str(handle), preprocess, seq_length, backend).load()
        if self.encoder_trainable and enc.signature.format == "tf1_hub" and backend == "auto":
            log.info("%s is a TF1 Hub module; fine-tuning it through the Model Garden rebuild", handle)
        return enc

    def _make_plan(self, enc: Any) -> LayerPlan:
        """The layers to compute and how they combine and pool (a learnable scalar mix: as a mean, which the mix
        replaces): the spec's plan for an embedding, its token vectors' otherwise (the layers apart for
        ``output="layers"``); a fine-tuned TF1 module runs through the rebuild (its variables are the rebuild's)."""
        sig = enc.signature
        spec = self.spec if self.output_kind == "embedding" else self.spec.for_tokens()
        if self.output_kind == "layers":
            spec = spec.replace(combine="none")
        if self.output_kind == "pooled" and not sig.has_pooled_output:
            raise InputError(f"{self.handle} exports no pooled_output; use output='embedding'")
        return spec.plan(
            sig,
            enc.backend,
            need_pooled=self.output_kind == "pooled",
            force_garden=self.encoder_trainable and sig.format == "tf1_hub",
        )

    def get_config(self) -> dict:
        config = {k: v for k, v in super().get_config().items() if k != "trainable"}  # `trainable`: the encoder's
        weights = self._init_args["weights"]
        return {
            **config,
            **self._init_args,
            "frozen_layers": self.frozen_layers,
            "weights": None if weights is None else [float(w) for w in np.ravel(weights)],
        }

    # -- computation -----------------------------------------------------
    def build(self, input_shape: Any = None) -> None:
        """Nothing to build: the encoder's variables exist from __init__ (and Keras 3 would warn otherwise)."""
        self.built = True

    def _head(self) -> graph.Head:
        """The export's head, for this layer's output (in the layer's compute dtype; the scalar mix, if any)."""
        return graph.Head(
            self._plan,
            self.pooling,
            self.special_tokens,
            self.normalize,
            output=self.output_kind,
            return_mask=self.return_mask,
            dtype=self.compute_dtype,
            mix=self.mix,
        )

    def call(self, inputs: Any, training: Any = None) -> Any:
        enc = self._holder.enc
        pre = enc.preprocessor.module
        ids, mask, types = graph.pack(pre, [pre.tokenize(s) for s in string_segments(inputs)], enc.seq_length)
        backend = self._garden if self._garden is not None else enc.hub
        acts = backend(ids, mask, types, training=bool(training) and self.encoder_trainable, plan=self._plan)
        return self._head()(acts, mask, types)

    def compute_output_shape(self, input_shape: Any) -> Union[Tuple[Optional[int], ...], list]:
        H = self._holder.enc.signature.hidden_size
        k = len(self._plan.indices)
        first = input_shapes(input_shape)[0]
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
