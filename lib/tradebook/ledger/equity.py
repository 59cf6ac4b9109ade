"""The ``equity_snapshots`` table: every statement that writes it or that the breakers read (one owner).

Kinds: START_OF_DAY (the previous close's equity, once per exchange date), PEAK (each new
high), PEAK_RESET (an operator restarted the BRK-2 high-water mark). Appended inside the
caller's transaction.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb


def append_snapshot(con: "duckdb.DuckDBPyConnection", ts: datetime, day: date, kind: str, equity: float,
                    cash: float | None = None) -> None:
    """One snapshot of ``kind`` on exchange date ``day``."""
    con.execute("INSERT INTO equity_snapshots (ts, session_date, kind, equity, cash) VALUES (?, ?, ?, ?, ?)",
                [ts, day, kind, equity, cash])


def peak(con: "duckdb.DuckDBPyConnection") -> float | None:
    """Highest equity since the last PEAK_RESET (all time if none)."""
    reset = con.execute("SELECT max(ts) FROM equity_snapshots WHERE kind = 'PEAK_RESET'").fetchone()[0]
    sql = "SELECT max(equity) FROM equity_snapshots WHERE kind IN ('PEAK', 'PEAK_RESET')"
    row = con.execute(sql + (" AND ts >= ?" if reset is not None else ""),
                      [reset] if reset is not None else []).fetchone()
    return row[0]


def start_of_day(con: "duckdb.DuckDBPyConnection", day: date) -> float | None:
    """The START_OF_DAY equity recorded for exchange date ``day`` (None: not yet)."""
    row = con.execute("SELECT equity FROM equity_snapshots WHERE kind = 'START_OF_DAY' AND session_date = ? "
                      "ORDER BY ts LIMIT 1", [day]).fetchone()
    return None if row is None else row[0]
