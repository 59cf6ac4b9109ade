"""The ``controls`` and ``incidents`` tables: every SQL statement that touches them (one owner per table).

Rows are appended inside the caller's transaction; nothing here decides anything (the
trading-state rules are tradebook.safety.controls').
"""
from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

_CONTROLS = ("control_id", "ts", "state", "reason", "actor", "source")
_INCIDENTS = ("incident_id", "ts", "session_date", "kind", "detail", "resolved_at")


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


def open_incidents(con: "duckdb.DuckDBPyConnection") -> int:
    """How many incidents are not resolved."""
    return con.execute("SELECT count(*) FROM incidents WHERE resolved_at IS NULL").fetchone()[0]


def last_ts(con: "duckdb.DuckDBPyConnection") -> datetime | None:
    """Time of the newest control row (None: none yet)."""
    return con.execute("SELECT max(ts) FROM controls").fetchone()[0]


def recent_controls(con: "duckdb.DuckDBPyConnection", limit: int) -> "pd.DataFrame":
    """The newest ``limit`` control rows, newest first: ts, state, reason, actor, source."""
    return con.execute("SELECT ts, state, reason, actor, source FROM controls ORDER BY ts DESC, control_id DESC "
                       "LIMIT ?", [limit]).df()


def recent_incidents(con: "duckdb.DuckDBPyConnection", limit: int) -> "pd.DataFrame":
    """The newest ``limit`` incidents, newest first: ts, session_date, kind, detail, resolved_at."""
    return con.execute("SELECT ts, session_date, kind, detail, resolved_at FROM incidents ORDER BY ts DESC "
                       "LIMIT ?", [limit]).df()


def control_history(con: "duckdb.DuckDBPyConnection") -> list[dict[str, Any]]:
    """Every control row, oldest first (by control_id), as a dict per row."""
    return [dict(zip(_CONTROLS, r)) for r in
            con.execute(f"SELECT {', '.join(_CONTROLS)} FROM controls ORDER BY control_id").fetchall()]


def incident_history(con: "duckdb.DuckDBPyConnection") -> list[dict[str, Any]]:
    """Every incident, oldest first (by incident_id), as a dict per row."""
    return [dict(zip(_INCIDENTS, r)) for r in
            con.execute(f"SELECT {', '.join(_INCIDENTS)} FROM incidents ORDER BY incident_id").fetchall()]
