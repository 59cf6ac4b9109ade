"""The ``orders`` table: every SQL statement that touches it (one owner per table).

An order row is one order tradebook sent (or is about to send) for an intent's attempt,
keyed by its client_order_id, with what the broker last said about it (status, filled
quantity and price). Rows are written inside the caller's transaction; what a status means
is decided by tradebook.phases.order_sync.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Iterable

from tradebook.ledger.sql import marks

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class OrderRecord:
    """One row of ``orders`` as stored."""

    client_order_id: str
    intent_id: str
    attempt: int
    broker_id: str | None
    symbol: str
    side: str
    qty: float
    order_type: str
    limit_price: float | None
    time_in_force: str
    status: str
    filled_qty: float
    filled_avg_price: float | None
    reject_reason: str | None
    submitted_at: datetime | None
    updated_at: datetime


COLUMNS = tuple(f.name for f in fields(OrderRecord))
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM orders"
# The columns of an order joined with its intent: tradebook.phases.order_sync.OrderRow, in order.
_WITH_INTENT = (
    "SELECT o.client_order_id, o.intent_id, o.attempt, o.broker_id, o.symbol, o.side, o.qty, o.status, "
    "o.filled_qty, o.filled_avg_price, o.submitted_at, i.urgency, i.decision_price, i.confidence, i.state, "
    "i.attempt FROM orders o JOIN intents i USING (intent_id)")


# --- writes -----------------------------------------------------------------------------------
def insert_pending(con: "duckdb.DuckDBPyConnection", cid: str, intent_id: str, attempt: int, symbol: str,
                   side: str, qty: float, order_type: str, limit_price: float | None, time_in_force: str,
                   now: datetime) -> None:
    """A fresh ``pending_submit`` row written before the broker sees the order (replacing any
    earlier row of the same client_order_id: nothing filled, no broker id yet)."""
    con.execute("INSERT OR REPLACE INTO orders (client_order_id, intent_id, attempt, broker_id, symbol, side, qty, "
                "order_type, limit_price, time_in_force, status, filled_qty, filled_avg_price, reject_reason, "
                "submitted_at, updated_at) VALUES (?,?,?,NULL,?,?,?,?,?,?,'pending_submit',0,NULL,NULL,?,?)",
                [cid, intent_id, attempt, symbol, side, qty, order_type, limit_price, time_in_force, now, now])


def insert_or_reset_pending(con: "duckdb.DuckDBPyConnection", cid: str, intent_id: str, attempt: int, symbol: str,
                            side: str, qty: float, order_type: str, time_in_force: str, now: datetime) -> None:
    """A ``pending_submit`` row for ``cid``; an existing row only gets its status set back to
    ``pending_submit`` (everything else it recorded is kept)."""
    con.execute(
        "INSERT INTO orders (client_order_id, intent_id, attempt, symbol, side, qty, order_type, time_in_force, "
        "status, submitted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending_submit', ?, ?) "
        "ON CONFLICT (client_order_id) DO UPDATE SET status = 'pending_submit', updated_at = excluded.updated_at",
        [cid, intent_id, attempt, symbol, side, qty, order_type, time_in_force, now, now])


def set_status(con: "duckdb.DuckDBPyConnection", cid: str, status: str, reason: str | None, now: datetime) -> None:
    """Set an order's status and reject reason (a refusal, a cancel, an unknown outcome)."""
    con.execute("UPDATE orders SET status = ?, reject_reason = ?, updated_at = ? WHERE client_order_id = ?",
                [status, reason, now, cid])


def mark_not_sent(con: "duckdb.DuckDBPyConnection", intent_id: str, attempt: int, now: datetime) -> None:
    """The attempt's row still ``pending_submit`` or ``unknown`` never reached the broker: ``not_sent``."""
    con.execute("UPDATE orders SET status = 'not_sent', updated_at = ? WHERE intent_id = ? AND attempt = ? "
                "AND status IN ('pending_submit', 'unknown')", [now, intent_id, attempt])


def record_broker_view(con: "duckdb.DuckDBPyConnection", cid: str, status: str, broker_id: str | None,
                       filled_qty: float, filled_avg_price: float | None, reject_reason: str | None,
                       now: datetime) -> None:
    """What the broker says about the order now; a missing broker id or reject reason keeps the stored one."""
    con.execute("UPDATE orders SET status = ?, broker_id = coalesce(?, broker_id), filled_qty = ?, "
                "filled_avg_price = ?, reject_reason = coalesce(?, reject_reason), updated_at = ? "
                "WHERE client_order_id = ?",
                [status, broker_id, filled_qty, filled_avg_price, reject_reason, now, cid])


# --- reads ------------------------------------------------------------------------------------
def exists(con: "duckdb.DuckDBPyConnection", cid: str) -> bool:
    """True when the ledger has a row for ``cid``."""
    return bool(con.execute("SELECT count(*) FROM orders WHERE client_order_id = ?", [cid]).fetchall()[0][0])


def load(con: "duckdb.DuckDBPyConnection", cid: str) -> OrderRecord | None:
    """One order row by client_order_id (None: no such row)."""
    rows = con.execute(f"{_SELECT} WHERE client_order_id = ?", [cid]).fetchall()
    return OrderRecord(*rows[0]) if rows else None


def every(con: "duckdb.DuckDBPyConnection") -> list[OrderRecord]:
    """Every order row, in the order they were sent (then by client_order_id)."""
    return [OrderRecord(*r) for r in con.execute(
        f"{_SELECT} ORDER BY submitted_at NULLS LAST, client_order_id").fetchall()]


def count(con: "duckdb.DuckDBPyConnection") -> int:
    """How many order rows the ledger holds."""
    return con.execute("SELECT count(*) FROM orders").fetchone()[0]


def fingerprint(con: "duckdb.DuckDBPyConnection") -> tuple[int, datetime | None]:
    """(rows, last change): changes whenever any order row is written (reconcile's did-the-ledger-move check)."""
    return con.execute("SELECT count(*), max(updated_at) FROM orders").fetchone()


def with_intent(con: "duckdb.DuckDBPyConnection", exclude_statuses: Iterable[str],
                cids: Iterable[str] | None = None) -> list[tuple]:
    """Orders whose status is not in ``exclude_statuses`` (optionally only ``cids``), joined with their
    intent, oldest first: the columns of tradebook.phases.order_sync.OrderRow."""
    excluded = sorted(exclude_statuses)
    sql, params = f"{_WITH_INTENT} WHERE o.status NOT IN ({marks(excluded)})", list(excluded)
    if cids is not None:
        cids = list(cids)
        if not cids:
            return []
        sql += f" AND o.client_order_id IN ({marks(cids)})"
        params += cids
    return con.execute(sql + " ORDER BY o.submitted_at, o.client_order_id", params).fetchall()


def ids_on_symbol_with_prefix(con: "duckdb.DuckDBPyConnection", symbol: str, prefix: str) -> list[tuple[str, str]]:
    """(client_order_id, intent_id) of the orders on ``symbol`` whose intent id starts with ``prefix``."""
    return con.execute("SELECT client_order_id, intent_id FROM orders WHERE symbol = ? "
                       "AND starts_with(intent_id, ?)", [symbol, prefix]).fetchall()


def sent_since_by_symbol(con: "duckdb.DuckDBPyConnection", since: datetime,
                         skip_intents_matching: str) -> dict[str, int]:
    """Symbol -> orders submitted at or after ``since`` that may have reached the broker (not
    ``not_found`` / ``not_sent``), leaving out intents whose id matches the regex ``skip_intents_matching``."""
    return dict(con.execute(
        "SELECT symbol, count(*) FROM orders WHERE submitted_at >= ? AND status NOT IN ('not_found', "
        "'not_sent') AND NOT regexp_matches(intent_id, ?) GROUP BY symbol",
        [since, skip_intents_matching]).fetchall())


def working_immediate_exit_symbols(con: "duckdb.DuckDBPyConnection", skip_statuses: Iterable[str],
                                   sent_before: datetime, skip_intent_prefix: str) -> list[str]:
    """Symbols with a SUBMITTED immediate EXIT intent whose current order (same attempt) was sent
    before ``sent_before`` and has none of ``skip_statuses``; intents starting with
    ``skip_intent_prefix`` left out. Sorted."""
    skip = sorted(skip_statuses)
    return [r[0] for r in con.execute(
        "SELECT DISTINCT o.symbol FROM orders o JOIN intents i USING (intent_id) WHERE i.state = 'SUBMITTED' "
        "AND i.urgency = 'immediate' AND i.kind = 'EXIT' AND NOT starts_with(i.intent_id, ?) "
        f"AND o.attempt = i.attempt AND o.status NOT IN ({marks(skip)}) AND o.submitted_at < ? ORDER BY 1",
        [skip_intent_prefix, *skip, sent_before]).fetchall()]


def audit_rows(con: "duckdb.DuckDBPyConnection", cids: Iterable[str]) -> list[tuple]:
    """Per order of ``cids``: (client_order_id, symbol, side, qty, order_type, limit_price, status,
    filled_qty, filled_avg_price, the intent's decision_price), in the order they were sent."""
    cids = sorted(set(cids))
    if not cids:
        return []
    sql = (f"SELECT o.client_order_id, o.symbol, o.side, o.qty, o.order_type, o.limit_price, o.status, "
           f"o.filled_qty, o.filled_avg_price, i.decision_price "
           f"FROM orders o LEFT JOIN intents i ON i.intent_id = o.intent_id "
           f"WHERE o.client_order_id IN ({marks(cids)}) ORDER BY o.submitted_at NULLS LAST, o.client_order_id")
    return con.execute(sql, cids).fetchall()

