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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

from tradebook.ledger import closed_today, events
from tradebook.ledger import intents as intent_store
from tradebook.ledger import orders as order_store
from tradebook.ledger import meta as ledger_meta
from tradebook.ledger import positions as position_store
from tradebook.ledger import trades as trade_store
from tradebook.ledger.db import staged
from tradebook.phases import reconcile_outcome as outcome
from tradebook.errors import LedgerError
from tradebook.phases.order_sync import (OrderRow, OrderUpdate, apply_order_update, compute_updates, fetch_truth,
                                  open_order_rows)
from tradebook.phases.order_sync import order_update, window_end  # noqa: F401  (re-exported: flatten.py uses them)
from tradebook.phases.positions import EPS, next_position

if TYPE_CHECKING:
    import duckdb

    from tradebook.context import Context

QTY_TOL = 1e-6
PRICE_TOL = 1e-6          # relative
BACKFILL, EXTERNAL_CLOSE, CORRECTION = "BACKFILL", "EXTERNAL_CLOSE", "CORRECTION"


class Pos(NamedTuple):
    symbol: str
    qty: float
    avg_price: float


@dataclass(frozen=True)
class Action:
    kind: str                 # BACKFILL | EXTERNAL_CLOSE | CORRECTION
    symbol: str
    qty: float                # broker quantity (0 for EXTERNAL_CLOSE)
    price: float | None       # broker average price
    ledger_qty: float
    ledger_price: float | None
    reason: str

    @property
    def delta(self) -> float:
        return self.qty - self.ledger_qty


def diff(broker_positions: Iterable[Any], ledger_positions: Iterable[Any]) -> list[Action]:
    """Pure: the actions that make the ledger equal the broker (objects with symbol, qty, avg_price)."""
    broker = {p.symbol: p for p in broker_positions if abs(p.qty) > QTY_TOL}
    ledger = {p.symbol: p for p in ledger_positions if abs(p.qty) > QTY_TOL}
    out: list[Action] = []
    for sym in sorted(broker.keys() | ledger.keys()):
        b, led = broker.get(sym), ledger.get(sym)
        if led is None:
            out.append(Action(BACKFILL, sym, b.qty, b.avg_price, 0.0, None,
                              "position at the broker unknown to the ledger: backfilled as EXTERNAL"))
        elif b is None:
            out.append(Action(EXTERNAL_CLOSE, sym, 0.0, None, led.qty, led.avg_price,
                              "position in the ledger not found at the broker: closed outside tradebook"))
        elif abs(b.qty - led.qty) > QTY_TOL or abs(b.avg_price - led.avg_price) > PRICE_TOL * max(abs(b.avg_price), 1):
            out.append(Action(CORRECTION, sym, b.qty, b.avg_price, led.qty, led.avg_price,
                              f"broker wins: qty {led.qty:g} -> {b.qty:g}, avg {led.avg_price:.4f} -> "
                              f"{b.avg_price:.4f}"))
    return out


def project(ledger: dict[str, Any], updates: list[OrderUpdate]) -> dict[str, Pos]:
    """Pure: ledger positions after the fills in ``updates``."""
    if not any(u.fill_qty > EPS for u in updates):
        return ledger
    out = {s: Pos(s, p.qty, p.avg_price) for s, p in ledger.items()}
    for u in updates:
        if u.fill_qty <= EPS:
            continue
        cur = out.get(u.row.symbol, Pos(u.row.symbol, 0.0, 0.0))
        qty, avg = next_position(cur.qty, cur.avg_price, u.row.side, u.fill_qty, u.fill_price or 0.0)
        if qty <= EPS:
            out.pop(u.row.symbol, None)
        else:
            out[u.row.symbol] = Pos(u.row.symbol, qty, avg)
    return out


# --- the phase ---------------------------------------------------------------------------------
@dataclass
class ReconcileReport:
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


def _price_only(a: Action) -> bool:
    return a.kind == CORRECTION and abs(a.qty - a.ledger_qty) <= QTY_TOL


class _LedgerMoved(LedgerError):
    """The ledger changed between our read and our write (another writer): redo the reconcile."""


def _fingerprint(con: "duckdb.DuckDBPyConnection") -> tuple:
    """What changes whenever another writer touches orders, intents, positions or trades."""
    return (*order_store.fingerprint(con), intent_store.last_update(con), *position_store.version(con),
            trade_store.count(con))


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
        except _LedgerMoved:
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
        return rows, positions, first, _fingerprint(con), mark


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
    report.divergence = any(not _price_only(a) for a in actions) and not first
    # REC-8, written once per session; a run that had to leave a symbol out (its order look-up
    # failed) did not compare the whole book, so it does not count as a success.
    mark_due = not light and not report.unread and outcome.needs_success_mark(mark, now)
    if report.wrote or mark_due:
        _write(ctx, report, fingerprint, mark if mark_due else None, mark_due)
    return report


def _write(ctx: "Context", report: ReconcileReport, fingerprint: tuple, mark: dict | None = None,
           mark_due: bool = False) -> None:
    with ctx.ledger.transaction() as con:
        if _fingerprint(con) != fingerprint:
            raise _LedgerMoved("ledger changed since it was read")
        if mark_due:
            outcome.mark_success(con, mark, report.now)
        for u in report.order_updates:
            apply_order_update(con, u, ctx, report.now)
        if report.actions:
            apply_actions(con, report.actions, ctx, report.now)
        if report.divergence:
            _raise_divergence(con, report, ctx)
        if report.unread:
            from tradebook.safety.controls import record_incident

            record_incident(con, "ORDER_LOOKUP_FAILED",
                            f"order look-up failed for {', '.join(report.unread)}: left out of the position "
                            "comparison (our own fill is never booked as an external close); the next run "
                            "settles it", report.now)


def apply_actions(con: "duckdb.DuckDBPyConnection", actions: list[Action], ctx: "Context", now: datetime) -> None:
    """REC-2/3/4/6 in bulk (set-based SQL over a registered frame: 5,000 actions stay fast)."""
    import pandas as pd

    from tradebook.sessions import session_date

    p = ctx.params
    frame = pd.DataFrame({
        "kind": [a.kind for a in actions], "symbol": [a.symbol for a in actions],
        "qty": [a.qty for a in actions], "price": [a.price for a in actions],
        "delta": [a.delta for a in actions], "reason": [a.reason for a in actions],
        "tier": [p.symbol_tiers.get(a.symbol) for a in actions],
        "sector": [p.symbol_sectors.get(a.symbol) for a in actions],
        "ledger_qty": [a.ledger_qty for a in actions], "ledger_price": [a.ledger_price for a in actions],
    })
    with staged(con, "rec_actions", frame):
        _bulk_sql(con, now, ctx.run_id, session_date(now))


def _bulk_sql(con: "duckdb.DuckDBPyConnection", now: datetime, run_id: str | None, day) -> None:
    position_store.apply_reconcile_actions(con, now)
    closed_today.mark_external_closes(con, day, now)
    trade_store.append_reconcile_actions(con, now, run_id)
    events.record_reconcile_actions(con, now, run_id)


def _raise_divergence(con: "duckdb.DuckDBPyConnection", report: ReconcileReport, ctx: "Context") -> None:
    """REC-7: incident + ALERT + REDUCE_ONLY, all in the reconcile's transaction."""
    from tradebook import alerts
    from tradebook.safety import controls

    shown = 10  # an alert is read by a person: name a few, count the rest (all are audit events)
    listed = "; ".join(f"{a.kind} {a.symbol} ledger {a.ledger_qty:g} -> broker {a.qty:g}"
                       for a in report.actions[:shown])
    more = len(report.actions) - shown
    detail = (f"ledger and broker diverged on {report.checks} consecutive checks for "
              f"{len(report.actions)} position(s): {listed}" + (f"; and {more} more" if more > 0 else ""))
    controls.record_incident(con, "RECONCILE_DIVERGENCE", detail, report.now)
    alerts.alert(con, "DIVERGENCE", detail, params=ctx.params, run_id=ctx.run_id, now=report.now,
                 data={"symbols": [a.symbol for a in report.actions]})
    controls.reduce_only(con, f"reconcile divergence: {len(report.actions)} position(s) corrected to the broker",
                         source="reconcile", now=report.now, incident=False)
