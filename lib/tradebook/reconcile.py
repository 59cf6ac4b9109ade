"""Reconcile the ledger with the broker, the source of truth for quantities (REC-1 … REC-7).

1. REC-1: fetch broker positions and open orders first, then look up each of our
   orders the ledger still considers open (by client_order_id).
2. Order truth → ledger: status changes, fills (with slippage vs the decision price,
   EXE-6) and intent transitions (orders.py-free: see ``order_update``).
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

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

from tradebook.broker.base import OPEN_STATUSES
from tradebook.errors import BrokerUnavailable, LedgerError
from tradebook.positions import EPS, LedgerPosition, load_positions, next_position

if TYPE_CHECKING:
    import duckdb

    from tradebook.broker.base import Broker, Order
    from tradebook.context import Context

QTY_TOL = 1e-6
PRICE_TOL = 1e-6          # relative
LOCAL_OPEN = frozenset({"pending_submit", "unknown"})   # recorded by us; broker not confirmed yet
NON_FINAL = LOCAL_OPEN | OPEN_STATUSES
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


# --- our orders vs broker truth ----------------------------------------------------------------
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


ORDER_ROW_SQL = (
    "SELECT o.client_order_id, o.intent_id, o.attempt, o.broker_id, o.symbol, o.side, o.qty, o.status, "
    "o.filled_qty, o.filled_avg_price, o.submitted_at, i.urgency, i.decision_price, i.confidence, i.state, "
    "i.attempt FROM orders o JOIN intents i USING (intent_id)")


def open_order_rows(con: "duckdb.DuckDBPyConnection", cids: Iterable[str] | None = None) -> list[OrderRow]:
    """Our orders the ledger still considers working (optionally only ``cids``)."""
    marks = ", ".join("?" for _ in NON_FINAL)
    sql, params = f"{ORDER_ROW_SQL} WHERE o.status IN ({marks})", list(NON_FINAL)
    if cids is not None:
        cids = list(cids)
        if not cids:
            return []
        sql += f" AND o.client_order_id IN ({', '.join('?' for _ in cids)})"
        params += cids
    return [OrderRow(*r) for r in con.execute(sql + " ORDER BY o.submitted_at, o.client_order_id", params).fetchall()]


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


def intent_state_for(status: str, filled_qty: float) -> str | None:
    """The intent state an order status implies (None: still working)."""
    if status == "filled":
        return "FILLED"
    if status in ("canceled", "expired"):
        return "PARTIAL" if filled_qty > EPS else ("CANCELLED" if status == "canceled" else "EXPIRED")
    if status == "rejected":
        return "FAILED"
    if status == "not_found":
        return "PLANNED"
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
                                    max(delta, 0.0), fill_price, truth.updated_at or now, None, reason,
                                    truth.reject_reason))


def _with_intent(u: OrderUpdate) -> OrderUpdate:
    """Attach the intent transition, only for the intent's current attempt while SUBMITTED."""
    to = intent_state_for(u.status, u.filled_qty)
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
    from tradebook.intents import window_of

    sent = row.submitted_at
    if sent is None:
        return datetime.min.replace(tzinfo=ctx.now().tzinfo)
    from tradebook.controls import session_date

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


def project(ledger: dict[str, LedgerPosition], updates: list[OrderUpdate]) -> dict[str, Pos]:
    """Pure: ledger positions after the fills in ``updates``."""
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

    @property
    def wrote(self) -> bool:
        return bool(self.actions or self.order_updates)

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
        if self.first_sync:
            text += "; first sync of an empty ledger (adopted, not a divergence)"
        if self.divergence:
            text += "; DIVERGENCE confirmed on 2 checks -> incident, alert, REDUCE_ONLY"
        return text


def _update_row(u: OrderUpdate) -> dict[str, Any]:
    return {"client_order_id": u.row.client_order_id, "symbol": u.row.symbol, "from": u.row.status,
            "to": u.status, "fill_qty": u.fill_qty, "fill_price": u.fill_price, "intent_to": u.intent_to,
            "reason": u.reason}


class _LedgerMoved(LedgerError):
    """The ledger changed between our read and our write (another writer): redo the reconcile."""


_FINGERPRINT = ("SELECT (SELECT count(*) FROM orders), (SELECT max(updated_at) FROM orders), "
                "(SELECT count(*) FROM positions), (SELECT max(updated_at) FROM positions), "
                "(SELECT count(*) FROM trades), (SELECT max(updated_at) FROM intents)")


def run_reconcile(ctx: "Context", *, light: bool = False) -> ReconcileReport:
    """REC-1…7: bring the ledger in line with the broker; ``light`` = our orders and fills only."""
    from tradebook.intents import phase_session

    with phase_session(ctx):
        for _ in range(3):
            try:
                return _reconcile_once(ctx, light)
            except _LedgerMoved:
                continue
    raise LedgerError("the ledger kept changing during reconcile (another writer?); run it again")


def sync_orders(ctx: "Context", cids: Iterable[str] | None = None) -> ReconcileReport:
    """Light reconcile: record status changes and fills of our own orders (optionally only ``cids``)."""
    from tradebook.intents import crash_point, phase_session

    with phase_session(ctx):
        report = _reconcile_once(ctx, True, cids)
    if any(u.fill_qty > EPS for u in report.order_updates):
        crash_point("after_fill_recorded")
    return report


def _read_ledger(ctx: "Context", cids: Iterable[str] | None):
    with ctx.ledger.connect() as con:
        rows = open_order_rows(con, cids)
        positions = load_positions(con)
        first = not positions and not con.execute(
            "SELECT (SELECT count(*) FROM trades) + (SELECT count(*) FROM orders)").fetchall()[0][0]
        return rows, positions, first, con.execute(_FINGERPRINT).fetchall()[0]


def _check(ctx: "Context", rows: list[OrderRow], ledger: dict[str, LedgerPosition], light: bool, now: datetime):
    """One look at the broker: (positions, open orders, order updates, actions)."""
    broker = ctx.broker
    positions = [] if light else broker.positions()     # REC-1: positions and open orders first
    open_orders = broker.open_orders() if (rows or not light) else []
    updates = compute_updates(ctx, rows, fetch_truth(broker, rows, open_orders), now)
    actions = [] if light else diff(positions, project(ledger, updates).values())
    return positions, open_orders, updates, actions


def _reconcile_once(ctx: "Context", light: bool, cids: Iterable[str] | None = None) -> ReconcileReport:
    now = ctx.now()
    rows, ledger, first, fingerprint = _read_ledger(ctx, cids)
    positions, open_orders, updates, actions = _check(ctx, rows, ledger, light, now)
    report = ReconcileReport(now, light, positions, open_orders, len(ledger), first_sync=first)
    if actions and not first:  # REC-7: confirm on a second, consecutive check
        positions, open_orders, updates, second = _check(ctx, rows, ledger, light, now)
        seen = {a.symbol for a in actions}
        actions = [a for a in second if a.symbol in seen]
        report.unconfirmed = [a for a in second if a.symbol not in seen]
        report.checks, report.broker_positions, report.open_orders = 2, positions, open_orders
    report.actions, report.order_updates = actions, updates
    report.divergence = bool(actions) and not first
    if report.wrote:
        _write(ctx, report, fingerprint)
    return report


def _write(ctx: "Context", report: ReconcileReport, fingerprint: tuple) -> None:
    with ctx.ledger.transaction() as con:
        if con.execute(_FINGERPRINT).fetchall()[0] != fingerprint:
            raise _LedgerMoved("ledger changed since it was read")
        for u in report.order_updates:
            apply_order_update(con, u, ctx, report.now)
        if report.actions:
            apply_actions(con, report.actions, ctx, report.now)
        if report.divergence:
            _raise_divergence(con, report, ctx)


def apply_order_update(con: "duckdb.DuckDBPyConnection", u: OrderUpdate, ctx: "Context", now: datetime) -> None:
    """Record one order update inside the caller's transaction: row, fill, intent state, event."""
    from tradebook.controls import session_date
    from tradebook.intents import transition
    from tradebook.ledger import record_event
    from tradebook.positions import FillInfo, apply_fill

    r = u.row
    con.execute("UPDATE orders SET status = ?, broker_id = coalesce(?, broker_id), filled_qty = ?, "
                "filled_avg_price = ?, reject_reason = coalesce(?, reject_reason), updated_at = ? "
                "WHERE client_order_id = ?",
                [u.status, u.broker_id, u.filled_qty, u.filled_avg_price, u.reject_reason, now, r.client_order_id])
    record_event(con, f"ORDER_{u.status.upper()}", run_id=ctx.run_id, symbol=r.symbol, qty=u.filled_qty,
                 price=u.filled_avg_price, reason=u.reason, ts=now,
                 data={"client_order_id": r.client_order_id, "intent_id": r.intent_id, "from": r.status})
    if u.fill_qty > EPS:
        ts = u.fill_ts or now
        apply_fill(con, FillInfo(r.client_order_id, r.intent_id, r.symbol, r.side, u.fill_qty, u.fill_price or 0.0,
                                 ts, r.decision_price, r.confidence), ctx.params, session_date(ts), ctx.run_id)
    if u.intent_to:
        transition(con, r.intent_id, u.intent_to, reason=f"order {r.client_order_id} {u.status}: {u.reason}",
                   now=now, run_id=ctx.run_id)


def apply_actions(con: "duckdb.DuckDBPyConnection", actions: list[Action], ctx: "Context", now: datetime) -> None:
    """REC-2/3/4/6 in bulk (set-based SQL over a registered frame: 5,000 actions stay fast)."""
    import pandas as pd

    from tradebook.controls import session_date

    p = ctx.params
    frame = pd.DataFrame({
        "kind": [a.kind for a in actions], "symbol": [a.symbol for a in actions],
        "qty": [a.qty for a in actions], "price": [a.price for a in actions],
        "delta": [a.delta for a in actions], "reason": [a.reason for a in actions],
        "tier": [p.symbol_tiers.get(a.symbol) for a in actions],
        "sector": [p.symbol_sectors.get(a.symbol) for a in actions],
        "data": [json.dumps({"ledger_qty": a.ledger_qty, "ledger_price": a.ledger_price, "broker_qty": a.qty,
                             "broker_price": a.price}) for a in actions],
    })
    con.register("rec_actions", frame)
    try:
        _bulk_sql(con, now, ctx.run_id, session_date(now))
    finally:
        con.unregister("rec_actions")


def _bulk_sql(con: "duckdb.DuckDBPyConnection", now: datetime, run_id: str | None, day) -> None:
    con.execute("INSERT INTO positions (symbol, qty, avg_price, origin, opened_at, confidence, tier, sector, "
                "updated_at) SELECT symbol, qty, price, 'EXTERNAL', NULL, NULL, tier, sector, ? "
                "FROM rec_actions WHERE kind = 'BACKFILL'", [now])
    con.execute("UPDATE positions SET qty = a.qty, avg_price = a.price, updated_at = ? FROM rec_actions a "
                "WHERE a.kind = 'CORRECTION' AND positions.symbol = a.symbol", [now])
    con.execute("DELETE FROM positions WHERE symbol IN "
                "(SELECT symbol FROM rec_actions WHERE kind = 'EXTERNAL_CLOSE')")
    con.execute("INSERT OR IGNORE INTO closed_today (symbol, session_date, closed_at) "
                "SELECT symbol, ?, ? FROM rec_actions WHERE kind = 'EXTERNAL_CLOSE'", [day, now])
    con.execute("INSERT INTO trades (ts, symbol, side, qty, price, kind, realized_pnl, reason, run_id) "
                "SELECT ?, symbol, CASE WHEN delta >= 0 THEN 'buy' ELSE 'sell' END, abs(delta), "
                "price, kind, NULL, reason, ? FROM rec_actions", [now, run_id])
    con.execute("INSERT INTO events (ts, run_id, kind, symbol, qty, price, reason, data) "
                "SELECT ?, ?, 'RECONCILE_' || kind, symbol, qty, price, reason, data FROM rec_actions",
                [now, run_id])


def _raise_divergence(con: "duckdb.DuckDBPyConnection", report: ReconcileReport, ctx: "Context") -> None:
    """REC-7: incident + ALERT + REDUCE_ONLY, all in the reconcile's transaction."""
    from tradebook import alerts, controls

    detail = "; ".join(f"{a.kind} {a.symbol} ledger {a.ledger_qty:g} -> broker {a.qty:g}" for a in report.actions)
    detail = f"ledger and broker diverged on {report.checks} consecutive checks: {detail}"[:2000]
    controls.record_incident(con, "RECONCILE_DIVERGENCE", detail, report.now)
    alerts.alert(con, "DIVERGENCE", detail, params=ctx.params, run_id=ctx.run_id, now=report.now,
                 data={"symbols": [a.symbol for a in report.actions]})
    controls.reduce_only(con, f"reconcile divergence: {len(report.actions)} position(s) corrected to the broker",
                         source="reconcile", now=report.now, incident=False)
