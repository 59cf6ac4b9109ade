"""The DuckDB ledger: connection, schema and migrations, events (db); one store module per
table (controls, verdicts, equity, cooldowns, heartbeats, closed_today); ledger facts (meta, identity);
byte-level integrity (file); backups.

The ledger imports no phase, no engine and no CLI (docs/architecture.md).
"""
