"""What the order path writes to the ledger (EXE-1, EXE-6, EXIT-7): each step one transaction.

The gate's refusal (verdicts, intent state), the broker's answer (order status, fills,
intent state, POS-3 cooldown), an order found at the broker and adopted (never resent),
an intent put back to PLANNED or failed, and the ``Outcome`` each step reports. The flow
that decides which of these happens is ``order_path``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from tradebook.ledger import cooldowns as cooldown_store
from tradebook.ledger import events
from tradebook.ledger import orders as order_store
from tradebook.phases import intents as it

if TYPE_CHECKING:
    from tradebook.broker.base import Order, OrderRequest
    from tradebook.context import Context
    from tradebook.safety.gate import GateResult


@dataclass
class Outcome:
    """Where one intent ended up after this pass through the order path, and why."""

    intent_id: str
    symbol: str
    kind: str
    side: str
    qty: float
    state: str
    reason: str
    client_order_id: str | None = None


def record_rejection(ctx: "Context", intent: it.Intent, result: "GateResult", now: datetime) -> Outcome:
    """Record a gate refusal; a temporary one (EXIT-7, gate_rules.REASON_CODES) leaves the intent PLANNED."""
    from tradebook.safety import gate
    from tradebook.safety.rules import refusal_state

    codes = [v.code for v in result.verdicts if v.rejected]
    to = refusal_state(codes, intent.kind)
    reason = "gate: " + ", ".join(f"{v.rule} {v.code}" for v in result.verdicts if v.rejected)
    with ctx.ledger.transaction() as con:
        gate.record(con, intent.intent_id, ctx.run_id, now, result)
        unsend(con, intent, now)
        if to != it.PLANNED or intent.state != it.PLANNED:
            it.transition(con, intent.intent_id, to, reason=reason, now=now, run_id=ctx.run_id)
        if to == it.PLANNED:
            reason += "; temporary refusal: stays PLANNED for the next run or window (EXIT-7)"
            events.record(con, "INTENT_DEFERRED", run_id=ctx.run_id, symbol=intent.symbol, qty=intent.qty,
                          reason=reason, ts=now, data={"intent_id": intent.intent_id, "codes": codes,
                                                      "kind": intent.kind})
    it.crash_point("after_gate_recorded")
    return outcome(intent, to, reason)


def unsend(con, intent: it.Intent, now: datetime) -> None:
    """A resumed intent stopped before sending: its pending row never reached the broker (looked up)."""
    if intent.state == it.SUBMITTED:
        order_store.mark_not_sent(con, intent.intent_id, intent.attempt, now)


def insert_order_row(con, request: "OrderRequest", intent: it.Intent, attempt: int, now: datetime) -> None:
    """The order row, ``pending_submit``, written before the request leaves (EXE-1)."""
    order_store.insert_pending(con, request.client_order_id, intent.intent_id, attempt, request.symbol, request.side,
                               float(request.qty), request.order_type,
                               None if request.limit_price is None else float(request.limit_price),
                               request.time_in_force, now)


def record_answer(ctx: "Context", intent: it.Intent, cid: str, order: "Order", now: datetime) -> Outcome:
    """Record the broker's answer for our order (status, fills, intent transition) in one transaction."""
    from tradebook.phases.order_sync import apply_order_update, open_order_rows, order_update

    with ctx.ledger.transaction() as con:
        rows = open_order_rows(con, [cid])
        update = order_update(rows[0], order, window_over=False, now=now) if rows else None
        if update is not None:
            apply_order_update(con, update, ctx, now)
        # POS-3 cooldown from the moment the broker has the order (not when recorded: a resumed send
        # of an order that never reached the broker must not be blocked by its own cooldown).
        cooldown_store.touch(con, intent.symbol, now)
        state = it.load(con, intent.intent_id).state
    it.crash_point("after_order_recorded")
    if update is not None and update.fill_qty > 0:
        it.crash_point("after_fill_recorded")
    return outcome(intent, state, f"broker {order.status}, filled {order.filled_qty:g}", cid)


def adopt(ctx: "Context", intent: it.Intent, cid: str, attempt: int, order: "Order", now: datetime) -> Outcome:
    """The broker already has this client_order_id (a previous run sent it): record, never resend."""
    from tradebook.broker.base import OrderRequest, to_qty

    with ctx.ledger.connect() as con:
        known = order_store.exists(con, cid)
    if not known:  # the ledger lost the row (e.g. restored from a backup): rebuild it from the broker
        request = OrderRequest(order.symbol, order.side, to_qty(order.qty), cid, order.order_type,
                               None if order.limit_price is None else Decimal(str(order.limit_price)), "day")
        with ctx.ledger.transaction() as con:
            insert_order_row(con, request, intent, attempt, now)
            it.transition(con, intent.intent_id, it.SUBMITTED, attempt=attempt, now=now, run_id=ctx.run_id,
                          reason=f"adopted {cid}: found at the broker, not in the ledger")
    return record_answer(ctx, reload(ctx, intent), cid, order, now)


def back_to_planned(ctx: "Context", intent: it.Intent, cid: str | None, reason: str, now: datetime) -> Outcome:
    """Not sent now (nothing at the broker): the intent waits, PLANNED, for the next run or tick."""
    with ctx.ledger.transaction() as con:
        if cid is not None:
            set_order(con, ctx, intent, cid, "rejected", reason, now)
        unsend(con, intent, now)
        if it.load(con, intent.intent_id).state == it.SUBMITTED:
            it.transition(con, intent.intent_id, it.PLANNED, reason=reason, now=now, run_id=ctx.run_id)
    return outcome(intent, it.PLANNED, reason, cid)


def mark_order(ctx: "Context", intent: it.Intent, cid: str, status: str, reason: str, now: datetime,
               to: str | None = None) -> None:
    """Set our order's status (an event with it) and, when ``to`` is given, move the intent there."""
    with ctx.ledger.transaction() as con:
        set_order(con, ctx, intent, cid, status, reason, now)
        if to:
            it.transition(con, intent.intent_id, to, reason=reason, now=now, run_id=ctx.run_id)


def set_order(con, ctx: "Context", intent: it.Intent, cid: str, status: str, reason: str, now: datetime) -> None:
    """In the caller's transaction: the order's status and an ``ORDER_<STATUS>`` event."""
    order_store.set_status(con, cid, status, reason, now)
    events.record(con, f"ORDER_{status.upper()}", run_id=ctx.run_id, symbol=intent.symbol, qty=intent.qty,
                  reason=reason, ts=now, data={"client_order_id": cid, "intent_id": intent.intent_id})


def fail(ctx: "Context", intent: it.Intent, reason: str, now: datetime, already: bool,
         to: str = it.FAILED) -> Outcome:
    """The intent moved to ``to`` (FAILED unless told); ``already``: the caller has moved it."""
    if not already:
        with ctx.ledger.transaction() as con:
            it.transition(con, intent.intent_id, to, reason=reason, now=now, run_id=ctx.run_id)
    return outcome(intent, to, reason)


def reload(ctx: "Context", intent: it.Intent) -> it.Intent:
    """The intent as the ledger has it now (the given one if it is gone)."""
    return _reload_id(ctx, intent.intent_id) or intent


def _reload_id(ctx: "Context", iid: str) -> it.Intent:
    with ctx.ledger.connect() as con:
        return it.load(con, iid)


def outcome(intent: it.Intent, state: str, reason: str, cid: str | None = None) -> Outcome:
    """The intent's ``Outcome`` in ``state``."""
    return Outcome(intent.intent_id, intent.symbol, intent.kind, intent.side, intent.qty, state, reason, cid)
