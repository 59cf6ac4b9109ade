"""Reconcile the ledger with the broker, the source of truth for quantities (REC-1 … REC-7).

1. REC-1: fetch broker positions and open orders first, then look up each of our
   orders the ledger still considers open (by client_order_id).
2. Order truth → ledger: status changes, fills (with slippage vs the decision price,
   EXE-6) and intent transitions (``order_sync.order_update``, pure).
3. ``diff`` (pure) compares broker positions with the ledger *after* those fills:
   unknown at the ledger → BACKFILL as EXTERNAL (REC-2); missing at the broker →
   EXTERNAL_CLOSE (REC-3); qty / avg price mismatch → CORRECTION, broker wins (REC-4).
4. REC-7: a divergence must be seen on two consecutive checks: the broker is read a
   second time and only symbols that diverge on both are acted on (a fill landing
   between our order and position reads is transient and disappears on the second
   read). A confirmed divergence is an incident, an ALERT and REDUCE_ONLY (auto trip,
   may re-arm per CTL-3) — except on the very first sync of an empty ledger, which is
   an adoption of the account, not a divergence.
5. Everything is written in one transaction, and only when something changed, so a
   second run writes nothing at all (REC-5). Every action is an event (REC-6).

Here: the reads, the two checks and the report. The comparison is ``reconcile_diff``
(pure), the one transaction that records it ``reconcile_write``, REC-8's failure and
success marks ``reconcile_outcome``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from tradebook.ledger import meta as ledger_meta
from tradebook.ledger import orders as order_store
from tradebook.ledger import positions as position_store
from tradebook.ledger import trades as trade_store
from tradebook.phases import reconcile_outcome as outcome
from tradebook.errors import LedgerError
from tradebook.phases.order_sync import OrderRow, OrderUpdate, compute_updates, fetch_truth, open_order_rows
from tradebook.phases.positions import EPS
from tradebook.phases.reconcile_diff import (BACKFILL, CORRECTION, EXTERNAL_CLOSE, Action, Pos, diff, price_only,
                                             project)
from tradebook.phases.reconcile_write import LedgerMoved, ledger_fingerprint, write

if TYPE_CHECKING:
    import duckdb

    from tradebook.context import Context


@dataclass
class ReconcileReport:
    """What one reconcile saw and did (the phase notebook shows its tables and summary)."""

    now: datetime
    light: bool
    broker_positions: list[Any] = field(default_factory=list)
    open_orders: list[Any] = field(default_factory=list)
    ledger_positions: int = 0
    actions: list[Action] = field(default_factory=list)
    unconfirmed: list[Action] = field(default_factory=list)
    order_updates: list[OrderUpdate] = field(default_factory=list)
    checks: int = 1
    first_sync: bool = False
    divergence: bool = False
    settled: list[tuple[str, str]] = field(default_factory=list)   # (intent_id, state): intent_settle
    unread: list[str] = field(default_factory=list)   # symbols left out: an order look-up failed
    adopted: list[Any] = field(default_factory=list)  # journaled flatten orders recorded (flatten_adopt)

    @property
    def wrote(self) -> bool:
        return bool(self.actions or self.order_updates or self.unread or self.adopted)

    def tables(self) -> dict[str, Any]:
        import pandas as pd

        return {
            "actions": pd.DataFrame([{**a.__dict__, "delta": a.delta} for a in self.actions],
                                    columns=[*Action.__dataclass_fields__, "delta"]),
            "order updates": pd.DataFrame([_update_row(u) for u in self.order_updates],
                                          columns=["client_order_id", "symbol", "from", "to", "fill_qty",
                                                   "fill_price", "intent_to", "reason"]),
            "unconfirmed (seen once, left for the next check)": pd.DataFrame(
                [a.__dict__ for a in self.unconfirmed], columns=list(Action.__dataclass_fields__)),
            "broker positions": pd.DataFrame([{"symbol": p.symbol, "qty": p.qty, "avg_price": p.avg_price}
                                              for p in self.broker_positions],
                                             columns=["symbol", "qty", "avg_price"]),
        }

    def summary(self) -> str:
        if not self.wrote:
            what = "order updates only (light)" if self.light else "ledger in sync with the broker"
            return f"reconcile @ {self.now:%Y-%m-%d %H:%M %Z}: {what}; nothing written"
        counts = {k: sum(a.kind == k for a in self.actions) for k in (BACKFILL, EXTERNAL_CLOSE, CORRECTION)}
        text = (f"reconcile @ {self.now:%Y-%m-%d %H:%M %Z}: {len(self.broker_positions)} broker positions, "
                f"{counts[BACKFILL]} backfilled as EXTERNAL, {counts[EXTERNAL_CLOSE]} closed externally, "
                f"{counts[CORRECTION]} corrected, {len(self.order_updates)} order update(s)")
        if self.adopted:
            text += (f"; adopted {len(self.adopted)} closing order(s) of an unrecorded flatten: "
                     + ", ".join(a.client_order_id for a in self.adopted))
        if self.first_sync:
            text += "; first sync of an empty ledger (adopted, not a divergence)"
        if self.divergence:
            text += "; DIVERGENCE confirmed on 2 checks -> incident, alert, REDUCE_ONLY"
        if self.unread:
            text += f"; order look-up failed, left for the next run: {', '.join(self.unread)}"
        return text


def _update_row(u: OrderUpdate) -> dict[str, Any]:
    return {"client_order_id": u.row.client_order_id, "symbol": u.row.symbol, "from": u.row.status,
            "to": u.status, "fill_qty": u.fill_qty, "fill_price": u.fill_price, "intent_to": u.intent_to,
            "reason": u.reason}


def run_reconcile(ctx: "Context", *, light: bool = False) -> ReconcileReport:
    """REC-1…8: bring the ledger in line with the broker; ``light`` = our orders and fills only.

    A full reconcile that fails for any reason but the ledger itself is recorded (REC-8:
    incident, alert, REDUCE_ONLY, session not reconciled) and then raised.
    """
    from tradebook.phases.intents import phase_session

    with phase_session(ctx):
        if light:
            return _reconcile(ctx, True)
        started = outcome.failure_time(ctx)
        try:
            from tradebook.phases.flatten_adopt import adopt_own_orders

            adopted = adopt_own_orders(ctx)  # before the comparison: our own fills, not EXTERNAL_CLOSEs
            report = _reconcile(ctx, False)
            report.adopted = adopted
        except LedgerError:
            raise  # nothing can be recorded in a ledger we cannot use; the error says what to do
        except Exception as exc:
            problem = outcome.record_failure(ctx, exc, started)
            if problem:
                exc.add_note(f"the failure could not be recorded in the ledger: {problem}")
            raise
        from tradebook.safety.breakers import record_start_of_day

        record_start_of_day(ctx)  # BRK-1/2: the previous close's equity, before the open
        return report


def sync_orders(ctx: "Context", cids: Iterable[str] | None = None) -> ReconcileReport:
    """Light reconcile: record status changes and fills of our own orders (optionally only ``cids``)."""
    from tradebook.phases.intents import crash_point, phase_session

    with phase_session(ctx):
        report = _reconcile(ctx, True, cids)
    if any(u.fill_qty > EPS for u in report.order_updates):
        crash_point("after_fill_recorded")
    return report


def _reconcile(ctx: "Context", light: bool, cids: Iterable[str] | None = None) -> ReconcileReport:
    from tradebook.phases.intent_settle import settle_intents

    for _ in range(3):
        try:
            report = _reconcile_once(ctx, light, cids)
        except LedgerMoved:
            continue  # another writer changed the ledger between our read and our write: redo
        if cids is None:  # EXIT-3/EXIT-8: no intent stays "under way" without a live order
            report.settled = settle_intents(ctx, report.now)
        return report
    raise LedgerError("the ledger kept changing during reconcile (another writer?); run it again")


def load_quantities(con: "duckdb.DuckDBPyConnection") -> dict[str, Pos]:
    """Ledger positions as (symbol, qty, avg_price) only: no timestamps to convert (5,000 rows in ms)."""
    return {r[0]: Pos(*r) for r in position_store.quantities(con)}


def _read_ledger(ctx: "Context", cids: Iterable[str] | None, light: bool):
    with ctx.ledger.connect() as con:
        rows = open_order_rows(con, cids)
        positions = load_quantities(con)
        first = not positions and not (trade_store.count(con) + order_store.count(con))
        mark = None if light else ledger_meta.get(con, ledger_meta.RECONCILE_KEY)
        return rows, positions, first, ledger_fingerprint(con), mark


def _check(ctx: "Context", rows: list[OrderRow], ledger: dict[str, Pos], light: bool, now: datetime):
    """One look at the broker: (positions, open orders, order updates, actions, symbols left out).

    A symbol with an order whose look-up failed is left out of the position comparison:
    a fill we could not read would otherwise be booked as an EXTERNAL_CLOSE or a
    correction of our own order (issue 12 item 10); the next run settles it.
    """
    broker = ctx.broker
    positions = [] if light else broker.positions()     # REC-1: positions and open orders first
    open_orders = broker.open_orders() if (rows or not light) else []
    truth = fetch_truth(broker, rows, open_orders)
    updates = compute_updates(ctx, rows, truth, now)
    unread = sorted({r.symbol for r in rows if r.client_order_id not in truth})
    if light:
        return positions, open_orders, updates, [], unread
    skip = set(unread)
    actions = diff([p for p in positions if p.symbol not in skip],
                   [p for p in project(ledger, updates).values() if p.symbol not in skip])
    return positions, open_orders, updates, actions, unread


def _reconcile_once(ctx: "Context", light: bool, cids: Iterable[str] | None = None) -> ReconcileReport:
    now = ctx.now()
    rows, ledger, first, fingerprint, mark = _read_ledger(ctx, cids, light)
    positions, open_orders, updates, actions, unread = _check(ctx, rows, ledger, light, now)
    report = ReconcileReport(now, light, positions, open_orders, len(ledger), first_sync=first)
    if actions and not first:  # REC-7: confirm on a second, consecutive check
        positions, open_orders, updates, second, unread2 = _check(ctx, rows, ledger, light, now)
        seen = {a.symbol for a in actions}
        actions = [a for a in second if a.symbol in seen]
        report.unconfirmed = [a for a in second if a.symbol not in seen]
        report.checks, report.broker_positions, report.open_orders = 2, positions, open_orders
        unread = sorted(set(unread) | set(unread2))
    report.actions, report.order_updates = actions, updates
    report.unread = [] if light else unread
    # An average-price difference alone is Alpaca's FIFO end-of-day average, not a divergence:
    # a quiet broker-wins correction (REC-4), no incident.
    report.divergence = any(not price_only(a) for a in actions) and not first
    # REC-8, written once per session; a run that had to leave a symbol out (its order look-up
    # failed) did not compare the whole book, so it does not count as a success.
    mark_due = not light and not report.unread and outcome.needs_success_mark(mark, now)
    if report.wrote or mark_due:
        write(ctx, report, fingerprint, mark if mark_due else None, mark_due)
    return report
