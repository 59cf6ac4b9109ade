"""The ``positions`` table: every SQL statement that touches it (one owner per table).

A row is one symbol tradebook holds: quantity and average price (the broker is the truth for
both), and why it is held (origin STRATEGY or EXTERNAL, entry time, confidence, tier,
sector). The position-keeping rules are tradebook.phases.positions' and reconcile's; this
module only reads and writes rows, inside the caller's connection or transaction.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

# The column order of ``rows``/``row`` (tradebook.phases.positions.LedgerPosition's fields).
COLUMNS = "symbol, qty, avg_price, origin, opened_at, confidence, tier, sector"


def rows(con: "duckdb.DuckDBPyConnection") -> list[tuple]:
    """Every position as a tuple in ``COLUMNS`` order."""
    return con.execute(f"SELECT {COLUMNS} FROM positions").fetchall()


def row(con: "duckdb.DuckDBPyConnection", symbol: str) -> tuple | None:
    """The position in ``symbol`` in ``COLUMNS`` order, None when not held."""
    found = con.execute(f"SELECT {COLUMNS} FROM positions WHERE symbol = ?", [symbol]).fetchall()
    return found[0] if found else None


def quantities(con: "duckdb.DuckDBPyConnection") -> list[tuple[str, float, float]]:
    """(symbol, qty, avg_price) per position: no timestamps to convert (5,000 rows in ms)."""
    return con.execute("SELECT symbol, qty, avg_price FROM positions").fetchall()


def origins(con: "duckdb.DuckDBPyConnection") -> dict[str, str]:
    """Origin (STRATEGY | EXTERNAL) by symbol."""
    return dict(con.execute("SELECT symbol, origin FROM positions").fetchall())


def version(con: "duckdb.DuckDBPyConnection") -> tuple:
    """(row count, newest ``updated_at``): changes whenever a position is written (reconcile's check
    that nobody wrote the ledger between its read and its write)."""
    return con.execute("SELECT count(*), max(updated_at) FROM positions").fetchone()


def open_listing(con: "duckdb.DuckDBPyConnection") -> "pd.DataFrame":
    """Non-zero positions by symbol for the report: symbol, qty, avg_price, origin, tier, sector,
    opened_at, confidence."""
    return con.execute("SELECT symbol, qty, avg_price, origin, tier, sector, opened_at, confidence FROM positions "
                       "WHERE qty <> 0 ORDER BY symbol").df()


def insert(con: "duckdb.DuckDBPyConnection", symbol: str, qty: float, avg_price: float, origin: str,
           opened_at: datetime | None, confidence: float | None, tier: str | None, sector: str | None,
           updated_at: datetime) -> None:
    """A new position row."""
    con.execute("INSERT INTO positions (symbol, qty, avg_price, origin, opened_at, confidence, tier, sector, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                [symbol, qty, avg_price, origin, opened_at, confidence, tier, sector, updated_at])


def update(con: "duckdb.DuckDBPyConnection", symbol: str, qty: float, ts: datetime,
           avg_price: float | None = None) -> None:
    """Set the quantity of ``symbol`` (and its average price when given) as of ``ts``."""
    if avg_price is None:
        con.execute("UPDATE positions SET qty = ?, updated_at = ? WHERE symbol = ?", [qty, ts, symbol])
    else:
        con.execute("UPDATE positions SET qty = ?, avg_price = ?, updated_at = ? WHERE symbol = ?",
                    [qty, avg_price, ts, symbol])


def delete(con: "duckdb.DuckDBPyConnection", symbol: str) -> None:
    """``symbol`` is no longer held."""
    con.execute("DELETE FROM positions WHERE symbol = ?", [symbol])


def apply_reconcile_actions(con: "duckdb.DuckDBPyConnection", now: datetime) -> None:
    """Reconcile's ``rec_actions`` (a temporary table of its run) applied set-based: BACKFILL rows become
    EXTERNAL positions, CORRECTION rows set qty and average price, EXTERNAL_CLOSE rows are deleted."""
    con.execute("INSERT INTO positions (symbol, qty, avg_price, origin, opened_at, confidence, tier, sector, "
                "updated_at) SELECT symbol, qty, price, 'EXTERNAL', NULL, NULL, tier, sector, ? "
                "FROM rec_actions WHERE kind = 'BACKFILL'", [now])
    con.execute("UPDATE positions SET qty = a.qty, avg_price = a.price, updated_at = ? FROM rec_actions a "
                "WHERE a.kind = 'CORRECTION' AND positions.symbol = a.symbol", [now])
    con.execute("DELETE FROM positions WHERE symbol IN "
                "(SELECT symbol FROM rec_actions WHERE kind = 'EXTERNAL_CLOSE')")
