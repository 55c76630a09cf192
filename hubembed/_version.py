"""The package version, in a module of its own: read by setup.cfg (statically) and by modules below the root."""

__version__ = "0.1.0"
