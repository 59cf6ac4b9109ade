"""The ledger's tables (SPEC §5) as numbered migrations, and applying the missing ones.

A ledger records its version in ``schema_version``; opening it for writing applies every
newer migration, each in its own transaction. A ledger newer than this tradebook is
refused (upgrade tradebook), never rewritten. Each table's reads and writes are its
store module (``events``, ``intents``, ``orders``, ...).
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb

from tradebook.errors import LedgerCorrupt, LedgerError
from tradebook.ledger.file import corrupt_message

MIGRATIONS: list[str] = [
    # v1: the tables of SPEC §5
    """
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY, phase VARCHAR NOT NULL, params_hash VARCHAR, params_json JSON,
        started_at TIMESTAMPTZ NOT NULL, ended_at TIMESTAMPTZ, status VARCHAR NOT NULL,
        error VARCHAR, notebook_path VARCHAR, sim_time TIMESTAMPTZ);
    CREATE SEQUENCE event_seq;
    CREATE TABLE events (
        event_id BIGINT PRIMARY KEY DEFAULT nextval('event_seq'), ts TIMESTAMPTZ NOT NULL,
        run_id VARCHAR, kind VARCHAR NOT NULL, symbol VARCHAR, qty DOUBLE, price DOUBLE,
        reason VARCHAR, data JSON);
    CREATE TABLE intents (
        intent_id VARCHAR PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL, run_id VARCHAR,
        kind VARCHAR NOT NULL,            -- ENTRY | ADD_ON | EXIT
        symbol VARCHAR NOT NULL, side VARCHAR NOT NULL, qty DOUBLE NOT NULL,
        order_type VARCHAR NOT NULL, limit_price DOUBLE, urgency VARCHAR NOT NULL DEFAULT 'normal',
        confidence DOUBLE, decision_price DOUBLE, decision_time TIMESTAMPTZ, reason VARCHAR,
        state VARCHAR NOT NULL,           -- PLANNED SUBMITTED FILLED PARTIAL CANCELLED EXPIRED FAILED REJECTED
        attempt INTEGER NOT NULL DEFAULT 0, gate_status VARCHAR, gate_reason VARCHAR,
        updated_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE verdicts (
        intent_id VARCHAR NOT NULL, run_id VARCHAR, ts TIMESTAMPTZ NOT NULL, rule VARCHAR NOT NULL,
        severity VARCHAR NOT NULL,        -- pass | warn | reject
        reason_code VARCHAR NOT NULL, detail JSON);
    CREATE TABLE orders (
        client_order_id VARCHAR PRIMARY KEY, intent_id VARCHAR NOT NULL, attempt INTEGER NOT NULL,
        broker_id VARCHAR, symbol VARCHAR NOT NULL, side VARCHAR NOT NULL, qty DOUBLE NOT NULL,
        order_type VARCHAR NOT NULL, limit_price DOUBLE, time_in_force VARCHAR NOT NULL,
        status VARCHAR NOT NULL, filled_qty DOUBLE NOT NULL DEFAULT 0, filled_avg_price DOUBLE,
        reject_reason VARCHAR, submitted_at TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL);
    CREATE SEQUENCE fill_seq;
    CREATE TABLE fills (
        fill_id BIGINT PRIMARY KEY DEFAULT nextval('fill_seq'), client_order_id VARCHAR,
        intent_id VARCHAR, symbol VARCHAR NOT NULL, side VARCHAR NOT NULL, qty DOUBLE NOT NULL,
        price DOUBLE NOT NULL, ts TIMESTAMPTZ NOT NULL, decision_price DOUBLE, slippage_bps DOUBLE);
    CREATE TABLE positions (
        symbol VARCHAR PRIMARY KEY, qty DOUBLE NOT NULL, avg_price DOUBLE NOT NULL,
        origin VARCHAR NOT NULL,          -- STRATEGY | EXTERNAL
        opened_at TIMESTAMPTZ, confidence DOUBLE, tier VARCHAR, sector VARCHAR,
        updated_at TIMESTAMPTZ NOT NULL);
    CREATE SEQUENCE trade_seq;
    CREATE TABLE trades (
        trade_id BIGINT PRIMARY KEY DEFAULT nextval('trade_seq'), ts TIMESTAMPTZ NOT NULL,
        symbol VARCHAR NOT NULL, side VARCHAR NOT NULL, qty DOUBLE NOT NULL, price DOUBLE,
        kind VARCHAR NOT NULL,            -- FILL | EXTERNAL_CLOSE | CORRECTION | BACKFILL
        realized_pnl DOUBLE, reason VARCHAR, run_id VARCHAR);
    CREATE TABLE closed_today (symbol VARCHAR NOT NULL, session_date DATE NOT NULL,
        closed_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (symbol, session_date));
    CREATE TABLE cooldowns (symbol VARCHAR PRIMARY KEY, last_order_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE equity_snapshots (
        ts TIMESTAMPTZ NOT NULL, session_date DATE NOT NULL,
        kind VARCHAR NOT NULL,            -- START_OF_DAY | PEAK | INTRADAY | END_OF_DAY
        equity DOUBLE NOT NULL, cash DOUBLE);
    CREATE SEQUENCE control_seq;
    CREATE TABLE controls (
        control_id BIGINT PRIMARY KEY DEFAULT nextval('control_seq'), ts TIMESTAMPTZ NOT NULL,
        state VARCHAR NOT NULL,           -- RUNNING | REDUCE_ONLY | HALTED | FROZEN
        reason VARCHAR NOT NULL, actor VARCHAR NOT NULL, source VARCHAR NOT NULL);
    CREATE SEQUENCE incident_seq;
    CREATE TABLE incidents (
        incident_id BIGINT PRIMARY KEY DEFAULT nextval('incident_seq'), ts TIMESTAMPTZ NOT NULL,
        session_date DATE NOT NULL, kind VARCHAR NOT NULL, detail VARCHAR, resolved_at TIMESTAMPTZ);
    CREATE TABLE heartbeats (component VARCHAR PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, detail JSON);
    """,
    # v2: facts about the ledger itself: the broker identity it belongs to (OPS-8) and the last
    # full reconcile of a session (REC-8); tradebook.ledger.meta reads and writes them.
    """
    CREATE TABLE ledger_meta (key VARCHAR PRIMARY KEY, value JSON NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
    """,
    # v3: what ran: the code version (tradebook.engine.code_version), the kernel's pid, and whether the
    # notebook ended itself early (sys.exit(0): a clean halt, not a failure).
    """
    ALTER TABLE runs ADD COLUMN code_version VARCHAR;
    ALTER TABLE runs ADD COLUMN kernel_pid INTEGER;
    ALTER TABLE runs ADD COLUMN stopped_early BOOLEAN;
    """,
]


def migrate(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Bring the ledger at ``path`` (open on ``con``) to the newest schema, one transaction per version."""
    try:
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER, applied_at TIMESTAMPTZ)")
        current = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
    except duckdb.Error as exc:
        raise LedgerCorrupt(corrupt_message(path, str(exc))) from None
    if current > len(MIGRATIONS):
        raise LedgerError(f"ledger {path} has schema v{current}, newer than this tradebook "
                          f"(v{len(MIGRATIONS)}); upgrade tradebook")
    for version in range(current + 1, len(MIGRATIONS) + 1):
        con.execute("BEGIN TRANSACTION")
        con.execute(MIGRATIONS[version - 1])
        con.execute("INSERT INTO schema_version VALUES (?, ?)", [version, datetime.now(timezone.utc)])
        con.execute("COMMIT")


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The ledger's schema version."""
    return con.execute("SELECT max(version) FROM schema_version").fetchone()[0]
