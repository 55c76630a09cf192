"""The layers on Keras 3 (``import keras``): ``from hubembed.keras.keras3 import HubFeatureLayer``.

Its names (``HubFeatureLayer``, ``ScalarMix``, ``AttentionPooling``, ``MaskedMeanPooling``, ``MaskedMaxPooling``,
``GradualUnfreezing``, ``keras``, ``flavour``) are ``hubembed.keras.flavour("keras3")``'s, made on first use.
"""

from hubembed.keras import flavours as _flavours


def __getattr__(name: str) -> object:
    return _flavours.attribute("keras3", name)
