"""CTL-5 with a damaged (OPS-7) or locked (OPS-1) ledger: close at the broker now, record later.

A damaged ledger is never written to, a locked one cannot be, but an operator who asks to flatten must still
get out. This path needs only the broker and the flag file: it cancels every open
order but today's closing orders, closes every position with the same deterministic
client order ids as the normal path (``flat-<YYYYMMDD>-<SYMBOL>[-<attempt>]``, looked
up at the broker first, so a repeat never sells twice), raises the flag to FROZEN and
writes what it did to ``runs/flatten-unrecorded-<UTC stamp>.json``. After the ledger
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
    from tradebook.phases.flatten import FlattenResult


def flatten_at_broker(ctx: "Context", reason: str, actor: str, source: str, ledger_problem: str,
                      *, locked: bool = False) -> FlattenResult:
    """Cancel, close every position, freeze via the flag file; journal instead of the ledger."""
    from tradebook.phases.flatten import FlattenResult, _cid, _next_attempt

    now = ctx.now()
    prefix = f"flat-{session_date(now):%Y%m%d}-"
    cancelled, failed = [], []
    for order in ctx.broker.open_orders():
        if order.client_order_id.startswith(prefix):
            continue  # our own closing order from earlier today: it is the exit
        try:
            ctx.broker.cancel(order.client_order_id)
            cancelled.append(order.client_order_id)
        except BrokerError as exc:
            failed.append((order.client_order_id, f"cancel failed: {exc}"))
    submitted, closing, answers, kept = [], [], [], []
    for pos in ctx.broker.positions():
        if not pos.qty:
            continue
        try:
            attempt, existing = _next_attempt(ctx, prefix + pos.symbol, set())
            if existing is not None:
                closing.append(pos.symbol)
                kept.append({"symbol": pos.symbol, "client_order_id": existing.client_order_id})
                continue
            cid = _cid(prefix + pos.symbol, attempt)
            order = _close(ctx, pos.symbol, cid)
        except (BrokerError, ControlRefused) as exc:
            failed.append((pos.symbol, str(exc)))
            continue
        submitted.append(cid)
        answers.append(_answer(pos, cid, order))
    journal = _journal(ctx, now, reason, actor, source, ledger_problem, cancelled, answers, (closing, kept), failed)
    raise_flag(flag_path(ctx.params, ctx.root), "FROZEN", f"flattened (ledger not recorded): {reason}", actor,
               source, now)
    status = effective_state(ctx.params, ctx.root)
    if locked:
        note = (f"the ledger is held by another process ({ledger_problem}), so nothing was recorded in it; what "
                f"was done is in {journal}. When that process is done, run `tradebook run reconcile`: it "
                f"records these closing orders from the journal.")
    else:
        note = (f"the ledger is damaged, so nothing was recorded in it; what was done is in {journal}. "
                f"Restore the ledger (see the error above), then run `tradebook run reconcile`: it records "
                f"these closing orders from the journal.")
    return FlattenResult(tuple(cancelled), tuple(submitted), tuple(closing), tuple(failed),
                         replace(status, notes=status.notes + (note,)))


def _close(ctx: "Context", symbol: str, cid: str) -> Any:
    try:
        return ctx.broker.close_position(symbol, cid)
    except OrderOutcomeUnknown:
        return ctx.broker.get_order(cid)  # it may have arrived: the id makes the look-up safe


def _answer(pos: Any, cid: str, order: Any) -> dict[str, Any]:
    return {"symbol": pos.symbol, "qty": pos.qty, "client_order_id": cid, "market_price": pos.market_price,
            "status": getattr(order, "status", None) if order is not None else "nothing to close",
            "filled_qty": getattr(order, "filled_qty", None), "filled_avg_price": getattr(order, "filled_avg_price", None)}


def _journal(ctx: "Context", now: datetime, reason: str, actor: str, source: str, problem: str,
             cancelled: list[str], answers: list[dict[str, Any]],
             closing: tuple[list[str], list[dict[str, str]]], failed: list[tuple[str, str]]) -> Path:
    """Atomic JSON record of the unrecorded flatten, next to the ledger (never inside it)."""
    runs = ctx.runs_dir
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = runs / f"flatten-unrecorded-{stamp}.json"
    payload = {"at": now.isoformat(), "reason": reason, "actor": actor, "source": source,
               "ledger_problem": problem,
               "ledger": ctx.params.ledger_path(ctx.root).name, "cancelled": cancelled, "closing_orders": answers,
               "already_closing": closing[0], "already_closing_orders": closing[1],
               "failed": [list(f) for f in failed]}
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=1, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
