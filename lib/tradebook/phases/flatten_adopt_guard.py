"""Two cases where adopting a journaled closing order must not simply book it (CTL-5, REC-3, REC-5).

1. The ledger already has the id, but as final and unfilled (a close the broker refused earlier that day,
   FAILED): an offline flatten that could not read the ledger sent the same id again and the broker
   filled it. The broker is the truth: the row gets the broker's answer (fill at its real price, FILL
   trade with realized P&L, position) and the intent the state that answer implies, with an event
   saying why a final record changed.
2. A full reconcile already booked the sale as an EXTERNAL_CLOSE (it ran between the close and the
   journal naming it): the order is recorded as ours (intent, verdict, row with the broker's answer),
   but the sale is not booked a second time. Chosen over rewriting the EXTERNAL_CLOSE into a FILL:
   trades are append-only history and the position (its average price) is already gone, so a
   converted row would carry a made-up P&L; the event names the order that made the external close.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tradebook.ledger import events
from tradebook.ledger import intents as intent_store
from tradebook.ledger import orders as order_store
from tradebook.ledger import positions as position_store
from tradebook.ledger import trades as trade_store
from tradebook.phases.positions import EPS

if TYPE_CHECKING:
    import duckdb

    from tradebook.broker.base import Order
    from tradebook.context import Context
    from tradebook.ledger.orders import OrderRecord

UNFILLED_FINAL = frozenset({"rejected", "not_sent", "not_found", "canceled", "expired"})


def is_stale_refusal(row: "OrderRecord", truth: "Order") -> bool:
    """The ledger's row is final and unfilled while the broker now knows the id with news (case 1)."""
    return (row.status in UNFILLED_FINAL and row.filled_qty <= EPS
            and (truth.status != row.status or truth.filled_qty > EPS))


def already_booked(con: "duckdb.DuckDBPyConnection", truth: "Order", since: datetime) -> bool:
    """Case 2: the symbol is flat in the ledger and reconcile booked an EXTERNAL_CLOSE of this order's
    side and filled quantity at or after ``since`` (the flatten's start)."""
    if truth.filled_qty <= EPS or truth.status != "filled":
        return False
    held = {sym: qty for sym, qty, _ in position_store.quantities(con)}
    if abs(held.get(truth.symbol, 0.0)) > EPS:
        return False
    return any(side == truth.side and abs(qty - truth.filled_qty) <= EPS
               for _, side, qty in trade_store.external_closes_since(con, truth.symbol, since - timedelta(minutes=1)))


def correct_refusal(con: "duckdb.DuckDBPyConnection", ctx: "Context", row: "OrderRecord", truth: "Order",
                    now: datetime, source: str, *, book: bool = True) -> None:
    """Case 1: the broker's answer through reconcile's order-update path, then the intent set to match.
    ``book`` False (case 2 as well: reconcile already booked the sale): the answer only, no second sale."""
    from tradebook.phases.order_sync import OrderRow, apply_order_update, intent_state_for, order_update

    order_row = OrderRow(*order_store.with_intent(con, (), [row.client_order_id])[0])
    update = order_update(order_row, truth, window_over=False, now=now)
    if update is not None and book:
        apply_order_update(con, update, ctx, now)
    elif update is not None:
        order_store.record_broker_view(con, row.client_order_id, truth.status, truth.broker_id, truth.filled_qty,
                                       truth.filled_avg_price, truth.reject_reason, now)
    state = intent_state_for(truth.status, truth.filled_qty, "immediate") or "SUBMITTED"
    before = intent_store.load(con, row.intent_id)
    intent_store.set_state(con, row.intent_id, state, row.attempt, now)   # a final record corrected: the event says why
    events.record(con, "FLATTEN_ORDER_CORRECTED", run_id=ctx.run_id, symbol=truth.symbol, qty=truth.filled_qty,
                  price=truth.filled_avg_price, ts=now,
                  reason=(f"closing order {row.client_order_id} was {row.status} in the ledger, but the broker has it "
                          f"{truth.status} (sent again under the same id by {source}); the broker wins"
                          + ("" if book else "; its sale was already booked as an EXTERNAL_CLOSE, not booked twice")),
                  data={"client_order_id": row.client_order_id, "from": row.status, "to": truth.status,
                        "intent_from": before.state if before else None, "intent_to": state})


def record_booked(con: "duckdb.DuckDBPyConnection", ctx: "Context", payload: dict, truth: "Order",
                  now: datetime, source: str) -> None:
    """Case 2: the order recorded as ours with the broker's answer; no fill, trade or position change."""
    from tradebook.phases.flatten import _record_submit
    from tradebook.phases.flatten_adopt import _attempt, closing_position, sent_at
    from tradebook.phases.intents import transition
    from tradebook.phases.order_sync import intent_state_for

    cid = truth.client_order_id
    reason = f"{payload.get('reason') or 'flatten'} (recorded later, from {source})"
    _record_submit(con, ctx, cid, _attempt(cid), closing_position(payload, truth), reason, sent_at(payload, truth, now))
    order_store.record_broker_view(con, cid, truth.status, truth.broker_id, truth.filled_qty, truth.filled_avg_price,
                                   truth.reject_reason, now)
    transition(con, cid, intent_state_for(truth.status, truth.filled_qty, "immediate") or "SUBMITTED",
               reason=f"order {cid} {truth.status} (its sale already booked as an EXTERNAL_CLOSE)", now=now,
               run_id=ctx.run_id)
    events.record(con, "FLATTEN_ALREADY_BOOKED", run_id=ctx.run_id, symbol=truth.symbol, qty=truth.filled_qty,
                  price=truth.filled_avg_price, ts=now,
                  reason=(f"closing order {cid} from {source}: its sale was already booked by reconcile as an "
                          "EXTERNAL_CLOSE; recorded as ours, not booked twice"),
                  data={"client_order_id": cid})
