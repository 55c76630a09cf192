"""The feature layer's variables: the Hub model's (or its rebuild's) registered with the layer's Keras, and frozen
by the rule ``hubembed.garden`` freezes its rebuild with (``block_group``, ``is_frozen``).

``EncoderVariables`` is written once; what differs between the Keras flavours (how a variable is tracked, and in
tf_keras the resources and weight lists) is ``Keras3Tracking`` or ``LegacyTracking``, mixed in by
``hubembed.keras.flavours``. ``GradualUnfreezingLogic`` thaws the blocks epoch by epoch.
"""

from __future__ import annotations

import re
from typing import Any, List, Optional, Sequence

import numpy as np

from hubembed.errors import InputError
from hubembed.garden import block_group, is_frozen, unfreezing_schedule


class EncoderVariables:
    """The encoder's variables as the layer's, each with its freezing group (``hubembed.garden.block_group``).

    Expects ``self._holder`` (``enc``, ``vars``, ``groups``), ``self._plan``, ``self._garden`` (the rebuild, or
    None), ``self.encoder_trainable`` and ``self.handle``; the flavour gives ``_track_encoder_variable`` and
    ``_set_encoder_trainable``.
    """

    @property
    def _enc_vars(self) -> list:
        return self._holder.vars

    @property
    def _groups(self) -> list:
        return self._holder.groups

    @property
    def _num_layers(self) -> int:
        return self._holder.enc.signature.num_layers

    def _source_variables(self) -> list:
        enc = self._holder.enc
        if self._garden is not None:
            return list(self._garden.model.variables)
        if enc.signature.format == "tf1_hub":
            return []  # TF1 modules: inference only through their signatures
        return list(getattr(enc.obj, "variables", []) or [])

    def _register_encoder_variables(self) -> None:
        """Track every encoder variable (frozen for now: ``freeze`` decides) and record its group; what the source
        does not train (or cannot: integer variables) is ``"fixed"``."""
        import tensorflow as tf

        train_ids = None
        if self._garden is None:
            train_ids = {id(v) for v in getattr(self._holder.enc.obj, "trainable_variables", []) or []}
        for v in self._source_variables():
            trainable = v.trainable if train_ids is None else id(v) in train_ids
            if v.dtype not in (tf.float32, tf.float16, tf.bfloat16):
                trainable = False
            self._groups.append(block_group(v.name, self._plan.need_pooled) if trainable else "fixed")
            self._enc_vars.append(self._track_encoder_variable(v))

    def freeze(self, n: int) -> None:
        """Freeze the embeddings and the first n blocks (n=0: the whole encoder trains, if trainable)."""
        L = self._num_layers
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= L:
            raise InputError(f"frozen_layers={n!r}; valid: 0..{L}")
        if n and not self.encoder_trainable:
            raise InputError("frozen_layers needs trainable=True (a frozen encoder has every layer frozen)")
        if n and not any(isinstance(g, int) or g == "shared" for g in self._groups):
            raise InputError(
                f"{self.handle}: its variable names do not say which block they belong to; "
                f"use backend='garden' (Model Garden names) for per-layer freezing"
            )
        if "shared" in self._groups and 0 < n < L:
            raise InputError("ALBERT shares one block across all its layers: freeze all of it or none")
        self.frozen_layers = int(n)
        for w, g in zip(self._enc_vars, self._groups):
            self._set_encoder_trainable(w, self.encoder_trainable and not is_frozen(g, n, L))


class Keras3Tracking:
    """Keras 3: each encoder variable is wrapped (not copied) in a tracked ``keras.Variable``; its ``trainable``
    says whether it trains."""

    def _track_encoder_variable(self, v: Any) -> Any:
        w = self._keras.Variable(
            initializer=v, trainable=False, dtype=v.dtype, shape=v.shape, name=re.sub(r"[/:]", "_", v.name)
        )
        self._track_variable(w)
        return w

    @staticmethod
    def _set_encoder_trainable(w: Any, trainable: bool) -> None:
        w.trainable = trainable

    def _hold_resources(self, enc: Any) -> None:
        """Nothing to do: a Keras 3 model saves the layer's variables, and rebuilds the rest from its config."""


class LegacyTracking:
    """tf_keras: the encoder's own variables are the layer's weights; which of them train is the layer's choice."""

    def _track_encoder_variable(self, v: Any) -> Any:
        return self.add_weight(
            name=v.name.split(":")[0], shape=v.shape, dtype=v.dtype, trainable=False, getter=lambda *_, _v=v, **__: _v
        )

    @staticmethod
    def _set_encoder_trainable(w: Any, trainable: bool) -> None:
        w._hubembed_trainable = trainable

    def _hold_resources(self, enc: Any) -> None:
        """Track the encoder's and the preprocessor's resources (vocabulary tables, restored functions).

        A tf_keras SavedModel export reaches them only through tracked attributes.
        """
        import tensorflow as tf

        deps = tf.__internal__.tracking.AutoTrackable()
        deps.preprocessor = enc.preprocessor.module
        deps.encoder = tf.__internal__.tracking.AutoTrackable()
        deps.encoder.obj = self._garden.model if self._garden is not None else enc.obj
        self._resources = deps

    @property
    def trainable_weights(self) -> list:
        if not self.trainable:
            return []
        own = [w for w in self._trainable_weights]
        enc = [w for w in self._enc_vars if getattr(w, "_hubembed_trainable", False)]
        return self._dedup_weights(own + self._gather_children_attribute("trainable_variables") + enc)

    @property
    def non_trainable_weights(self) -> list:
        enc_ids = {id(w) for w in self.trainable_weights}
        rest = [w for w in self._non_trainable_weights if id(w) not in enc_ids]
        children = self._gather_children_attribute("non_trainable_variables")
        if not self.trainable:
            children = self._gather_children_attribute("variables")
            rest = self._trainable_weights + self._non_trainable_weights
        return self._dedup_weights(rest + children)

    @property
    def weights(self) -> list:  # a fixed order (saving), whatever is frozen
        return self._dedup_weights(
            self._trainable_weights + self._non_trainable_weights + self._gather_children_attribute("variables")
        )


class GradualUnfreezingLogic:
    """Thaw a fine-tuned HubFeatureLayer's blocks from the top, epoch by epoch (ULMFiT).

    schedule: frozen block count per epoch (``hubembed.garden.unfreezing_schedule``); by default
    all L blocks frozen at epoch 0, one more thawed each epoch. The optimizer is built with every
    encoder variable up front, so variables thawed later are known to it.
    """

    def __init__(self, layer: Any, schedule: Optional[Sequence[int]] = None, every: int = 1) -> None:
        super().__init__()
        self.layer = layer
        self.schedule = schedule
        self.every = every
        self.history: List[int] = []

    def _frozen_at(self, epoch: int) -> int:
        L = self.layer._num_layers
        sched = self.schedule or unfreezing_schedule(L, epoch + 1, every=self.every)
        return sched[min(epoch, len(sched) - 1)]

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        # Build the optimizer with every encoder variable, frozen ones included: an optimizer only
        # updates the variables it was built with, and thawed blocks must be among them.
        opt = self.model.optimizer
        if not getattr(opt, "built", False):
            ids = {id(v) for v in self.model.trainable_weights}
            extra = [v for v, g in zip(self.layer._enc_vars, self.layer._groups) if g != "fixed" and id(v) not in ids]
            opt.build(list(self.model.trainable_weights) + extra)

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        n = self._frozen_at(epoch)
        if n != self.layer.frozen_layers or epoch == 0:
            self.layer.freeze(n)
            self.model.make_train_function(force=True)
        self.history.append(n)
