"""The ``trades`` table: every SQL statement that touches it (one owner per table).

A row is one change of a position, appended: a FILL of our own order (with the realized P&L
of a sell), or reconcile's EXTERNAL_CLOSE, CORRECTION or BACKFILL. Written inside the
caller's transaction.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

_HISTORY = ("trade_id", "ts", "symbol", "side", "qty", "price", "kind", "realized_pnl", "reason", "run_id")


def append(con: "duckdb.DuckDBPyConnection", ts: datetime, symbol: str, side: str, qty: float,
           price: float | None, kind: str, realized_pnl: float | None, reason: str,
           run_id: str | None = None) -> None:
    """One trade row."""
    con.execute("INSERT INTO trades (ts, symbol, side, qty, price, kind, realized_pnl, reason, run_id) "
                "VALUES (?,?,?,?,?,?,?,?,?)", [ts, symbol, side, qty, price, kind, realized_pnl, reason, run_id])


def append_reconcile_actions(con: "duckdb.DuckDBPyConnection", now: datetime, run_id: str | None) -> None:
    """One trade per row of reconcile's ``rec_actions`` (a temporary table of its run): its kind, the
    signed change as side and quantity, no realized P&L (outside the strategy's statistics)."""
    con.execute("INSERT INTO trades (ts, symbol, side, qty, price, kind, realized_pnl, reason, run_id) "
                "SELECT ?, symbol, CASE WHEN delta >= 0 THEN 'buy' ELSE 'sell' END, abs(delta), "
                "price, kind, NULL, reason, ? FROM rec_actions", [now, run_id])


def count(con: "duckdb.DuckDBPyConnection") -> int:
    """How many trades the ledger holds."""
    return con.execute("SELECT count(*) FROM trades").fetchone()[0]


def totals(con: "duckdb.DuckDBPyConnection") -> tuple[int, float]:
    """(number of trades, realized P&L summed over them; 0 when none)."""
    return con.execute("SELECT count(*), coalesce(sum(realized_pnl), 0) FROM trades").fetchone()


def history(con: "duckdb.DuckDBPyConnection") -> list[dict[str, Any]]:
    """Every trade, oldest first (by trade_id), as a dict per row."""
    return [dict(zip(_HISTORY, r)) for r in
            con.execute(f"SELECT {', '.join(_HISTORY)} FROM trades ORDER BY trade_id").fetchall()]


def external_closes_since(con: "duckdb.DuckDBPyConnection", symbol: str, since: datetime) -> list[tuple]:
    """(ts, side, qty) of reconcile's EXTERNAL_CLOSE trades on ``symbol`` at or after ``since``, oldest first."""
    return con.execute("SELECT ts, side, qty FROM trades WHERE kind = 'EXTERNAL_CLOSE' AND symbol = ? AND ts >= ? "
                       "ORDER BY trade_id", [symbol, since]).fetchall()
