"""The crash-safe order path of one intent (EXE-1, EXE-5, EXE-6, EXIT-2), used by execute and monitor.

    look the client_order_id up at the broker (found → adopt, never resend)
    before_gate → gate.evaluate → after_gate_evaluated
    one transaction: verdicts + order row 'pending_submit' + intent SUBMITTED
    after_submitted_recorded → broker.submit → after_broker_submit
    one transaction: the broker's answer (status, fills, intent state) → after_order_recorded
    (when fills were recorded) → after_fill_recorded

client_order_id = f(intent id, attempt). A transient error or an unknown outcome is
answered by a look-up; only when the broker has never seen the id is it sent once
more, with the *same* id (a duplicate would be refused and then adopted). What stays
unknown is left SUBMITTED for the next run, which looks it up again first.

Exits and our own working orders (VEN-2, cancel_first.py): an immediate exit first
cancels the symbol's working orders and waits until they are final; an exit refused
as "insufficient qty available" or "potential wash trade" does the same and is sent
once more (new attempt). Unconfirmed in time, it goes back to PLANNED, never FAILED.

This module is the flow and its fallbacks (EXE-5 whole shares, VEN-2 cancel first, EXE-4
circuit → REDUCE_ONLY); what each step writes is ``order_record``, the order an intent
proposes is ``order_proposal``, the send with its look-up is ``order_submit``.
"""
from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from tradebook.ledger import orders as order_store
from tradebook.phases import intents as it
from tradebook.phases import order_record as rec
from tradebook.phases.order_proposal import propose
from tradebook.phases.order_record import Outcome
from tradebook.phases.order_submit import circuit_open, submit_with_lookup
from tradebook.broker.base import needs_cancel_first
from tradebook.errors import BrokerRejected, BrokerUnavailable, FractionalNotSupported

if TYPE_CHECKING:
    from tradebook.broker.base import OrderRequest, Quote
    from tradebook.context import Context
    from tradebook.safety.gate import GateRun, ProposedOrder


def execute_one(ctx: "Context", run: "GateRun", intent: it.Intent, quotes: dict[str, "Quote"],
                available: dict[str, float], now: datetime) -> Outcome:
    """Take one due intent (PLANNED, or SUBMITTED with an unanswered order) through the order path."""
    attempt = intent.attempt if intent.state == it.SUBMITTED else intent.attempt + 1
    cid = it.client_order_id(intent.intent_id, attempt)
    found = ctx.broker.get_order(cid)  # EXE-1: look up before any (re)send
    if found is not None:
        return rec.adopt(ctx, intent, cid, attempt, found, now)
    if intent.kind == "EXIT" and intent.urgency == "immediate":
        if not _clear_way(ctx, run, intent, available, now, keep=cid):
            return rec.back_to_planned(ctx, intent, None, "cancel first: the symbol's working orders are not "
                                                           "confirmed final yet; the next run tries again", now)
    proposed = propose(intent, quotes.get(intent.symbol), available)
    if proposed is None:
        with ctx.ledger.transaction() as con:
            rec.unsend(con, intent, now)
            it.transition(con, intent.intent_id, it.CANCELLED, reason="nothing held to sell", now=now,
                          run_id=ctx.run_id)
        return rec.outcome(intent, it.CANCELLED, "nothing held to sell")
    return _gate_and_send(ctx, run, intent, proposed, attempt, now)


def _gate_and_send(ctx: "Context", run: "GateRun", intent: it.Intent, proposed: "ProposedOrder", attempt: int,
                   now: datetime, *, retry: bool = False, cleared: bool = False) -> Outcome:
    from tradebook.safety import gate
    from tradebook.broker.base import OrderRequest, to_qty

    it.crash_point("before_gate")
    _reduce_only_if_circuit_open(ctx, run, now)
    result = run.check(proposed, accept=False)
    it.crash_point("after_gate_evaluated")
    if not result.passed:
        return rec.record_rejection(ctx, intent, result, now)
    cid = it.client_order_id(intent.intent_id, attempt)
    request = OrderRequest(proposed.symbol, proposed.side, to_qty(proposed.qty), cid, proposed.order_type,
                           None if proposed.limit_price is None else Decimal(str(proposed.limit_price)), "day")
    with ctx.ledger.transaction() as con:
        gate.record(con, intent.intent_id, ctx.run_id, now, result)
        rec.insert_order_row(con, request, intent, attempt, now)
        it.transition(con, intent.intent_id, it.SUBMITTED, attempt=attempt, now=now, run_id=ctx.run_id,
                      reason=f"gate passed ({result.reason}); sending {cid}" + (" (whole-share retry)" if retry else ""))
    it.crash_point("after_submitted_recorded")
    return _send(ctx, run, intent, proposed, request, attempt, now, retry, cleared)


def _reduce_only_if_circuit_open(ctx: "Context", run: "GateRun", now: datetime) -> None:
    """EXE-4: the adapter reports an open API circuit; here it becomes REDUCE_ONLY (recorded, CTL-3)
    and GATE-1 decides what may still leave (exits do, entries are rejected with a verdict)."""
    from tradebook.safety import controls
    from tradebook.safety.state import TradingState

    if not circuit_open(ctx) or run.ctx.control_state != TradingState.RUNNING:
        return
    breaker = getattr(ctx.broker, "breaker", None)
    reason = getattr(breaker, "reason", "") or "API circuit breaker open"
    controls.reduce_only(ctx.ledger, reason, source="api_breaker", now=now)
    run.ctx = replace(run.ctx, control_state=TradingState.REDUCE_ONLY)


def _send(ctx: "Context", run: "GateRun", intent: it.Intent, proposed: "ProposedOrder", request: "OrderRequest",
          attempt: int, now: datetime, retry: bool, cleared: bool = False) -> Outcome:
    cid = request.client_order_id
    try:
        order = submit_with_lookup(ctx, request)
    except FractionalNotSupported as exc:
        rec.mark_order(ctx, intent, cid, "rejected", f"{exc.code}: {exc}", now, to=it.FAILED if retry else None)
        whole = float(math.floor(proposed.qty))
        if retry or whole <= 0:
            return rec.fail(ctx, intent, f"{exc.code}: fractional refused; whole-share qty {whole:g}", now, retry)
        return _gate_and_send(ctx, run, rec.reload(ctx, intent), replace(proposed, qty=whole), attempt + 1, now,
                              retry=True)  # EXE-5 fallback, logged by the transition reason
    except BrokerRejected as exc:
        if intent.kind == "EXIT" and needs_cancel_first(exc):
            return _cancel_first_retry(ctx, run, intent, proposed, cid, attempt, exc, now, retry, cleared)
        rec.mark_order(ctx, intent, cid, "rejected", f"{exc.code}: {exc}", now, to=it.FAILED)
        return rec.outcome(intent, it.FAILED, f"broker rejected: {exc.code}", cid)
    except BrokerUnavailable as exc:
        rec.mark_order(ctx, intent, cid, "unknown", f"outcome unknown ({type(exc).__name__}); looked up, not found: "
                                                     "the next run looks again before any resend", now)
        run.accept(proposed)  # it may exist: count it against limits in this run
        _reduce_only_if_circuit_open(ctx, run, now)  # EXE-4: this failure may have opened the circuit
        return rec.outcome(intent, it.SUBMITTED, f"outcome unknown: {exc}", cid)
    it.crash_point("after_broker_submit")
    run.accept(proposed)
    outcome = rec.record_answer(ctx, intent, cid, order, now)
    _reduce_only_if_circuit_open(ctx, run, now)  # EXE-4: the circuit may have opened on the way (then resent)
    return outcome


def _cancel_first_retry(ctx: "Context", run: "GateRun", intent: it.Intent, proposed: "ProposedOrder", cid: str,
                        attempt: int, exc: BrokerRejected, now: datetime, retry: bool, cleared: bool) -> Outcome:
    """VEN-2: our own working order is in the way: cancel it, wait for the broker, send once more
    (new attempt); refused again or not confirmed in time -> PLANNED for the next run, never FAILED."""
    reason = f"{exc.code}: {exc}"
    available: dict[str, float] = {}
    if cleared or not _clear_way(ctx, run, intent, available, now, keep=cid):
        return rec.back_to_planned(ctx, intent, cid, f"cancel first, then retry ({reason})", now)
    rec.mark_order(ctx, intent, cid, "rejected", reason, now)   # a crash here: sync puts it back to PLANNED
    fresh = propose(intent, None, available, qty=proposed.qty)
    if fresh is None:
        rec.fail(ctx, intent, "nothing held to sell after cancelling the symbol's orders", now, False, it.CANCELLED)
        return rec.outcome(intent, it.CANCELLED, "nothing held to sell", cid)
    return _gate_and_send(ctx, run, rec.reload(ctx, intent), replace(proposed, qty=fresh.qty), attempt + 1, now,
                          retry=retry, cleared=True)


def _clear_way(ctx: "Context", run: "GateRun", intent: it.Intent, available: dict[str, float], now: datetime, *,
               keep: str) -> bool:
    """Cancel the symbol's other working orders, wait until final, then take what is really held
    now as what can be sold (the gate's view counted those orders as if filled) (VEN-2)."""
    from tradebook.phases.cancel_first import clear_symbol
    from tradebook.safety.gate import ProposedOrder

    keep_ids = _siblings(ctx, intent) | {keep}
    if not clear_symbol(ctx, intent.symbol, now, keep=keep_ids, why=f"exit {intent.intent_id}"):
        return False
    try:
        held = {p.symbol: p for p in ctx.broker.positions()}.get(intent.symbol)
    except BrokerUnavailable:
        return False
    qty = held.qty if held else 0.0
    available[intent.symbol] = qty
    delta = qty - run.view.held_qty(intent.symbol)
    if abs(delta) > 1e-9:
        buying_power = run.view.buying_power
        run.view.apply(ProposedOrder(f"held-{intent.symbol}", intent.symbol, "buy" if delta > 0 else "sell",
                                     abs(delta), held.market_price if held else (intent.decision_price or 0.0)))
        run.view.buying_power = buying_power   # a correction of the view, not an order
    return True


def _siblings(ctx: "Context", intent: it.Intent) -> set[str]:
    """Client ids of the other children of the same split exit (EXIT-6): never cancelled by a sibling."""
    from tradebook.phases.exit_split import parent_of

    parent = parent_of(intent.intent_id)
    if parent == intent.intent_id:
        return set()
    with ctx.ledger.connect() as con:
        rows = order_store.ids_on_symbol_with_prefix(con, intent.symbol, parent)
    return {cid for cid, iid in rows if parent_of(iid) == parent}

