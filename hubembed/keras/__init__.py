"""Keras layers: a Hub encoder as a feature layer, ScalarMix, attention and masked pooling.

The same layers exist for both Keras flavours TensorFlow 2.20 ships:

* Keras 3 (``import keras``; what ``tf.keras`` is unless ``TF_USE_LEGACY_KERAS=1``):
  ``hubembed.keras.HubFeatureLayer`` etc., or ``from hubembed.keras.keras3 import HubFeatureLayer``;
* tf_keras (Keras 2): ``from hubembed.keras.legacy import HubFeatureLayer`` etc. (the default names
  when ``TF_USE_LEGACY_KERAS=1``).

``hub.KerasLayer`` is a tf_keras layer and breaks in Keras 3 models; ``HubFeatureLayer``
registers the Hub model's variables with whichever Keras it belongs to, so it works in
Sequential and functional models of both, frozen or fine-tuned.

>>> from hubembed.keras import HubFeatureLayer          # doctest: +SKIP
>>> model = keras.Sequential([keras.Input((), dtype="string"),
...                           HubFeatureLayer("minilm", output="embedding", pooling="mean"),
...                           keras.layers.Dense(2)])     # doctest: +SKIP

Inputs: a string tensor ``[B]`` (or ``[B, 1]``), or a pair ``(a, b)`` / ``{"a": .., "b": ..}``
of them for sentence pairs. Outputs (``output=``):

* ``"embedding"``: one vector per text, ``[B, D]``: layers selected, combined, pooled (as ``embed``);
* ``"pooled"``: the model's ``pooled_output`` ``[B, H]``;
* ``"sequence"``: token vectors ``[B, S, D]`` of the combined layers (``return_mask=True`` adds
  the ``[B, S]`` padding mask, for ``MaskedMeanPooling`` & co.);
* ``"layers"``: the selected layers apart, ``[B, k, S, H]`` (``return_mask`` as above).

Each batch is packed to its own longest text (at most ``seq_length``). ``trainable=True``
fine-tunes the encoder; ``frozen_layers=n`` keeps its embeddings and first n blocks frozen
(``GradualUnfreezing`` thaws them epoch by epoch). A learnable ``combine="scalar_mix"``
trains even when the encoder is frozen.

The package, by job: ``feature`` (``HubFeatureLayer``: configuration, plan, call; its head and packing are the
export graph's, ``hubembed._pipeline.graph``), ``tracking`` (the encoder's variables in each Keras, freezing by
``hubembed.garden``'s rule, ``GradualUnfreezing``), ``pooling`` (``ScalarMix``, masked and attention pooling),
``flavours`` (the classes made for each Keras), ``keras3`` and ``legacy`` (their names as modules). Importing it
imports no TensorFlow or Keras: a flavour's classes are made on first use.
"""

from __future__ import annotations

import importlib

from hubembed._util import require_tensorflow
from hubembed.keras.feature import OUTPUTS as OUTPUTS
from hubembed.keras.flavours import NAMES as _NAMES
from hubembed.keras.flavours import default_keras as default_keras
from hubembed.keras.flavours import flavour as flavour
from hubembed.keras.pooling import masked_pool as masked_pool
from hubembed.keras.pooling import received_attention as received_attention


def __getattr__(name: str) -> object:
    if name in ("keras3", "legacy"):
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        require_tensorflow(f"hubembed.keras.{name}")
        # Both flavours are registered for deserialisation as soon as one is used.
        flavour("keras3"), flavour("legacy")
        return getattr(flavour(default_keras()), name)
    raise AttributeError(f"module 'hubembed.keras' has no attribute {name!r}")
