"""The intraday monitor tick (SPEC §3; called every reconcile_interval_s by the scheduler).

One tick: light reconcile (our orders' status and fills), cancel planned orders whose
window is over, account breakers (``breakers.run_breakers`` when built), then the
protective exits of exits.py (EXIT-4, EXIT-5). Each hit becomes an urgency=immediate
EXIT intent executed at once with a market order through the same gate and crash-safe
submit path as execute. Every action is an event in the ledger.

EXIT-8/EXIT-9: an exit is sent only when its trigger is true now, on a fresh, tight
quote (a stale or wide one fires nothing and is retried next tick, with a warning);
a symbol is "busy" only while an immediate exit for it is PLANNED or has a live order
(a working planned limit exit is cancelled first, not waited for); a monitor exit left
PLANNED by an earlier tick is sent only if its trigger still holds, else it expires.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tradebook.phases import intents as it
from tradebook.ledger import events
from tradebook.phases.exits import ExitCheck, check_positions

if TYPE_CHECKING:
    from tradebook.context import Context
    from tradebook.phases.execute import ExecuteReport
    from tradebook.phases.reconcile import ReconcileReport


MAX_TRIES = 3   # protective exits of one kind per symbol per day (a refused one is not retried forever)


@dataclass
class MonitorReport:
    now: datetime
    market_open: bool
    reconcile: "ReconcileReport"
    cancelled: list[str] = field(default_factory=list)
    breaker_trips: list[Any] = field(default_factory=list)
    exits: list[ExitCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)        # symbols whose exit is under way / not allowed now
    warnings: list[str] = field(default_factory=list)       # e.g. stale or wide quote: stop not checked
    blocked_by: str | None = None                           # HALTED / FROZEN: no exit can be sent
    execution: "ExecuteReport | None" = None
    rearmed: bool = False                                   # CTL-3: an auto trip re-armed this tick

    def tables(self) -> dict[str, Any]:
        import pandas as pd

        tables = {"protective exits": pd.DataFrame([e.__dict__ for e in self.exits],
                                                   columns=list(ExitCheck.__dataclass_fields__)),
                  "breaker trips": pd.DataFrame([getattr(t, "__dict__", {"trip": str(t)}) for t in self.breaker_trips]),
                  "cancelled at window end": pd.DataFrame({"client_order_id": self.cancelled})}
        tables.update({f"reconcile: {k}": v for k, v in self.reconcile.tables().items() if k == "order updates"})
        if self.execution is not None:
            tables["exit orders"] = self.execution.tables()["intents processed"]
        return tables

    def summary(self) -> str:
        parts = [f"monitor @ {self.now:%Y-%m-%d %H:%M %Z}", f"{len(self.reconcile.order_updates)} order update(s)"]
        if self.cancelled:
            parts.append(f"{len(self.cancelled)} cancelled at window end")
        if self.breaker_trips:
            parts.append(f"{len(self.breaker_trips)} breaker trip(s)")
        if self.rearmed:
            parts.append("auto trip re-armed (CTL-3)")
        if not self.market_open:
            parts.append("market closed: no protective exits")
        else:
            parts.append(f"{len(self.exits)} protective exit(s)" +
                         (": " + ", ".join(f"{e.code} {e.symbol}" for e in self.exits) if self.exits else ""))
        if self.blocked_by:
            parts.append(f"not sent: trading is {self.blocked_by} (an operator must resume or flatten)")
        parts += [f"WARNING {w}" for w in self.warnings]
        return "; ".join(parts)


def run_monitor(ctx: "Context") -> MonitorReport:
    """One monitor tick (see the module docstring)."""
    with it.phase_session(ctx):
        return _tick(ctx)


def _tick(ctx: "Context") -> MonitorReport:
    from tradebook.phases.execute_support import cancel_after_window
    from tradebook.phases.reconcile import sync_orders

    now = ctx.now()
    report = MonitorReport(now, False, sync_orders(ctx))
    report.cancelled = cancel_after_window(ctx, now)
    report.breaker_trips = _run_breakers(ctx)
    report.rearmed = _try_rearm(ctx, now)
    clock = ctx.broker.clock()
    report.market_open = clock.is_open
    if clock.is_open:
        _protective_exits(ctx, report, clock.next_close)
    return report


def _run_breakers(ctx: "Context") -> list[Any]:
    try:
        from tradebook.safety.breakers import run_breakers
    except ModuleNotFoundError as exc:
        if exc.name != "tradebook.safety.breakers":
            raise
        return []
    return list(run_breakers(ctx) or [])


def _try_rearm(ctx: "Context", now: datetime) -> bool:
    """CTL-3: an auto trip (API circuit, divergence, session drawdown) re-arms only when healthy.

    Healthy = the broker answers and no session-drawdown trip happened this session (else
    the session stop would re-trip after every re-arm). The cooldown and the incident
    count are checked by ``controls.try_rearm``; FROZEN and HALTED never re-arm.
    """
    from tradebook.safety import controls
    from tradebook.safety.breakers import session_tripped
    from tradebook.errors import BrokerError

    if controls.effective_state(ctx.params, ctx.root, ctx.ledger).state != "REDUCE_ONLY":
        return False
    try:
        ctx.broker.account()
        healthy = True
    except BrokerError:
        healthy = False
    with ctx.ledger.connect() as con:
        healthy = healthy and not session_tripped(con, now)
    return controls.try_rearm(ctx, healthy, now)


def _protective_exits(ctx: "Context", report: MonitorReport, close: datetime) -> None:
    from tradebook.phases.execute import ExecuteReport, execute_intents, resumable
    from tradebook.phases.positions import load_positions

    from tradebook.phases.cancel_first import renew_stuck_exits
    from tradebook.ledger import intents as intent_store

    now = report.now
    renew_stuck_exits(ctx, now)
    with ctx.ledger.connect() as con:
        positions = load_positions(con)
        active = it.in_states(con, [it.PLANNED, it.SUBMITTED])
        known = intent_store.ids_with_prefix(con, f"{_day(now):%Y%m%d}-")
        # immediate intents left over (planned by decide, or a tick that died before sending) go now too
        # (flatten's own intents excepted: only flatten sends them, EXIT-8)
        leftover = [i for i in active if i.urgency == "immediate" and i.state == it.PLANNED and not it.is_flatten(i)]
        leftover += [i for i in resumable(con) if i.urgency == "immediate" and not it.is_flatten(i)]
    quotes = ctx.broker.quotes(sorted(positions)) if positions else {}
    unpriced: dict[str, str] = {}
    checks = check_positions(positions.values(), quotes, params=ctx.params, now=now, close=close, unpriced=unpriced)
    report.exits = checks
    _warn_unpriced(ctx, report, unpriced)
    intents = _plan_immediate(ctx, checks, active, known, report)
    intents += [] if report.blocked_by else _still_triggered(ctx, leftover, checks, unpriced, now)
    if intents:
        report.execution = execute_intents(ctx, intents, ExecuteReport(now, None),
                                           time.monotonic() + ctx.params.execution_timeout_s, now)


def _plan_immediate(ctx: "Context", checks: list[ExitCheck], active: list[it.Intent], known: set[str],
                    report: MonitorReport) -> list[it.Intent]:
    """Immediate EXIT intents for the checks (skipping exits already under way), in one transaction."""
    from tradebook.safety import controls
    from tradebook.phases.exit_split import parent_of

    now, out = report.now, []
    state = controls.effective_state(ctx.params, ctx.root, ctx.ledger).state
    if state in ("HALTED", "FROZEN"):   # the gate would refuse every order: say so once, plan nothing
        report.skipped = [c.symbol for c in checks]
        report.blocked_by = state
        return []
    busy = {i.symbol for i in active if i.kind == "EXIT" and i.urgency == "immediate"}
    tried = {parent_of(k) for k in known}   # the children of a split exit are one try (EXIT-6)
    tries = {c.symbol: sum(k.startswith(f"{_day(now):%Y%m%d}-{c.symbol}-EXIT-{c.code}") for k in tried)
             for c in checks}
    todo = [c for c in checks if c.symbol not in busy and tries[c.symbol] < MAX_TRIES]
    report.skipped = [c.symbol for c in checks if c not in todo]
    if not todo:
        return []
    with ctx.ledger.transaction() as con:
        for c in todo:
            iid = _free_id(_day(now), c, known)
            intent = it.Intent(iid, now, ctx.run_id, "EXIT", c.symbol, "sell", c.qty, "market", None, "immediate",
                               None, c.price, now, f"{c.code}: {c.reason}", it.PLANNED, 0, None, None, now)
            it.insert(con, intent)
            events.record(con, "EXIT_TRIGGERED", run_id=ctx.run_id, symbol=c.symbol, qty=c.qty, price=c.price, ts=now,
                          reason=f"{c.code}: {c.reason}", data={"intent_id": iid, "code": c.code})
            for old in active:  # the immediate exit replaces a planned one for the same symbol
                if old.symbol == c.symbol and old.state == it.PLANNED:
                    it.transition(con, old.intent_id, it.EXPIRED, reason=f"superseded by {iid} ({c.code})",
                                  now=now, run_id=ctx.run_id)
            out.append(intent)
    return out


def _warn_unpriced(ctx: "Context", report: MonitorReport, unpriced: dict[str, str]) -> None:
    """A position whose stop could not be checked (no usable quote) is a warning, every tick."""
    import logging

    if not unpriced:
        return
    report.warnings = [f"{s}: protective exits not checked, {why}; checked again next tick"
                       for s, why in sorted(unpriced.items())]
    for w in report.warnings:
        logging.getLogger("tradebook.phases.monitor").warning(w)
    with ctx.ledger.transaction() as con:
        for s, why in sorted(unpriced.items()):
            events.record(con, "EXIT_CHECK_SKIPPED", run_id=ctx.run_id, symbol=s, ts=report.now,
                          reason=f"no usable quote: {why}", data={"symbol": s})


def _still_triggered(ctx: "Context", leftover: list[it.Intent], checks: list[ExitCheck],
                     unpriced: dict[str, str], now: datetime) -> list[it.Intent]:
    """EXIT-8: a monitor exit planned by an earlier tick goes only while its trigger is true now.

    Unpriced now: it waits (not sent, not expired). Others (decide's or an operator's
    immediate exits) have no trigger to re-check and go as they are.
    """
    from tradebook.phases.exits import EOD_LIQUIDATION, PROFIT_TARGET, STOP_LOSS

    firing = {c.symbol for c in checks}
    codes = [f"-EXIT-{c}" for c in (STOP_LOSS, PROFIT_TARGET, EOD_LIQUIDATION)]
    keep, gone = [], []
    for i in leftover:
        if not any(code in i.intent_id for code in codes) or i.symbol in firing:
            keep.append(i)
        elif i.symbol not in unpriced and i.state == it.PLANNED:
            gone.append(i)
    if gone:
        with ctx.ledger.transaction() as con:
            for i in gone:
                it.transition(con, i.intent_id, it.EXPIRED, now=now, run_id=ctx.run_id,
                              reason="trigger no longer true on a fresh quote: not sent (EXIT-8)")
    return keep


def _day(now: datetime):
    from tradebook.sessions import session_date

    return session_date(now)


def _free_id(day, check: ExitCheck, known: set[str]) -> str:
    """A fresh deterministic id: day-symbol-EXIT-<code>[-n] (a second stop the same day gets -2)."""
    base = it.intent_id(day, check.symbol, "EXIT", check.code)
    iid, n = base, 1
    while iid in known:
        n += 1
        iid = f"{base}-{n}"
    known.add(iid)
    return iid
