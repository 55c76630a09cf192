"""The layers, made once per Keras flavour: each logic class (``pooling``, ``feature``, ``tracking``) put on that
Keras' ``Layer`` (or ``Callback``) and registered for deserialisation as ``hubembed>ClassName``."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any, Callable, Dict

from hubembed.errors import InputError
from hubembed.keras.feature import HubFeatureLogic
from hubembed.keras.pooling import (
    AttentionPoolingLogic,
    MaskedMaxPoolingLogic,
    MaskedMeanPoolingLogic,
    ScalarMixLogic,
)
from hubembed.keras.tracking import GradualUnfreezingLogic, Keras3Tracking, LegacyTracking

# The classes' module, as saved models name it (the package: where they were made before it was split).
MODULE = "hubembed.keras"
NAMES = (
    "HubFeatureLayer",
    "ScalarMix",
    "AttentionPooling",
    "MaskedMeanPooling",
    "MaskedMaxPooling",
    "GradualUnfreezing",
)


def default_keras() -> str:
    """The Keras that ``tf.keras`` is: tf_keras with TF_USE_LEGACY_KERAS=1, else Keras 3."""
    return "legacy" if os.environ.get("TF_USE_LEGACY_KERAS", "0").lower() in ("1", "true", "yes") else "keras3"


def _keras3() -> SimpleNamespace:
    """The layers on Keras 3 (``import keras``)."""
    import keras as K

    return _assemble("keras3", K, K.saving.register_keras_serializable(package="hubembed"), Keras3Tracking)


def _legacy() -> SimpleNamespace:
    """The layers on tf_keras (Keras 2)."""
    import tf_keras as K

    return _assemble("legacy", K, K.utils.register_keras_serializable(package="hubembed"), LegacyTracking)


def _assemble(name: str, K: Any, register: Callable[[type], type], tracking: type) -> SimpleNamespace:
    """Each logic class on K's Layer, registered as ``hubembed>ClassName``; GradualUnfreezing on K's Callback."""

    def make(cls_name: str, logic: type, base: type, *flavour_mixins: type, **attrs: Any) -> type:
        namespace = {"__module__": MODULE, "__qualname__": cls_name, "__doc__": logic.__doc__, "_keras": K, **attrs}
        return type(cls_name, (logic, *flavour_mixins, base), namespace)

    import tensorflow as tf

    layer = K.layers.Layer
    mix = register(make("ScalarMix", ScalarMixLogic, layer))
    # call() has no tensor-dependent Python control flow: autograph need not convert it (tf_keras would, and its
    # conversion cache, keyed by code objects, once handed back another method's conversion in a long run).
    call = tf.autograph.experimental.do_not_convert(HubFeatureLogic.call)
    return SimpleNamespace(
        HubFeatureLayer=register(make("HubFeatureLayer", HubFeatureLogic, layer, tracking, _ScalarMix=mix, call=call)),
        ScalarMix=mix,
        AttentionPooling=register(make("AttentionPooling", AttentionPoolingLogic, layer)),
        MaskedMeanPooling=register(make("MaskedMeanPooling", MaskedMeanPoolingLogic, layer)),
        MaskedMaxPooling=register(make("MaskedMaxPooling", MaskedMaxPoolingLogic, layer)),
        GradualUnfreezing=make("GradualUnfreezing", GradualUnfreezingLogic, K.callbacks.Callback),
        keras=K,
        flavour=name,
    )


_FACTORIES: Dict[str, Callable[[], SimpleNamespace]] = {"keras3": _keras3, "legacy": _legacy}
_FLAVOURS: Dict[str, SimpleNamespace] = {}


def flavour(name: str) -> SimpleNamespace:
    """The layers for one Keras, made (and registered for deserialisation) on first use.

    Args:
        name: ``"keras3"`` (Keras 3, ``import keras``) or ``"legacy"`` (tf_keras, Keras 2).

    Returns:
        A namespace with ``HubFeatureLayer``, ``ScalarMix``, ``AttentionPooling``, ``MaskedMeanPooling``,
        ``MaskedMaxPooling``, ``GradualUnfreezing``, ``keras`` (that Keras module) and ``flavour`` (name).

    Raises:
        InputError: name is neither "keras3" nor "legacy".
    """
    if name not in _FACTORIES:
        raise InputError(f"Keras flavour {name!r}; valid: keras3, legacy")
    if name not in _FLAVOURS:
        _FLAVOURS[name] = _FACTORIES[name]()
    return _FLAVOURS[name]


def attribute(name: str, attr: str) -> Any:
    """``attr`` of flavour ``name``'s namespace, for the modules ``hubembed.keras.keras3`` and ``.legacy``."""
    if attr.startswith("__"):  # module machinery (copy, pickle, doctest...) asks; it does not make the layers
        raise AttributeError(f"module 'hubembed.keras.{name}' has no attribute {attr!r}")
    try:
        return getattr(flavour(name), attr)
    except AttributeError:
        raise AttributeError(f"module 'hubembed.keras.{name}' has no attribute {attr!r}") from None
