"""Moved to hubembed._pipeline.tokens (a temporary alias while the layout changes)."""
import sys

from hubembed._pipeline import tokens as _moved

sys.modules[__name__] = _moved
