"""CTL-5 flatten: cancel open orders, close every position at market, then freeze.

Closing orders are position-reducing exits: they bypass the entry rules of the gate
but leave the same audit trail as any order (an EXIT intent with urgency immediate,
a CTL-5 verdict row, an orders row written *before* the broker call, events).
Client order ids are deterministic, ``flat-<YYYYMMDD>-<SYMBOL>[-<attempt>]`` on the
exchange date (each one is also its intent's id), and each is looked up at the broker
before a new one is sent, so a second flatten (or a retry after a crash) never sells
twice. Broker answers are recorded through reconcile's order-update path, so fills
reach positions/trades exactly as for any other order, and a closing order that is
still working (market closed) is finished by the next reconcile.

VEN-2: cancels may be asynchronous, and a close refused because our own working order
holds the shares ("insufficient qty available") or would trade against it ("potential
wash trade") is not a failure: flatten waits (bounded) until the cancelled orders are
final before closing, and on such a refusal cancels the symbol's orders, waits and
tries once more. Still refused, the closing intent stays PLANNED (reported as not
closed yet; running flatten again retries it; it expires at the close, EXIT-8).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from tradebook.broker.base import needs_cancel_first
from tradebook.clock import operator_now
from tradebook.safety.controls import ControlStatus, clean_reason, effective_state, flag_path, freeze, raise_flag
from tradebook.errors import (BrokerError, BrokerRejected, ControlRefused, LedgerCorrupt, LedgerLocked,
                              OrderOutcomeUnknown)
from tradebook.ledger import events
from tradebook.phases.flatten_ended import remember as remember_ended
from tradebook.sessions import session_date

if TYPE_CHECKING:
    from tradebook.broker.base import Order, Position
    from tradebook.context import Context

MAX_ATTEMPTS = 9


@dataclass(frozen=True)
class _Close:
    outcome: str          # submitted | closing | failed | nothing
    key: str              # client_order_id, or symbol
    detail: str = ""


@dataclass(frozen=True)
class FlattenResult:
    """What a flatten did: cancels, closing orders, symbols already closing, failures, final state."""

    cancelled: tuple[str, ...]                 # client_order_ids cancelled
    submitted: tuple[str, ...]                 # closing client_order_ids submitted by this call
    already_closing: tuple[str, ...]           # symbols with an open closing order from before
    failed: tuple[tuple[str, str], ...]        # (symbol or client_order_id, error)
    status: ControlStatus

    def summary(self) -> str:
        parts = [f"cancelled {len(self.cancelled)} order(s)", f"submitted {len(self.submitted)} closing order(s)"]
        if self.already_closing:
            parts.append(f"already closing: {', '.join(self.already_closing)}")
        if self.failed:
            parts.append("FAILED: " + "; ".join(f"{k}: {e}" for k, e in self.failed))
        return ", ".join(parts) + f"; state {self.status.state}"


def flatten(ctx: "Context", reason: str, actor: str = "operator", source: str = "cli") -> FlattenResult:
    """CTL-5: halt via the flag file, cancel open orders, close every position at market, then freeze;
    events at every step (see module doc). Safety (controls) only records the freeze.

    A ledger that cannot be opened (damaged, OPS-7, or locked by another process, OPS-1) does not
    stop the flatten: it closes at the broker and journals instead (``flatten_offline``). A broker
    that does not answer before anything was closed raises ``ControlRefused`` saying nothing was
    sold, with the flag's reason saying the flatten did not complete (trading stays HALTED).
    """
    reason = clean_reason(reason)
    if not reason:
        raise ControlRefused("flatten needs a reason (e.g. --reason 'strategy broken'); nothing changed")
    path = flag_path(ctx.params, ctx.root)
    # Halt first: nothing else may trade while we unwind, even if a step below fails.
    raise_flag(path, "HALTED", f"flatten in progress: {reason}", actor, source,
               operator_now(ctx.params, ctx.root))   # one clock: the simulated one in sim mode
    done = Progress()
    try:
        return _flatten_recorded(ctx, reason, actor, source, done)
    except (LedgerCorrupt, LedgerLocked) as exc:  # never write a damaged ledger; never wait on a busy one
        # From whatever step the ledger became unavailable: the rest at the broker, journaled (offline path).
        return _offline(ctx, reason, actor, source, exc, done)
    except BrokerError as exc:   # before any close: _close_one keeps its own broker errors
        _not_completed(ctx, reason, actor, source, exc, sent=done.sent)
        raise  # unreachable: _not_completed raises


@dataclass
class Progress:
    """What a flatten already did, so the offline path can carry on from there (never twice)."""

    ended: set[str] = field(default_factory=set)       # closing ids spent today (never reused)
    cancelled: list[str] = field(default_factory=list)  # cancels the broker accepted
    recorded: set[str] = field(default_factory=set)     # closing ids already written to the ledger
    sent: list[str] = field(default_factory=list)       # closing ids the broker accepted (some maybe unrecorded)


def _flatten_recorded(ctx: "Context", reason: str, actor: str, source: str, done: Progress) -> FlattenResult:
    """The normal path: every step recorded in the ledger (see flatten)."""
    path = flag_path(ctx.params, ctx.root)
    now = ctx.now()
    prefix = f"flat-{session_date(now):%Y%m%d}-"
    with ctx.ledger.transaction() as con:  # fails early (nothing sent) if the ledger cannot be opened
        events.record(con, "FLATTEN_START", run_id=ctx.run_id, reason=reason,
                      data={"actor": actor, "source": source}, ts=now)
        done.ended |= _ended_today(con, prefix)
    cancelled, failed = _cancel_others(ctx, prefix, now, done)
    positions = [pos for pos in ctx.broker.positions() if pos.qty]
    closes = [_close_one(ctx, pos, prefix, done, reason, now) for pos in positions]
    failed += [(c.key, c.detail) for c in closes if c.outcome == "failed"]
    submitted = tuple(c.key for c in closes if c.outcome == "submitted")
    closing = tuple(c.key for c in closes if c.outcome == "closing")
    with ctx.ledger.transaction() as con:
        freeze(con, f"flatten: {reason}", actor, source, now)
        events.record(con, "FLATTEN_DONE", run_id=ctx.run_id, ts=now, reason=(
            f"cancelled {len(cancelled)}, submitted {len(submitted)}, already closing {len(closing)}, "
            f"failed {len(failed)}"), data={"cancelled": cancelled, "submitted": submitted,
                                            "already_closing": closing, "failed": failed})
    raise_flag(path, "FROZEN", f"flattened: {reason}", actor, source, now)
    return FlattenResult(tuple(cancelled), submitted, closing, tuple(failed),
                         effective_state(ctx.params, ctx.root, ctx.ledger))


def _offline(ctx: "Context", reason: str, actor: str, source: str, exc: Exception,
             done: Progress | None = None) -> FlattenResult:
    """Close at the broker without the ledger; a broker that does not answer either: not completed."""
    from tradebook.phases.flatten_offline import flatten_at_broker

    if "broker" not in ctx.__dict__:  # ctx.broker would record incidents in (and so open) the ledger
        from tradebook.broker import make_broker

        ctx.broker = make_broker(ctx.params, ctx.root)
    try:
        return flatten_at_broker(ctx, reason, actor, source, str(exc), locked=isinstance(exc, LedgerLocked),
                                 done=done)
    except BrokerError as broker_exc:
        _not_completed(ctx, reason, actor, source, broker_exc, sent=done.sent if done else [])
        raise  # unreachable: _not_completed raises


def _not_completed(ctx: "Context", reason: str, actor: str, source: str, exc: BrokerError,
                   sent: list[str] | None = None) -> None:
    """The broker did not answer: say so on the flag and to the operator (and what was sent before)."""
    why, path = " ".join(str(exc).split()), flag_path(ctx.params, ctx.root)
    sold = (f"closing order(s) {', '.join(sent)} were sent before, the rest not"
            if sent else "nothing was sold")
    raise_flag(path, "HALTED", f"flatten did NOT complete (broker unreachable: {why}); {sold}: {reason}",
               actor, source, operator_now(ctx.params, ctx.root))
    raise ControlRefused(f"flatten did not complete: the broker did not answer ({why}). "
                         f"{sold[0].upper() + sold[1:]}; trading is HALTED ({path}); run flatten again when the "
                         "broker answers") from exc


def _ended_today(con, prefix: str) -> set[str]:
    """Today's closing-order ids whose intent already ended: never reused (see _next_attempt)."""
    from tradebook.ledger import intents as intent_store
    from tradebook.phases.intents import TERMINAL

    return intent_store.ids_with_prefix(con, prefix, TERMINAL)


def _cancel_others(ctx: "Context", prefix: str, now: datetime,
                   done: Progress) -> tuple[list[str], list[tuple[str, str]]]:
    """Cancel every open order except our own closing orders of today (kept: they are the exit)."""
    cancelled, failed = [], []
    for order in ctx.broker.open_orders():
        if order.client_order_id.startswith(prefix):
            continue
        try:
            ctx.broker.cancel(order.client_order_id)
            cancelled.append(order)
            done.cancelled.append(order.client_order_id)   # sent: journaled if the ledger fails below
        except BrokerError as exc:
            failed.append((order.client_order_id, f"cancel failed: {exc}"))
    if not cancelled and not failed:
        return [], []
    from tradebook.phases.cancel_first import wait_final

    wait_final(ctx, [o.client_order_id for o in cancelled])  # bounded; a close still refused retries below
    with ctx.ledger.transaction() as con:
        for order in cancelled:
            events.record(con, "FLATTEN_CANCEL", run_id=ctx.run_id, symbol=order.symbol, qty=order.qty,
                          price=order.limit_price, reason=f"flatten cancelled {order.client_order_id}",
                          data={"client_order_id": order.client_order_id}, ts=now)
        for cid, error in failed:
            events.record(con, "FLATTEN_CANCEL_FAILED", run_id=ctx.run_id, reason=error,
                          data={"client_order_id": cid}, ts=now)
    return [o.client_order_id for o in cancelled], failed


def _next_attempt(ctx: "Context", base: str, ended: set[str]) -> tuple[int, "Order | None"]:
    """First attempt free at the broker and in the ledger, or an open earlier order to keep.

    An id the broker knows (final) or whose intent already ended in the ledger (e.g. a
    reject that left nothing at the venue) is never reused: the next attempt gets a new id.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        cid = _cid(base, attempt)
        order = ctx.broker.get_order(cid)
        if order is not None and order.is_open:
            return attempt, order
        if order is None and cid not in ended:
            return attempt, None
    raise ControlRefused(f"{base}: {MAX_ATTEMPTS} closing orders already sent today; check the broker")


def _cid(base: str, attempt: int) -> str:
    return base if attempt == 1 else f"{base}-{attempt}"


def _close_one(ctx: "Context", pos: "Position", prefix: str, done: Progress, reason: str,
               now: datetime) -> _Close:
    try:
        attempt, existing = _next_attempt(ctx, prefix + pos.symbol, done.ended)
    except (BrokerError, ControlRefused) as exc:
        return _Close("failed", pos.symbol, str(exc))
    if existing is not None:
        return _Close("closing", pos.symbol, existing.client_order_id)
    cid = _cid(prefix + pos.symbol, attempt)
    with ctx.ledger.transaction() as con:  # write-ahead: on record before the broker sees it (EXE-1)
        _record_submit(con, ctx, cid, attempt, pos, reason, now)
    done.recorded.add(cid)
    try:
        order = _close_clearing(ctx, pos.symbol, cid, now)
        if order is not None:
            done.sent.append(cid)
    except OrderOutcomeUnknown as exc:
        try:
            order = ctx.broker.get_order(cid)
        except BrokerError:
            order = None
        if order is None:  # left pending_submit: reconcile looks it up by client id later
            return _Close("failed", pos.symbol, f"outcome unknown, reconcile will look {cid} up: {exc}")
        done.sent.append(cid)
    except BrokerError as exc:
        waits = isinstance(exc, BrokerRejected) and needs_cancel_first(exc)
        with ctx.ledger.transaction() as con:   # cancel-first refusal: PLANNED, never FAILED (VEN-2)
            _record_end(con, ctx, cid, pos, "rejected", "PLANNED" if waits else "FAILED", str(exc)[:500], now)
        if not waits:   # spent: the offline path, which cannot read the ledger, must not reuse it either
            done.ended.add(cid)
            remember_ended(ctx.runs_dir, ctx.params.ledger_path(ctx.root).name, cid)
        detail = (f"not closed yet: our own working order on {pos.symbol} is not confirmed cancelled ({exc}); "
                  "run flatten again" if waits else str(exc))
        return _Close("failed", pos.symbol, detail)
    with ctx.ledger.transaction() as con:
        if order is None:
            _record_end(con, ctx, cid, pos, "canceled", "CANCELLED", "nothing to close at the broker", now)
        else:
            _record_order(con, ctx, cid, order, now)
    return _Close("submitted" if order is not None else "nothing", cid)


def _close_clearing(ctx: "Context", symbol: str, cid: str, now: datetime) -> "Order | None":
    """close_position; refused because of our own working order: cancel it, wait, try once more."""
    from tradebook.phases.cancel_first import clear_symbol

    try:
        return ctx.broker.close_position(symbol, cid)
    except BrokerRejected as exc:
        if not needs_cancel_first(exc) or not clear_symbol(ctx, symbol, now, keep={cid}, why="flatten"):
            raise
    return ctx.broker.close_position(symbol, cid)


def _record_submit(con, ctx: "Context", cid: str, attempt: int, pos: "Position", reason: str,
                   now: datetime) -> None:
    """EXIT intent (urgency immediate, gate bypass recorded as a CTL-5 verdict), SUBMITTED, order row."""
    from tradebook.phases import intents
    from tradebook.ledger import orders as order_store
    from tradebook.ledger.verdicts import append_verdicts

    side, qty = ("sell" if pos.qty > 0 else "buy"), abs(pos.qty)
    intents.insert(con, intents.Intent(
        cid, now, ctx.run_id, "EXIT", pos.symbol, side, qty, "market", None, "immediate", None,
        pos.market_price, now, f"flatten: {reason}", intents.PLANNED, attempt, "bypass", "FLATTEN", now))
    append_verdicts(con, cid, ctx.run_id, now,
                    [("CTL-5", "pass", "FLATTEN_BYPASS", {"why": "position-reducing exit: entry rules do not apply"})])
    if intents.load(con, cid).state == intents.PLANNED:
        intents.transition(con, cid, intents.SUBMITTED, reason=f"flatten: {reason}", now=now,
                           run_id=ctx.run_id, attempt=attempt)
    order_store.insert_or_reset_pending(con, cid, cid, attempt, pos.symbol, side, qty, "market", "day", now)
    events.record(con, "FLATTEN_SUBMIT", run_id=ctx.run_id, symbol=pos.symbol, qty=qty, price=pos.market_price,
                  reason=f"flatten: {reason}", data={"client_order_id": cid}, ts=now)


def _record_order(con, ctx: "Context", cid: str, order: "Order", now: datetime) -> None:
    """The broker's answer through reconcile's order-update path: status, fill, position, intent."""
    from tradebook.phases.order_sync import apply_order_update, open_order_rows, order_update

    for row in open_order_rows(con, [cid]):
        update = order_update(row, order, window_over=False, now=now)
        if update is not None:
            apply_order_update(con, update, ctx, now)
    events.record(con, "FLATTEN_ORDER", run_id=ctx.run_id, symbol=order.symbol, qty=order.qty,
                  price=order.filled_avg_price, reason=f"closing order {order.status}",
                  data={"client_order_id": cid, "broker_id": order.broker_id}, ts=now)


def _record_end(con, ctx: "Context", cid: str, pos: "Position", status: str, intent_state: str, why: str,
                now: datetime) -> None:
    """A closing order that ended without reaching the venue (rejected) or had nothing to close."""
    from tradebook.ledger import orders as order_store
    from tradebook.phases.intents import transition

    order_store.set_status(con, cid, status, why, now)
    transition(con, cid, intent_state, reason=why, now=now, run_id=ctx.run_id)
    kind = {"FAILED": "FLATTEN_FAILED", "PLANNED": "FLATTEN_WAITING"}.get(intent_state, "FLATTEN_NOTHING")
    events.record(con, kind, run_id=ctx.run_id,
                  symbol=pos.symbol, qty=abs(pos.qty), reason=why, data={"client_order_id": cid}, ts=now)
