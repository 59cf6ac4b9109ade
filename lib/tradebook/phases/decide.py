"""Decide after the close: strategy signals → EXIT_PLANNED and entry / add-on intents (EXIT-1, POS-1…3).

Exits become EXIT intents (state PLANNED, shown EXIT_PLANNED) with the decision price
and time and a limit order type (market only for urgency=immediate, EXIT-2). Entries
go through the position decision tree (positions.decide_entry): new position or
add-on, each approved or rejected with a reason. Every decision is a DECISION event.

Idempotent: intent ids come from (session date, symbol, kind) and a decision already
logged for the day is not logged again, so deciding twice writes nothing new. A new
intent supersedes older PLANNED intents for the same symbol (they become EXPIRED),
so a missed window never leaves two plans for one symbol.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tradebook.phases import intents as it
from tradebook.ledger import events
from tradebook.errors import TradebookError
from tradebook.phases.positions import EPS, LedgerPosition, decide_entry, load_positions

if TYPE_CHECKING:
    import pandas as pd

    from tradebook.context import Context
    from tradebook.strategies.swing_rules import Signals


@dataclass(frozen=True)
class Decision:
    decision_id: str          # the intent id it creates (or would have created)
    symbol: str
    kind: str                 # ENTRY | ADD_ON | EXIT
    approved: bool
    code: str
    reason: str
    qty: float
    price: float
    confidence: float | None
    urgency: str = "normal"


@dataclass
class DecideReport:
    now: datetime
    day: date
    decisions: list[Decision] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    n_entry_signals: int = 0
    n_exit_signals: int = 0

    def tables(self) -> dict[str, Any]:
        import pandas as pd

        frame = pd.DataFrame([d.__dict__ for d in self.decisions], columns=list(Decision.__dataclass_fields__))
        return {"decisions": frame,
                "approved (intents)": frame[frame["approved"]],
                "rejected (with reason)": frame[~frame["approved"]],
                "superseded intents (EXPIRED)": pd.DataFrame({"intent_id": self.superseded})}

    def summary(self) -> str:
        ok = sum(d.approved for d in self.decisions)
        exits = sum(d.approved and d.kind == "EXIT" for d in self.decisions)
        return (f"decide {self.day} @ {self.now:%H:%M %Z}: {self.n_entry_signals} entry / {self.n_exit_signals} exit "
                f"signal(s); {ok} approved ({exits} EXIT_PLANNED), {len(self.decisions) - ok} rejected; "
                f"{len(self.created)} new intent(s)")


def run_decide(ctx: "Context") -> DecideReport:
    """After the close: bars → strategy.generate → intents (see the module docstring)."""
    with it.phase_session(ctx):
        return _decide(ctx)


def _decide(ctx: "Context") -> DecideReport:
    from tradebook.sessions import session_date
    from tradebook.phases.reconcile import sync_orders
    from tradebook.strategies.base import Held, StrategyError, call_strategy
    from tradebook.strategies.loader import load_strategy

    now = ctx.now()
    sync_orders(ctx)  # positions must include today's fills before deciding on them
    day = session_date(now)
    with ctx.ledger.connect() as con:
        positions = load_positions(con)
    held = {s: Held(p.qty, p.avg_price,
                    session_date(p.opened_at) if p.opened_at is not None and not p.external else None)
            for s, p in positions.items() if p.qty > EPS}
    try:  # STR-1: a strategy that cannot load, raises or returns garbage trades nothing today
        strat = load_strategy(ctx.params.strategy, ctx.root)
        bars = load_bars(ctx, sorted(set(ctx.params.symbols) | set(held)), day, strat.history_days())
        signals = call_strategy(strat, bars, held)
    except StrategyError as exc:
        _record_strategy_error(ctx, now, exc)
        raise
    return plan(ctx, signals, now)


def _record_strategy_error(ctx: "Context", now: datetime, exc: Exception) -> None:
    with ctx.ledger.transaction() as con:
        events.record(con, "STRATEGY_ERROR", run_id=ctx.run_id, symbol=getattr(exc, "symbol", None), ts=now,
                      reason=str(exc), data={"strategy": getattr(exc, "strategy", None)})


def history_start(day: date, sessions: int) -> date:
    """First calendar day to fetch so that ``sessions`` trading days (and a margin) precede ``day``."""
    return day - timedelta(days=int(sessions * 1.6) + 30)


def load_bars(ctx: "Context", symbols: list[str], day: date, sessions: int | None = None) -> "pd.DataFrame":
    """Daily bars up to and including ``day``, ``sessions`` of history (the strategy's warm-up)."""
    if sessions is None:
        from tradebook.strategies.loader import load_strategy

        sessions = load_strategy(ctx.params.strategy, ctx.root).history_days()
    start = history_start(day, sessions)
    try:
        bars = ctx.broker.daily_bars(symbols, start, day)
    except TradebookError:  # e.g. an EXTERNAL holding the data source does not know
        bars = ctx.broker.daily_bars(list(ctx.params.symbols), start, day)
    return bars[bars["date"] <= day] if len(bars) else bars


def plan(ctx: "Context", signals: "Signals", now: datetime) -> DecideReport:
    """Turn signals into decisions and PLANNED intents in one transaction."""
    from tradebook.sessions import session_date

    day = session_date(now)
    report = DecideReport(now, day, n_entry_signals=len(signals.entries), n_exit_signals=len(signals.exits))
    with ctx.ledger.connect() as con:
        positions = load_positions(con)
        active = it.in_states(con, [it.PLANNED, it.SUBMITTED])
    working = {i.symbol for i in active if i.state == it.SUBMITTED}
    exits = _decide_exits(signals, positions, working, day)
    report.decisions = exits + _decide_entries(ctx, signals, positions, working,
                                               {d.symbol for d in exits if d.approved}, day)
    _record(ctx, report, active)
    return report


def _decide_exits(signals: "Signals", positions: dict[str, LedgerPosition], working: set[str],
                  day: date) -> list[Decision]:
    out = []
    for x in signals.exits:
        urgency = "immediate" if x.urgency == "immediate" else "normal"
        pos = positions.get(x.symbol)
        d = Decision(it.intent_id(day, x.symbol, "EXIT"), x.symbol, "EXIT", False, "", x.reason,
                     pos.qty if pos else 0.0, x.price, None, urgency)
        if pos is None or pos.qty <= EPS:
            d = _set(d, False, "NOT_HELD", f"exit signal for a symbol not held: {x.reason}")
        elif x.symbol in working:
            d = _set(d, False, "ORDER_IN_FLIGHT", "an order for this symbol is still working")
        else:
            d = _set(d, True, "EXIT_PLANNED", f"{x.reason} ({'EXTERNAL' if pos.external else 'STRATEGY'} position)")
        out.append(d)
    return out


def _decide_entries(ctx: "Context", signals: "Signals", positions: dict[str, LedgerPosition], working: set[str],
                    exiting: set[str], day: date) -> list[Decision]:
    account = ctx.broker.account()
    fractional = ctx.params.fractional_enabled and account.fractional_enabled
    n_open = sum(p.qty > EPS for p in positions.values())
    out = []
    for e in signals.entries:
        pos = positions.get(e.symbol)
        kind = "ADD_ON" if pos is not None and pos.qty > EPS else "ENTRY"
        base = Decision(it.intent_id(day, e.symbol, kind), e.symbol, kind, False, "", e.reason, 0.0, e.price,
                        e.confidence)
        if e.symbol in exiting:
            out.append(_set(base, False, "EXITING", "an exit is planned for this symbol"))
            continue
        if e.symbol in working:
            out.append(_set(base, False, "ORDER_IN_FLIGHT", "an order for this symbol is still working"))
            continue
        frac = fractional and _fractionable(ctx, e.symbol)   # EXE-5: account and asset support
        d = decide_entry(e.symbol, e.confidence, e.price, pos, equity=account.equity, params=ctx.params,
                         open_positions=n_open, fractional=frac)
        n_open += d.approved and d.kind == "ENTRY"
        out.append(Decision(base.decision_id, e.symbol, kind, d.approved, d.code, f"{d.reason}; signal: {e.reason}",
                            d.qty, e.price, e.confidence))
    return out


def _fractionable(ctx: "Context", symbol: str) -> bool:
    try:
        return bool(ctx.broker.asset(symbol).fractionable)
    except TradebookError:
        return False


def _set(d: Decision, approved: bool, code: str, reason: str) -> Decision:
    return Decision(d.decision_id, d.symbol, d.kind, approved, code, reason, d.qty, d.price, d.confidence, d.urgency)


def _record(ctx: "Context", report: DecideReport, active: list[it.Intent]) -> None:
    """DECISION events (once per decision id) and intents (once per id), superseding older plans."""
    ids = [d.decision_id for d in report.decisions]
    if not ids:
        return
    logged = ctx.ledger.read(events.values, "DECISION", "decision_id", since=report.now - timedelta(days=1))
    todo = []
    for d in report.decisions:  # once per id: also when a signal list repeats a symbol
        if d.decision_id not in logged:
            logged.add(d.decision_id)
            todo.append(d)
    if not todo:
        return
    with ctx.ledger.transaction() as con:
        for d in todo:
            events.record(con, "DECISION", run_id=ctx.run_id, symbol=d.symbol, qty=d.qty, price=d.price, ts=report.now,
                          reason=f"{'APPROVED' if d.approved else 'REJECTED'} {d.code}: {d.reason}",
                          data={"decision_id": d.decision_id, "kind": d.kind, "approved": d.approved, "code": d.code,
                               "confidence": d.confidence})
            if d.approved and it.insert(con, _intent(ctx, d, report.now)):
                report.created.append(d.decision_id)
                report.superseded += _supersede(con, ctx, d, active, report.now)


def _intent(ctx: "Context", d: Decision, now: datetime) -> it.Intent:
    market = d.urgency == "immediate"
    return it.Intent(d.decision_id, now, ctx.run_id, d.kind, d.symbol, "sell" if d.kind == "EXIT" else "buy", d.qty,
                     "market" if market else "limit", None if market else d.price, d.urgency, d.confidence, d.price,
                     now, f"{d.code}: {d.reason}", it.PLANNED, 0, None, None, now)


def _supersede(con, ctx: "Context", d: Decision, active: list[it.Intent], now: datetime) -> list[str]:
    out = []
    for old in active:
        if old.symbol == d.symbol and old.state == it.PLANNED and old.intent_id != d.decision_id:
            it.transition(con, old.intent_id, it.EXPIRED, reason=f"superseded by {d.decision_id}", now=now,
                          run_id=ctx.run_id)
            out.append(old.intent_id)
    return out
