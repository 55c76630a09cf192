"""Moved to hubembed._pipeline.run (a temporary alias while the layout changes)."""
import sys

from hubembed._pipeline import run as _moved

sys.modules[__name__] = _moved
