"""The layers on tf_keras (Keras 2): ``from hubembed.keras.legacy import HubFeatureLayer``.

Its names (``HubFeatureLayer``, ``ScalarMix``, ``AttentionPooling``, ``MaskedMeanPooling``, ``MaskedMaxPooling``,
``GradualUnfreezing``, ``keras``, ``flavour``) are ``hubembed.keras.flavour("legacy")``'s, made on first use.
"""

from hubembed.keras import flavours as _flavours


def __getattr__(name: str) -> object:
    return _flavours.attribute("legacy", name)
