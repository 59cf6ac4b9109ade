"""The ``controls`` and ``incidents`` tables: every SQL statement that touches them (one owner per table).

Rows are appended inside the caller's transaction; nothing here decides anything (the
trading-state rules are tradebook.safety.controls').
"""
from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb


def episode(con: "duckdb.DuckDBPyConnection") -> list[tuple]:
    """Control rows since the last RUNNING row, oldest first: (state, reason, actor, source, ts)."""
    return con.execute(
        "SELECT state, reason, actor, source, ts FROM controls WHERE control_id > "
        "coalesce((SELECT max(control_id) FROM controls WHERE state = 'RUNNING'), -1) "
        "ORDER BY control_id").fetchall()


def append_control(con: "duckdb.DuckDBPyConnection", ts: datetime, state: str, reason: str, actor: str,
                   source: str) -> None:
    """One control row: the state set at ``ts``, with who set it, from where and why."""
    con.execute("INSERT INTO controls (ts, state, reason, actor, source) VALUES (?, ?, ?, ?, ?)",
                [ts, str(state), reason, actor, source])


def append_incident(con: "duckdb.DuckDBPyConnection", ts: datetime, day: date, kind: str, detail: str) -> None:
    """One incident row, counted on its exchange ``day``."""
    con.execute("INSERT INTO incidents (ts, session_date, kind, detail) VALUES (?, ?, ?, ?)",
                [ts, day, kind, detail])


def incidents_on(con: "duckdb.DuckDBPyConnection", day: date) -> int:
    """How many incidents were recorded on the exchange ``day``."""
    return con.execute("SELECT count(*) FROM incidents WHERE session_date = ?", [day]).fetchone()[0]
