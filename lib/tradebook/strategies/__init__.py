"""Strategies: the interface (``base``), the loader (``loader``) and the built-ins."""
