"""Moved to hubembed._pipeline.layers (a temporary alias while the layout changes)."""
import sys

from hubembed._pipeline import layers as _moved

sys.modules[__name__] = _moved
