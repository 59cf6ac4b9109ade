"""The DuckDB ledger: connection, schema and migrations (db), ledger facts (meta), backups.

The ledger imports no phase, no engine and no CLI (docs/architecture.md).
"""
