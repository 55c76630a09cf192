"""Moved to hubembed._pipeline.backends (a temporary alias while the layout changes)."""
import sys

from hubembed._pipeline import backends as _moved

sys.modules[__name__] = _moved
