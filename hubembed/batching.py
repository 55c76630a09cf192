"""Moved to hubembed._pipeline.batching (a temporary alias while the layout changes)."""
import sys

from hubembed._pipeline import batching as _moved

sys.modules[__name__] = _moved
