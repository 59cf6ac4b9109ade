"""tradebook: a Jupyter-native swing trading system (reconcile, decide, execute, report).

Kept import-light on purpose: every phase notebook imports it, so heavy modules
(pandas, duckdb, papermill, alpaca-py) load only where they are used.
"""
__version__ = "0.1.0"
