"""Our orders against the broker's truth: the order-row side of reconcile (EXE-6, EXIT-3, EXE-1).

``order_update`` is pure: given the ledger's row for one of our orders and what the
broker says now (or None: never seen), it returns what the ledger must record —
status, the newly filled quantity and its price, and the intent's next state. A row
recorded before sending ('pending_submit') or after an unknown outcome ('unknown')
that the broker has never seen stays as it is while its window is open (execute
resends it with the same client_order_id) and becomes 'not_found' after it (a new
attempt, with a new id, is needed; an immediate intent expires instead, EXIT-8).
Ledger-only statuses: pending_submit, unknown (working from our side), not_found,
not_sent (final).

VEN-1: a row is looked up again until its status is final. Anything the broker may
still change (pending_cancel, done_for_day, held, ... or a status nobody has heard of)
is working; an unknown status is also recorded as an incident.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterable

from tradebook.broker.base import FINAL_STATUSES, is_known_status
from tradebook.ledger import events
from tradebook.errors import BrokerUnavailable
from tradebook.ledger import orders as order_store
from tradebook.phases.positions import EPS

if TYPE_CHECKING:
    import duckdb

    from tradebook.broker.base import Broker, Order
    from tradebook.context import Context

LOCAL_OPEN = frozenset({"pending_submit", "unknown"})   # recorded by us; broker not confirmed yet
LEDGER_FINAL = FINAL_STATUSES | {"not_found", "not_sent"}  # every other row status is polled again


@dataclass(frozen=True)
class OrderRow:
    client_order_id: str
    intent_id: str
    attempt: int
    broker_id: str | None
    symbol: str
    side: str
    qty: float
    status: str
    filled_qty: float
    filled_avg_price: float | None
    submitted_at: datetime | None
    urgency: str
    decision_price: float | None
    confidence: float | None
    intent_state: str
    intent_attempt: int


def open_order_rows(con: "duckdb.DuckDBPyConnection", cids: Iterable[str] | None = None) -> list[OrderRow]:
    """Our orders the ledger still considers working, whatever their status (VEN-1); optionally only ``cids``."""
    return [OrderRow(*r) for r in order_store.with_intent(con, LEDGER_FINAL, cids)]


@dataclass(frozen=True)
class OrderUpdate:
    row: OrderRow
    status: str
    broker_id: str | None
    filled_qty: float
    filled_avg_price: float | None
    fill_qty: float = 0.0          # newly filled since the ledger's last look
    fill_price: float | None = None
    fill_ts: datetime | None = None
    intent_to: str | None = None
    reason: str = ""
    reject_reason: str | None = None


def intent_state_for(status: str, filled_qty: float, urgency: str = "normal") -> str | None:
    """The intent state an order status implies (None: still working)."""
    if status == "filled":
        return "FILLED"
    if status in ("canceled", "expired", "replaced"):
        return "PARTIAL" if filled_qty > EPS else ("EXPIRED" if status == "expired" else "CANCELLED")
    if status == "rejected":
        return "FAILED"
    if status == "not_found":   # EXIT-8: an immediate intent never replays after its session
        return "EXPIRED" if urgency == "immediate" else "PLANNED"
    return None


def order_update(row: OrderRow, truth: "Order | None", *, window_over: bool, now: datetime) -> OrderUpdate | None:
    """Pure: what the ledger must record for one of our orders given the broker's view (None: nothing)."""
    if truth is None:
        if row.status in LOCAL_OPEN and window_over:
            return _with_intent(OrderUpdate(row, "not_found", None, row.filled_qty, row.filled_avg_price,
                                            reason="never reached the broker (absent after its window); "
                                                   "next attempt gets a new client_order_id"))
        return None  # still inside the window: execute resumes it with the same client id
    delta = truth.filled_qty - row.filled_qty
    changed = (truth.status != row.status or truth.broker_id != row.broker_id or delta > EPS)
    if not changed:
        return None
    fill_price = None
    if delta > EPS:
        total = (truth.filled_avg_price or 0.0) * truth.filled_qty
        fill_price = (total - (row.filled_avg_price or 0.0) * row.filled_qty) / delta
    reason = ("adopted: found at the broker by client_order_id" if row.status in LOCAL_OPEN
              else f"broker status {row.status} -> {truth.status}")
    return _with_intent(OrderUpdate(row, truth.status, truth.broker_id, truth.filled_qty, truth.filled_avg_price,
                                    max(delta, 0.0), fill_price, truth.filled_at or truth.updated_at or now, None, reason,
                                    truth.reject_reason))


def _with_intent(u: OrderUpdate) -> OrderUpdate:
    """Attach the intent transition, only for the intent's current attempt while SUBMITTED."""
    to = intent_state_for(u.status, u.filled_qty, u.row.urgency)
    if to is None or u.row.intent_state != "SUBMITTED" or u.row.attempt != u.row.intent_attempt:
        return u
    return OrderUpdate(**{**u.__dict__, "intent_to": to})


def fetch_truth(broker: "Broker", rows: list[OrderRow], open_orders: list["Order"]) -> dict[str, "Order | None"]:
    """The broker's view of each row; rows the broker could not answer for are left out."""
    by_cid = {o.client_order_id: o for o in open_orders}
    out: dict[str, Order | None] = {}
    for row in rows:
        if row.client_order_id in by_cid:
            out[row.client_order_id] = by_cid[row.client_order_id]
            continue
        try:
            out[row.client_order_id] = broker.get_order(row.client_order_id)
        except BrokerUnavailable:
            continue  # an error is not "not found": never conclude absence from a failure
    return out


def window_end(row: OrderRow, ctx: "Context") -> datetime:
    """When a pending order's chance is over: its exit window end, or the close for immediate ones."""
    from tradebook.phases.intents import window_of

    sent = row.submitted_at
    if sent is None:
        return datetime.min.replace(tzinfo=ctx.now().tzinfo)
    from tradebook.sessions import session_date

    day = session_date(sent)
    sessions = ctx.broker.calendar(day, day)
    if not sessions:
        return sent + timedelta(hours=1)
    end = sessions[0].close if row.urgency == "immediate" else window_of(sessions[0], ctx.params)[1]
    return max(end, sent)


def compute_updates(ctx: "Context", rows: list[OrderRow], truth: dict[str, "Order | None"],
                    now: datetime) -> list[OrderUpdate]:
    out = []
    for row in rows:
        if row.client_order_id not in truth:
            continue
        found = truth[row.client_order_id]
        over = found is None and row.status in LOCAL_OPEN and now > window_end(row, ctx)
        u = order_update(row, found, window_over=over, now=now)
        if u is not None:
            out.append(u)
    return out


def apply_order_update(con: "duckdb.DuckDBPyConnection", u: OrderUpdate, ctx: "Context", now: datetime) -> None:
    """Record one order update inside the caller's transaction: row, fill, intent state, event."""
    from tradebook.sessions import session_date
    from tradebook.phases.intents import transition
    from tradebook.phases.positions import FillInfo, apply_fill

    r = u.row
    order_store.record_broker_view(con, r.client_order_id, u.status, u.broker_id, u.filled_qty, u.filled_avg_price,
                                   u.reject_reason, now)
    events.record(con, f"ORDER_{u.status.upper()}", run_id=ctx.run_id, symbol=r.symbol, qty=u.filled_qty,
                  price=u.filled_avg_price, reason=u.reason, ts=now,
                  data={"client_order_id": r.client_order_id, "intent_id": r.intent_id, "from": r.status})
    if u.fill_qty > EPS:
        ts = u.fill_ts or now
        apply_fill(con, FillInfo(r.client_order_id, r.intent_id, r.symbol, r.side, u.fill_qty, u.fill_price or 0.0,
                                 ts, r.decision_price, r.confidence), ctx.params, session_date(ts), ctx.run_id)
    if u.status not in LOCAL_OPEN and not is_known_status(u.status):
        from tradebook.safety.controls import record_incident

        record_incident(con, "ORDER_STATUS_UNKNOWN", f"order {r.client_order_id} ({r.symbol}) has broker status "
                        f"{u.status!r}, which tradebook does not know; treated as working and looked up again "
                        "until final (VEN-1)", now)
    if u.intent_to:
        transition(con, r.intent_id, u.intent_to, reason=f"order {r.client_order_id} {u.status}: {u.reason}",
                   now=now, run_id=ctx.run_id)
