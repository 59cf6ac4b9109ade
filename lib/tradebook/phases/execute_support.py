"""Inputs and housekeeping of the execute phase (execute.py keeps the order path itself).

- ``build_gate_run``: the gate's read-only portfolio view from broker truth (account,
  positions, open orders' remaining quantities) plus the ledger's origins, and the
  ``GateContext`` (control state, clock, quotes, today's order counts, closed-today,
  cooldowns, correlations, non-trading days).
- ``alert_missed_windows``: EXIT-3 — a planned intent whose window passed without it
  is alerted once (MISSED_WINDOW) and stays PLANNED.
- ``cancel_after_window``: unfilled day orders of planned intents are cancelled after
  their window, so nothing of a planned intent executes outside it (EXIT-1).
"""
from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from tradebook.ledger import closed_today
from tradebook.ledger import cooldowns as cooldown_store
from tradebook.ledger import events
from tradebook.ledger import orders as order_store
from tradebook.ledger import positions as position_store
from tradebook.phases import intents as it
from tradebook.errors import BrokerRejected, BrokerUnavailable, TradebookError

if TYPE_CHECKING:
    from tradebook.broker.base import Quote, Session
    from tradebook.context import Context
    from tradebook.safety.gate import GateRun
    from tradebook.safety.state import TradingState

EPS = 1e-9
MAX_LOOKBACK_DAYS = 60
# Intent ids of the second and later parts of a split exit (EXIT-6): they ride on part 1's order count.
LATER_SPLIT_PART = "-EXIT.*-part([2-9]|[1-9][0-9]+)$"


def _day(ts: datetime):
    from tradebook.sessions import session_date

    return session_date(ts)


def sessions_around(ctx: "Context", now: datetime, planned: list[it.Intent]) -> list["Session"]:
    """Sessions from the oldest planned decision (at most 60 days back) to today."""
    today = _day(now)
    starts = [_day(i.decision_time) for i in planned if i.decision_time is not None] + [today]
    start = max(min(starts), today - timedelta(days=MAX_LOOKBACK_DAYS)) - timedelta(days=1)
    return ctx.broker.calendar(start, today)


def build_gate_run(ctx: "Context", intents: list[it.Intent], now: datetime,
                   control_state: "TradingState") -> tuple["GateRun", dict[str, "Quote"], dict[str, float]]:
    """(GateRun, quotes, sellable qty by symbol) for one execute run."""
    from tradebook.safety import gate
    from tradebook.safety.portfolio_view import Holding, PortfolioView

    broker, p = ctx.broker, ctx.params
    account, positions, open_orders = _account(ctx, intents), broker.positions(), broker.open_orders()
    clock = broker.clock()
    quotes = broker.quotes(sorted({i.symbol for i in intents}))
    origins, by_symbol, closed, last = _ledger_inputs(ctx, now)
    holdings = {q.symbol: Holding(q.qty, q.market_price, origins.get(q.symbol, "EXTERNAL"))
                for q in positions if abs(q.qty) > EPS}
    view = PortfolioView(account.equity, account.buying_power, holdings, p.symbol_tiers, p.symbol_sectors)
    available = {q.symbol: q.qty for q in positions}
    for o in open_orders:  # working orders count as if filled (their exposure is committed)
        rest = o.qty - o.filled_qty
        if rest <= EPS:
            continue
        ref = o.limit_price or (quotes[o.symbol].mid if o.symbol in quotes else
                                (holdings[o.symbol].price if o.symbol in holdings else 0.0))
        view.apply(gate.ProposedOrder(o.client_order_id, o.symbol, o.side, rest, ref))
        if o.side == "sell":
            available[o.symbol] = available.get(o.symbol, 0.0) - rest
    view.buying_power = account.buying_power  # the broker already reserves buying power for open buys
    gctx = gate.GateContext(
        now=now, params=p, control_state=control_state, market_open=clock.is_open, quotes=quotes,
        orders_today_by_symbol=by_symbol, orders_today=sum(by_symbol.values()), orders_this_run=0,
        closed_today=frozenset(closed), last_order_at=last,
        correlations=_correlations(ctx, intents, list(holdings), now),
        non_trading_days=_non_trading_days(ctx, intents, now))
    return gate.GateRun(view, gctx), quotes, available


def _account(ctx: "Context", intents: list[it.Intent]):
    """The account; for a run of exits only, an unreadable account is NaN equity (BRK: the breakers
    skip that tick; the gate then rejects anything that is not reducing, and exits still go out)."""
    from tradebook.broker.base import Account

    try:
        return ctx.broker.account()
    except BrokerUnavailable:
        if not intents or any(i.kind != "EXIT" for i in intents):
            raise
        return Account(equity=float("nan"), cash=float("nan"), buying_power=0.0)


def _ledger_inputs(ctx: "Context", now: datetime):
    from zoneinfo import ZoneInfo

    today = _day(now)
    day_start = datetime.combine(today, time(0), ZoneInfo("America/New_York"))
    with ctx.ledger.connect() as con:
        origins = position_store.origins(con)
        # the later parts of a split exit ride on part 1's count (EXIT-6, gate_rules.orders)
        by_symbol = order_store.sent_since_by_symbol(con, day_start, LATER_SPLIT_PART)
        closed = closed_today.symbols(con, today)
        last = cooldown_store.last_orders(con)
    return origins, by_symbol, closed, last


def _correlations(ctx: "Context", intents: list[it.Intent], held: list[str], now: datetime) -> Any:
    """60-day return correlations of entry symbols and holdings (GATE-13); {} -> sector proxy."""
    entries = {i.symbol for i in intents if i.kind != "EXIT"}
    universe = sorted(entries | set(held))
    if not entries or len(universe) < 2:
        return {}
    try:
        from tradebook.safety.rules import correlations
    except ImportError:
        return {}
    lookback = ctx.params.correlation_lookback_days
    end = _day(now) - timedelta(days=1)
    try:
        bars = ctx.broker.daily_bars(universe, end - timedelta(days=int(lookback * 1.6) + 10), end)
    except TradebookError:
        return {}  # e.g. an EXTERNAL symbol without data: GATE-13 falls back to the sector proxy
    if bars is None or len(bars) == 0:
        return {}
    wide = bars.pivot_table(index="date", columns="symbol", values="close").sort_index()
    return correlations(wide, lookback)


def _non_trading_days(ctx: "Context", intents: list[it.Intent], now: datetime) -> frozenset:
    """Weekdays without a session between the oldest decision and today (GATE-7 age discount)."""
    today = _day(now)
    starts = [_day(i.decision_time) for i in intents if i.decision_time is not None]
    start = max(min(starts, default=today), today - timedelta(days=MAX_LOOKBACK_DAYS))
    if start >= today:
        return frozenset()
    open_days = {s.day for s in ctx.broker.calendar(start, today)}
    days = (start + timedelta(days=k) for k in range((today - start).days + 1))
    return frozenset(d for d in days if d.weekday() < 5 and d not in open_days)


def alert_missed_windows(ctx: "Context", planned: list[it.Intent], sessions: list["Session"],
                         now: datetime) -> list[str]:
    """EXIT-3: PLANNED intents whose first window passed; each is alerted once, and stays PLANNED."""
    from tradebook import alerts

    late = []
    for i in planned:
        if i.urgency == "immediate" or i.decision_time is None:
            continue
        w = it.first_window_after(sessions, i.decision_time, ctx.params)
        if w is not None and now > w[1]:
            late.append((i, w))
    if not late:
        return []
    done = ctx.ledger.read(events.values, "ALERT", "intent_id", alert="MISSED_WINDOW")
    new = [(i, w) for i, w in late if i.intent_id not in done]
    if new:
        with ctx.ledger.transaction() as con:
            for i, (start, end) in new:
                alerts.alert(con, "MISSED_WINDOW",
                             f"{i.display_state} {i.intent_id} missed its window {start:%Y-%m-%d %H:%M}-{end:%H:%M}; "
                             "it stays PLANNED for the next window", params=ctx.params, run_id=ctx.run_id, now=now,
                             data={"intent_id": i.intent_id, "symbol": i.symbol, "kind": i.kind})
    return [i.intent_id for i, _ in late]


def cancel_after_window(ctx: "Context", now: datetime) -> list[str]:
    """Cancel our still-working orders of planned intents whose window is over; record the result."""
    from tradebook.phases.order_sync import LOCAL_OPEN, open_order_rows, window_end
    from tradebook.phases.reconcile import sync_orders

    with ctx.ledger.connect() as con:
        rows = [r for r in open_order_rows(con) if r.status not in LOCAL_OPEN | {"pending_cancel"}
                and r.urgency != "immediate"]
    late = [r for r in rows if now > window_end(r, ctx)]
    asked = []
    for r in late:
        try:
            ctx.broker.cancel(r.client_order_id)
            asked.append(r)
        except BrokerRejected:
            asked.append(r)  # already final at the broker: the sync below records how it ended
        except BrokerUnavailable:
            continue         # try again at the next run
    if not asked:
        return []
    with ctx.ledger.transaction() as con:
        for r in asked:
            events.record(con, "ORDER_CANCEL_REQUESTED", run_id=ctx.run_id, symbol=r.symbol, qty=r.qty, ts=now,
                          reason="execution window over: unfilled rest of a planned order cancelled (EXIT-1)",
                          data={"client_order_id": r.client_order_id, "intent_id": r.intent_id})
    from tradebook.phases.cancel_first import wait_final

    wait_final(ctx, [r.client_order_id for r in asked])   # bounded: cancels may be asynchronous (VEN-2)
    sync_orders(ctx, [r.client_order_id for r in asked])
    return [r.client_order_id for r in asked]
