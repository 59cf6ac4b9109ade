"""The ``fills`` table: every SQL statement that touches it (one owner per table).

A row is one execution of one of our own orders (EXE-6): quantity, price, time, and the
decision price with the slippage against it (basis points, positive = worse than decided).
Appended inside the caller's transaction; the report's aggregations read it here.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from tradebook.ledger.sql import marks

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

_HISTORY = ("fill_id", "client_order_id", "intent_id", "symbol", "side", "qty", "price", "ts", "decision_price",
            "slippage_bps")
# A fill recorded without slippage (none was computed then) gets it from its decision price.
_BPS = ("coalesce(slippage_bps, (CASE WHEN side = 'buy' THEN 1 ELSE -1 END) "
        "* (price - decision_price) / nullif(decision_price, 0) * 1e4)")


def insert(con: "duckdb.DuckDBPyConnection", client_order_id: str, intent_id: str, symbol: str, side: str,
           qty: float, price: float, ts: datetime, decision_price: float | None,
           slippage_bps: float | None) -> None:
    """One fill row."""
    con.execute("INSERT INTO fills (client_order_id, intent_id, symbol, side, qty, price, ts, decision_price, "
                "slippage_bps) VALUES (?,?,?,?,?,?,?,?,?)",
                [client_order_id, intent_id, symbol, side, qty, price, ts, decision_price, slippage_bps])


def count(con: "duckdb.DuckDBPyConnection") -> int:
    """How many fills the ledger holds."""
    return con.execute("SELECT count(*) FROM fills").fetchone()[0]


def count_since(con: "duckdb.DuckDBPyConnection", since: datetime) -> int:
    """How many fills happened strictly after ``since``."""
    return con.execute("SELECT count(*) FROM fills WHERE ts > ?", [since]).fetchone()[0]


def last_ts(con: "duckdb.DuckDBPyConnection") -> datetime | None:
    """Time of the newest fill (None: no fill yet)."""
    return con.execute("SELECT max(ts) FROM fills").fetchone()[0]


def history(con: "duckdb.DuckDBPyConnection") -> list[dict[str, Any]]:
    """Every fill, oldest first (by fill_id), as a dict per row."""
    return [dict(zip(_HISTORY, r)) for r in
            con.execute(f"SELECT {', '.join(_HISTORY)} FROM fills ORDER BY fill_id").fetchall()]


def recent(con: "duckdb.DuckDBPyConnection", limit: int) -> "pd.DataFrame":
    """The newest ``limit`` fills, newest first, with slippage and the kind and reason of their intent."""
    return con.execute("""
        SELECT f.ts, f.symbol, f.side, f.qty, f.price, f.decision_price,
               coalesce(f.slippage_bps, CASE WHEN f.decision_price > 0 THEN
                   (CASE WHEN f.side = 'buy' THEN 1 ELSE -1 END) * (f.price - f.decision_price) / f.decision_price * 1e4
               END) AS slippage_bps, i.kind, i.reason
        FROM (SELECT * FROM fills ORDER BY ts DESC, fill_id DESC LIMIT ?) f
        LEFT JOIN intents i USING (intent_id) ORDER BY f.ts DESC, f.fill_id DESC""", [limit]).df()


def slippage(con: "duckdb.DuckDBPyConnection") -> "pd.DataFrame":
    """Per symbol and side: fills, notional, average / median / worst slippage (bps) and its cost in USD."""
    return con.execute(f"""
        WITH s AS (SELECT symbol, side, qty, price, decision_price, {_BPS} AS bps FROM fills)
        SELECT symbol, side, count(*) AS fills, sum(qty * price) AS notional, avg(bps) AS avg_bps,
               median(bps) AS median_bps, max(bps) AS worst_bps,
               sum(bps / 1e4 * qty * decision_price) AS cost_usd
        FROM s GROUP BY ALL ORDER BY symbol, side""").df()


def slippage_histogram(con: "duckdb.DuckDBPyConnection") -> "pd.DataFrame":
    """Fills per 5 bps slippage bucket (bucket = lower edge), fills without a decision price left out."""
    return con.execute(f"""
        SELECT floor(bps / 5) * 5 AS bucket, count(*) AS n FROM (SELECT {_BPS} AS bps FROM fills)
        WHERE bps IS NOT NULL GROUP BY 1 ORDER BY 1""").df()


def slippage_by_order(con: "duckdb.DuckDBPyConnection", cids: list[str]) -> dict[str, float | None]:
    """Quantity-weighted slippage (bps) of the fills of each order in ``cids`` that has fills (None when
    none of its fills has a slippage)."""
    if not cids:
        return {}
    return dict(con.execute(f"SELECT client_order_id, sum(qty * slippage_bps) / nullif(sum(qty), 0) FROM fills "
                            f"WHERE client_order_id IN ({marks(cids)}) GROUP BY client_order_id", cids).fetchall())
