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
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

from tradebook.ledger import cooldowns as cooldown_store
from tradebook.ledger import events
from tradebook.ledger import orders as order_store
from tradebook.phases import intents as it
from tradebook.broker.base import needs_cancel_first
from tradebook.errors import (BrokerRejected, BrokerUnavailable, CircuitOpen, DuplicateClientOrderId,
                              FractionalNotSupported)

if TYPE_CHECKING:
    from tradebook.broker.base import Order, OrderRequest, Quote
    from tradebook.context import Context
    from tradebook.safety.gate import GateResult, GateRun, ProposedOrder


@dataclass
class Outcome:
    intent_id: str
    symbol: str
    kind: str
    side: str
    qty: float
    state: str
    reason: str
    client_order_id: str | None = None


def execute_one(ctx: "Context", run: "GateRun", intent: it.Intent, quotes: dict[str, "Quote"],
                available: dict[str, float], now: datetime) -> Outcome:
    """Take one due intent (PLANNED, or SUBMITTED with an unanswered order) through the order path."""
    attempt = intent.attempt if intent.state == it.SUBMITTED else intent.attempt + 1
    cid = it.client_order_id(intent.intent_id, attempt)
    found = ctx.broker.get_order(cid)  # EXE-1: look up before any (re)send
    if found is not None:
        return _adopt(ctx, intent, cid, attempt, found, now)
    if intent.kind == "EXIT" and intent.urgency == "immediate":
        if not _clear_way(ctx, run, intent, available, now, keep=cid):
            return _back_to_planned(ctx, intent, None, "cancel first: the symbol's working orders are not "
                                                       "confirmed final yet; the next run tries again", now)
    proposed = propose(intent, quotes.get(intent.symbol), available)
    if proposed is None:
        with ctx.ledger.transaction() as con:
            _unsend(con, intent, now)
            it.transition(con, intent.intent_id, it.CANCELLED, reason="nothing held to sell", now=now,
                          run_id=ctx.run_id)
        return _outcome(intent, it.CANCELLED, "nothing held to sell")
    return _gate_and_send(ctx, run, intent, proposed, attempt, now)


def limit_price(side: str, quote_price: float) -> Decimal:
    """Marketable limit at the quote: buys rounded up, sells down, to the tick (EXIT-2)."""
    step = Decimal("0.01") if quote_price >= 1 else Decimal("0.0001")
    return Decimal(str(quote_price)).quantize(step, rounding=ROUND_CEILING if side == "buy" else ROUND_FLOOR)


def propose(intent: it.Intent, quote: "Quote | None", available: dict[str, float],
            qty: float | None = None) -> "ProposedOrder | None":
    """The order for an intent now: limit at bid/ask (market only for immediate); exits capped at what is held."""
    from tradebook.phases.exit_split import part_number
    from tradebook.safety.gate import ProposedOrder

    qty = intent.qty if qty is None else qty
    if intent.side == "sell":
        qty = min(qty, available.get(intent.symbol, 0.0))
        if qty <= 1e-9:
            return None
    market = intent.order_type == "market"
    ref = (quote.ask if intent.side == "buy" else quote.bid) if quote is not None else None
    limit = None if market or ref is None else float(limit_price(intent.side, ref))
    price = limit or ref or intent.decision_price or 0.0
    return ProposedOrder(intent.intent_id, intent.symbol, intent.side, qty, price, kind=intent.kind,  # type: ignore[arg-type]  # str holds a Literal value
                         order_type="market" if market else "limit", limit_price=limit, urgency=intent.urgency,  # type: ignore[arg-type]  # str holds a Literal value
                         confidence=intent.confidence, decision_price=intent.decision_price,
                         decision_time=intent.decision_time, intraday=intent.urgency == "immediate",
                         part=part_number(intent.intent_id) if intent.kind == "EXIT" else 0)


def _gate_and_send(ctx: "Context", run: "GateRun", intent: it.Intent, proposed: "ProposedOrder", attempt: int,
                   now: datetime, *, retry: bool = False, cleared: bool = False) -> Outcome:
    from tradebook.safety import gate
    from tradebook.broker.base import OrderRequest, to_qty

    it.crash_point("before_gate")
    _reduce_only_if_circuit_open(ctx, run, now)
    result = run.check(proposed, accept=False)
    it.crash_point("after_gate_evaluated")
    if not result.passed:
        return _record_rejection(ctx, intent, result, now)
    cid = it.client_order_id(intent.intent_id, attempt)
    request = OrderRequest(proposed.symbol, proposed.side, to_qty(proposed.qty), cid, proposed.order_type,
                           None if proposed.limit_price is None else Decimal(str(proposed.limit_price)), "day")
    with ctx.ledger.transaction() as con:
        gate.record(con, intent.intent_id, ctx.run_id, now, result)
        _insert_order_row(con, request, intent, attempt, now)
        it.transition(con, intent.intent_id, it.SUBMITTED, attempt=attempt, now=now, run_id=ctx.run_id,
                      reason=f"gate passed ({result.reason}); sending {cid}" + (" (whole-share retry)" if retry else ""))
    it.crash_point("after_submitted_recorded")
    return _send(ctx, run, intent, proposed, request, attempt, now, retry, cleared)


def _reduce_only_if_circuit_open(ctx: "Context", run: "GateRun", now: datetime) -> None:
    """EXE-4: the adapter reports an open API circuit; here it becomes REDUCE_ONLY (recorded, CTL-3)
    and GATE-1 decides what may still leave (exits do, entries are rejected with a verdict)."""
    from tradebook.safety import controls
    from tradebook.safety.state import TradingState

    if not _circuit_open(ctx) or run.ctx.control_state != TradingState.RUNNING:
        return
    breaker = getattr(ctx.broker, "breaker", None)
    reason = getattr(breaker, "reason", "") or "API circuit breaker open"
    controls.reduce_only(ctx.ledger, reason, source="api_breaker", now=now)
    run.ctx = replace(run.ctx, control_state=TradingState.REDUCE_ONLY)


def _record_rejection(ctx: "Context", intent: it.Intent, result: "GateResult", now: datetime) -> Outcome:
    """Record a gate refusal; a temporary one (EXIT-7, gate_rules.REASON_CODES) leaves the intent PLANNED."""
    from tradebook.safety import gate
    from tradebook.safety.rules import refusal_state

    codes = [v.code for v in result.verdicts if v.rejected]
    to = refusal_state(codes, intent.kind)
    reason = "gate: " + ", ".join(f"{v.rule} {v.code}" for v in result.verdicts if v.rejected)
    with ctx.ledger.transaction() as con:
        gate.record(con, intent.intent_id, ctx.run_id, now, result)
        _unsend(con, intent, now)
        if to != it.PLANNED or intent.state != it.PLANNED:
            it.transition(con, intent.intent_id, to, reason=reason, now=now, run_id=ctx.run_id)
        if to == it.PLANNED:
            reason += "; temporary refusal: stays PLANNED for the next run or window (EXIT-7)"
            events.record(con, "INTENT_DEFERRED", run_id=ctx.run_id, symbol=intent.symbol, qty=intent.qty,
                          reason=reason, ts=now, data={"intent_id": intent.intent_id, "codes": codes,
                                                      "kind": intent.kind})
    it.crash_point("after_gate_recorded")
    return _outcome(intent, to, reason)


def _unsend(con, intent: it.Intent, now: datetime) -> None:
    """A resumed intent stopped before sending: its pending row never reached the broker (looked up)."""
    if intent.state == it.SUBMITTED:
        order_store.mark_not_sent(con, intent.intent_id, intent.attempt, now)


def _insert_order_row(con, request: "OrderRequest", intent: it.Intent, attempt: int, now: datetime) -> None:
    order_store.insert_pending(con, request.client_order_id, intent.intent_id, attempt, request.symbol, request.side,
                               float(request.qty), request.order_type,
                               None if request.limit_price is None else float(request.limit_price),
                               request.time_in_force, now)


def _send(ctx: "Context", run: "GateRun", intent: it.Intent, proposed: "ProposedOrder", request: "OrderRequest",
          attempt: int, now: datetime, retry: bool, cleared: bool = False) -> Outcome:
    cid = request.client_order_id
    try:
        order = _submit_with_lookup(ctx, request)
    except FractionalNotSupported as exc:
        _mark_order(ctx, intent, cid, "rejected", f"{exc.code}: {exc}", now, to=it.FAILED if retry else None)
        whole = float(math.floor(proposed.qty))
        if retry or whole <= 0:
            return _fail(ctx, intent, f"{exc.code}: fractional refused; whole-share qty {whole:g}", now, retry)
        return _gate_and_send(ctx, run, _reload(ctx, intent), replace(proposed, qty=whole), attempt + 1, now,
                              retry=True)  # EXE-5 fallback, logged by the transition reason
    except BrokerRejected as exc:
        if intent.kind == "EXIT" and needs_cancel_first(exc):
            return _cancel_first_retry(ctx, run, intent, proposed, cid, attempt, exc, now, retry, cleared)
        _mark_order(ctx, intent, cid, "rejected", f"{exc.code}: {exc}", now, to=it.FAILED)
        return _outcome(intent, it.FAILED, f"broker rejected: {exc.code}", cid)
    except BrokerUnavailable as exc:
        _mark_order(ctx, intent, cid, "unknown", f"outcome unknown ({type(exc).__name__}); looked up, not found: "
                                                 "the next run looks again before any resend", now)
        run.accept(proposed)  # it may exist: count it against limits in this run
        _reduce_only_if_circuit_open(ctx, run, now)  # EXE-4: this failure may have opened the circuit
        return _outcome(intent, it.SUBMITTED, f"outcome unknown: {exc}", cid)
    it.crash_point("after_broker_submit")
    run.accept(proposed)
    outcome = _record_answer(ctx, intent, cid, order, now)
    _reduce_only_if_circuit_open(ctx, run, now)  # EXE-4: the circuit may have opened on the way (then resent)
    return outcome


def _submit_with_lookup(ctx: "Context", request: "OrderRequest") -> "Order":
    """Submit; on a transient error or an unknown outcome look the id up and, only when the broker
    has never seen it, send once more with the *same* client_order_id (a duplicate is refused).

    EXE-4: with the API circuit open (the adapter reports it) only an order that reduces is sent
    again; an entry is held (outcome unknown) and the next run, after its look-up, meets GATE-1
    under REDUCE_ONLY: refused with a recorded verdict."""
    for last in (False, True):
        try:
            return ctx.broker.submit(request)
        except DuplicateClientOrderId:
            found = _lookup(ctx, request.client_order_id)
            if found is None:
                raise BrokerUnavailable("broker reports a duplicate client_order_id it cannot find") from None
            return found
        except BrokerUnavailable as exc:
            found = _lookup(ctx, request.client_order_id)
            if found is not None:
                return found
            if last or (request.side == "buy" and _circuit_open(ctx, exc)):  # long-only: a buy adds exposure
                raise
    raise AssertionError("unreachable: the second attempt returns or raises")


def _circuit_open(ctx: "Context", exc: Exception | None = None) -> bool:
    """EXE-4: the adapter reports an open API circuit (``circuit_open``, or CircuitOpen raised)."""
    return isinstance(exc, CircuitOpen) or bool(getattr(ctx.broker, "circuit_open", False))


def _lookup(ctx: "Context", cid: str) -> "Order | None":
    try:
        return ctx.broker.get_order(cid)
    except BrokerUnavailable:
        return None


def _record_answer(ctx: "Context", intent: it.Intent, cid: str, order: "Order", now: datetime) -> Outcome:
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
    return _outcome(intent, state, f"broker {order.status}, filled {order.filled_qty:g}", cid)


def _adopt(ctx: "Context", intent: it.Intent, cid: str, attempt: int, order: "Order", now: datetime) -> Outcome:
    """The broker already has this client_order_id (a previous run sent it): record, never resend."""
    from tradebook.broker.base import OrderRequest, to_qty

    with ctx.ledger.connect() as con:
        known = order_store.exists(con, cid)
    if not known:  # the ledger lost the row (e.g. restored from a backup): rebuild it from the broker
        request = OrderRequest(order.symbol, order.side, to_qty(order.qty), cid, order.order_type,
                               None if order.limit_price is None else Decimal(str(order.limit_price)), "day")
        with ctx.ledger.transaction() as con:
            _insert_order_row(con, request, intent, attempt, now)
            it.transition(con, intent.intent_id, it.SUBMITTED, attempt=attempt, now=now, run_id=ctx.run_id,
                          reason=f"adopted {cid}: found at the broker, not in the ledger")
    return _record_answer(ctx, _reload(ctx, intent), cid, order, now)


def _cancel_first_retry(ctx: "Context", run: "GateRun", intent: it.Intent, proposed: "ProposedOrder", cid: str,
                        attempt: int, exc: BrokerRejected, now: datetime, retry: bool, cleared: bool) -> Outcome:
    """VEN-2: our own working order is in the way: cancel it, wait for the broker, send once more
    (new attempt); refused again or not confirmed in time -> PLANNED for the next run, never FAILED."""
    reason = f"{exc.code}: {exc}"
    available: dict[str, float] = {}
    if cleared or not _clear_way(ctx, run, intent, available, now, keep=cid):
        return _back_to_planned(ctx, intent, cid, f"cancel first, then retry ({reason})", now)
    _mark_order(ctx, intent, cid, "rejected", reason, now)   # a crash here: sync puts it back to PLANNED
    fresh = propose(intent, None, available, qty=proposed.qty)
    if fresh is None:
        _fail(ctx, intent, "nothing held to sell after cancelling the symbol's orders", now, False, it.CANCELLED)
        return _outcome(intent, it.CANCELLED, "nothing held to sell", cid)
    return _gate_and_send(ctx, run, _reload(ctx, intent), replace(proposed, qty=fresh.qty), attempt + 1, now,
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


def _back_to_planned(ctx: "Context", intent: it.Intent, cid: str | None, reason: str, now: datetime) -> Outcome:
    """Not sent now (nothing at the broker): the intent waits, PLANNED, for the next run or tick."""
    with ctx.ledger.transaction() as con:
        if cid is not None:
            _set_order(con, ctx, intent, cid, "rejected", reason, now)
        _unsend(con, intent, now)
        if it.load(con, intent.intent_id).state == it.SUBMITTED:
            it.transition(con, intent.intent_id, it.PLANNED, reason=reason, now=now, run_id=ctx.run_id)
    return _outcome(intent, it.PLANNED, reason, cid)


def _mark_order(ctx: "Context", intent: it.Intent, cid: str, status: str, reason: str, now: datetime,
                to: str | None = None) -> None:
    with ctx.ledger.transaction() as con:
        _set_order(con, ctx, intent, cid, status, reason, now)
        if to:
            it.transition(con, intent.intent_id, to, reason=reason, now=now, run_id=ctx.run_id)


def _set_order(con, ctx: "Context", intent: it.Intent, cid: str, status: str, reason: str, now: datetime) -> None:
    order_store.set_status(con, cid, status, reason, now)
    events.record(con, f"ORDER_{status.upper()}", run_id=ctx.run_id, symbol=intent.symbol, qty=intent.qty,
                  reason=reason, ts=now, data={"client_order_id": cid, "intent_id": intent.intent_id})


def _fail(ctx: "Context", intent: it.Intent, reason: str, now: datetime, already: bool,
          to: str = it.FAILED) -> Outcome:
    if not already:
        with ctx.ledger.transaction() as con:
            it.transition(con, intent.intent_id, to, reason=reason, now=now, run_id=ctx.run_id)
    return _outcome(intent, to, reason)


def _reload(ctx: "Context", intent: it.Intent) -> it.Intent:
    return _reload_id(ctx, intent.intent_id) or intent


def _reload_id(ctx: "Context", iid: str) -> it.Intent:
    with ctx.ledger.connect() as con:
        return it.load(con, iid)


def _outcome(intent: it.Intent, state: str, reason: str, cid: str | None = None) -> Outcome:
    return Outcome(intent.intent_id, intent.symbol, intent.kind, intent.side, intent.qty, state, reason, cid)
