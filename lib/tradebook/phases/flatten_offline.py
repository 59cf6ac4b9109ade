"""CTL-5 with a damaged (OPS-7) or locked (OPS-1) ledger: close at the broker now, record later.

A damaged ledger is never written to, a locked one cannot be, but an operator who asks to flatten must still
get out. This path needs only the broker and the flag file: it cancels every open
order but today's closing orders, closes every position with the same deterministic
client order ids as the normal path (``flat-<YYYYMMDD>-<SYMBOL>[-<attempt>]``, looked
up at the broker first, so a repeat never sells twice), raises the flag to FROZEN and
writes what it did to ``runs/flatten-unrecorded-<UTC stamp>.json``: first the planned client ids (before
anything is sent, ``"complete": false``), then each broker answer (atomic replace), then ``"complete": true``.
It also carries on a normal flatten whose ledger became unavailable part-way (flatten.Progress). After the ledger
is restored, the next reconcile records the journaled closing orders as ours (their fills,
trades and realized P&L: phases/flatten_adopt.py) before it compares positions with the
broker; the journal stays as the audit record of why.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebook.safety.controls import effective_state, flag_path, raise_flag
from tradebook.errors import BrokerError, ControlRefused, OrderOutcomeUnknown
from tradebook.sessions import session_date

if TYPE_CHECKING:
    from tradebook.context import Context
    from tradebook.phases.flatten import FlattenResult, Progress


def flatten_at_broker(ctx: "Context", reason: str, actor: str, source: str, ledger_problem: str,
                      *, locked: bool = False, done: "Progress | None" = None) -> FlattenResult:
    """Cancel, close every position, freeze via the flag file; journal instead of the ledger.

    ``done``: what the normal path already did before the ledger became unavailable (its cancels are
    journaled, its spent ids never reused, its closing orders already in the ledger not journaled again).
    The journal is written before the first close (planned ids) and replaced after each answer, so a
    reconcile that can see a sale can also see the journal naming it.
    """
    from tradebook.phases.flatten import FlattenResult, Progress
    from tradebook.phases.flatten_ended import known

    done = done or Progress()
    now = ctx.now()
    prefix = f"flat-{session_date(now):%Y%m%d}-"
    ledger_name = ctx.params.ledger_path(ctx.root).name
    done.ended |= known(ctx.runs_dir, ledger_name, prefix)
    cancelled, failed = _cancel(ctx, prefix, done)
    plan, closing, kept = _plan(ctx, prefix, done, failed)
    journal = Journal(ctx.runs_dir / f"flatten-unrecorded-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}.json", {
        "at": now.isoformat(), "reason": reason, "actor": actor, "source": source, "ledger_problem": ledger_problem,
        "ledger": ledger_name, "complete": False, "cancelled": cancelled,
        "closing_orders": [_answer(pos, cid, None, "planned") for pos, cid in plan],
        "already_closing": closing, "already_closing_orders": kept,
        "recorded_in_ledger": sorted(done.recorded), "failed": [list(f) for f in failed]})
    journal.write()   # before anything is sent
    submitted = done.sent + _send(ctx, plan, journal, failed, ledger_name)   # the normal path's, then ours
    journal.payload.update(complete=True, failed=[list(f) for f in failed])
    journal.write()
    raise_flag(flag_path(ctx.params, ctx.root), "FROZEN", f"flattened (ledger not recorded): {reason}", actor,
               source, now)
    status = effective_state(ctx.params, ctx.root)
    return FlattenResult(tuple(cancelled), tuple(submitted), tuple(closing), tuple(failed),
                         replace(status, notes=status.notes + (_note(ledger_problem, journal.path, locked, done),)))


def _note(problem: str, journal: Path, locked: bool, done: "Progress") -> str:
    part = (f" The closing order(s) {', '.join(sorted(done.recorded))} were recorded in the ledger before it became "
            "unavailable; the rest were sent without it." if done.recorded else "")
    if locked:
        return (f"the ledger is held by another process ({problem}), so the rest of this flatten was not recorded "
                f"in it; what was done is in {journal}.{part} When that process is done, run `tradebook run "
                f"reconcile`: it records these closing orders from the journal.")
    return (f"the ledger is damaged, so nothing more was recorded in it; what was done is in {journal}.{part} "
            f"Restore the ledger (see the error above), then run `tradebook run reconcile`: it records these "
            f"closing orders from the journal.")


def _cancel(ctx: "Context", prefix: str, done: "Progress") -> tuple[list[str], list[tuple[str, str]]]:
    """Every open order but today's closing orders (and those the normal path already cancelled)."""
    cancelled, failed = list(done.cancelled), []
    for order in ctx.broker.open_orders():
        if order.client_order_id.startswith(prefix) or order.client_order_id in done.cancelled:
            continue  # our own closing order from earlier today: it is the exit
        try:
            ctx.broker.cancel(order.client_order_id)
            cancelled.append(order.client_order_id)
        except BrokerError as exc:
            failed.append((order.client_order_id, f"cancel failed: {exc}"))
    return cancelled, failed


def _plan(ctx: "Context", prefix: str, done: "Progress", failed: list[tuple[str, str]]
          ) -> tuple[list[tuple[Any, str]], list[str], list[dict[str, str]]]:
    """(position, client id to send), symbols already closing, and their open orders not in the ledger yet."""
    from tradebook.phases.flatten import _cid, _next_attempt

    plan, closing, kept = [], [], []
    for pos in ctx.broker.positions():
        if not pos.qty:
            continue
        try:
            attempt, existing = _next_attempt(ctx, prefix + pos.symbol, done.ended)
        except (BrokerError, ControlRefused) as exc:
            failed.append((pos.symbol, str(exc)))
            continue
        if existing is None:
            plan.append((pos, _cid(prefix + pos.symbol, attempt)))
            continue
        closing.append(pos.symbol)
        if existing.client_order_id not in done.recorded:   # already in the ledger: never journaled twice
            kept.append({"symbol": pos.symbol, "client_order_id": existing.client_order_id})
    return plan, closing, kept


def _send(ctx: "Context", plan: list[tuple[Any, str]], journal: "Journal", failed: list[tuple[str, str]],
          ledger_name: str) -> list[str]:
    """Send each planned close; the journal is replaced after every answer."""
    from tradebook.errors import BrokerRejected
    from tradebook.phases.flatten_ended import remember

    submitted = []
    for i, (pos, cid) in enumerate(plan):
        try:
            order = _close(ctx, pos.symbol, cid)
        except (BrokerError, ControlRefused) as exc:
            failed.append((pos.symbol, str(exc)))
            status = "rejected" if isinstance(exc, BrokerRejected) else "failed"
            if status == "rejected":
                remember(ctx.runs_dir, ledger_name, cid)   # spent: the next flatten takes the next attempt
            journal.payload["closing_orders"][i] = _answer(pos, cid, None, f"{status}: {exc}"[:500])
        else:
            submitted.append(cid)
            journal.payload["closing_orders"][i] = _answer(pos, cid, order)
        journal.write()
    return submitted


class Journal:
    """The unrecorded-flatten journal, next to the ledger (never inside it); every write an atomic replace."""

    def __init__(self, path: Path, payload: dict[str, Any]):
        self.path, self.payload = path, payload

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as fh:
            json.dump(self.payload, fh, indent=1, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def _close(ctx: "Context", symbol: str, cid: str) -> Any:
    try:
        return ctx.broker.close_position(symbol, cid)
    except OrderOutcomeUnknown:
        return ctx.broker.get_order(cid)  # it may have arrived: the id makes the look-up safe


def _answer(pos: Any, cid: str, order: Any, status: str | None = None) -> dict[str, Any]:
    if status is None:
        status = getattr(order, "status", None) if order is not None else "nothing to close"
    return {"symbol": pos.symbol, "qty": pos.qty, "client_order_id": cid, "market_price": pos.market_price,
            "status": status, "filled_qty": getattr(order, "filled_qty", None),
            "filled_avg_price": getattr(order, "filled_avg_price", None)}
