"""Moved to hubembed._pipeline.pooling (a temporary alias while the layout changes)."""
import sys

from hubembed._pipeline import pooling as _moved

sys.modules[__name__] = _moved
