"""The ``closed_today`` table: every statement on it (one owner per table).

A symbol that went flat in a session may not be re-entered that session (POS-3, GATE-13).
Written inside the caller's transaction.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb


def mark(con: "duckdb.DuckDBPyConnection", symbol: str, day: date, ts: datetime) -> None:
    """``symbol`` went flat in the session of ``day`` (kept once: the first close counts)."""
    con.execute("INSERT OR IGNORE INTO closed_today (symbol, session_date, closed_at) VALUES (?, ?, ?)",
                [symbol, day, ts])


def mark_external_closes(con: "duckdb.DuckDBPyConnection", day: date, ts: datetime) -> None:
    """Every EXTERNAL_CLOSE of reconcile's ``rec_actions`` (a temporary table of its run) went flat."""
    con.execute("INSERT OR IGNORE INTO closed_today (symbol, session_date, closed_at) "
                "SELECT symbol, ?, ? FROM rec_actions WHERE kind = 'EXTERNAL_CLOSE'", [day, ts])


def symbols(con: "duckdb.DuckDBPyConnection", day: date) -> list[str]:
    """Symbols closed in the session of ``day``."""
    return [r[0] for r in con.execute("SELECT symbol FROM closed_today WHERE session_date = ?", [day]).fetchall()]
