"""The ``cooldowns`` table: every statement on it (one owner per table).

One row per symbol: when tradebook last had an order for it at the broker (POS-3 per-ticker
cooldown, GATE-13). Written inside the caller's transaction.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb


def touch(con: "duckdb.DuckDBPyConnection", symbol: str, ts: datetime) -> None:
    """``symbol`` had an order (or a fill) at ``ts``: its cooldown starts again."""
    con.execute("INSERT OR REPLACE INTO cooldowns (symbol, last_order_at) VALUES (?, ?)", [symbol, ts])


def last_orders(con: "duckdb.DuckDBPyConnection") -> dict[str, datetime]:
    """When each symbol last had an order."""
    return dict(con.execute("SELECT symbol, last_order_at FROM cooldowns").fetchall())
