"""The DuckDB ledger: connection, schema and migrations (db); one store module per table (events,
runs, controls, verdicts, intents, orders, equity, cooldowns, heartbeats, closed_today, positions, trades,
fills); ledger facts (meta, the store of ledger_meta; identity); byte-level integrity (file); backups.

The ledger imports no phase, no engine and no CLI (docs/architecture.md).
"""
