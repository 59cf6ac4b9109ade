"""Rules on market data: GATE-7 signal freshness, GATE-8 slippage, GATE-9 spread and daily move.

Entries are rejected on stale or moved markets. Position-reducing exits are only
warned by GATE-7 and GATE-9: a planned exit that missed its window stays valid
for the next one (EXIT-3), and a symbol that gapped down 10% is exactly the one
to get out of.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from tradebook.safety.gate import GateContext, ProposedOrder, Verdict, reject, warn
from tradebook.safety.portfolio_view import PortfolioView
from tradebook.safety.rules._common import passed, r4, rule

EXCHANGE_TZ = ZoneInfo("America/New_York")
_PASS7, _PASS8, _PASS9 = passed("GATE-7"), passed("GATE-8"), passed("GATE-9")
_MAX_DISCOUNT_SPAN_DAYS = 31  # beyond a month an intent is stale whatever the calendar says


def planned_age_hours(decision_time: datetime, now: datetime, non_trading_days: frozenset[date]) -> float:
    """Age of a planned intent in hours, not counting whole weekend days and exchange holidays.

    Friday 16:15 -> Monday 09:35 is 17.3 h (Saturday and Sunday are not counted),
    so Friday's plan is as fresh on Monday as Thursday's is on Friday.
    """
    age = (now - decision_time).total_seconds() / 3600.0
    d0, d1 = decision_time.astimezone(EXCHANGE_TZ).date(), now.astimezone(EXCHANGE_TZ).date()
    span = (d1 - d0).days
    if span < 2 or span > _MAX_DISCOUNT_SPAN_DAYS:
        return age
    skipped = 0
    for k in range(1, span):
        day = d0 + timedelta(days=k)
        skipped += day.weekday() >= 5 or day in non_trading_days
    return age - 24.0 * skipped


def _staleness(order: ProposedOrder, ctx: GateContext) -> dict | None:
    """Why the signal behind the order is too old (or unverifiable), or None when it is fresh."""
    dt, p = order.decision_time, ctx.params
    if dt is None or order.decision_price is None or not order.decision_price > 0:
        return {"missing": "decision_time" if dt is None else "decision_price"}
    age_s = (ctx.now - dt).total_seconds()
    if age_s < -p.stale_signal_seconds:  # decided "in the future": a clock is wrong
        return {"age_s": round(age_s, 1), "problem": "decision_time is in the future"}
    if order.intraday:
        if age_s > p.stale_signal_seconds:
            return {"age_s": round(age_s, 1), "limit_s": p.stale_signal_seconds}
        return None
    if age_s <= p.max_signal_age_hours * 3600.0:
        return None
    age_h = planned_age_hours(dt, ctx.now, ctx.non_trading_days)
    if age_h > p.max_signal_age_hours:
        return {"age_h": round(age_h, 2), "limit_h": p.max_signal_age_hours}
    return None


def _gap(order: ProposedOrder, ctx: GateContext) -> dict | None:
    """How far the price moved from the decision price, when more than max_gap_pct."""
    q = ctx.quotes.get(order.symbol)
    current = q.mid if q is not None and q.bid > 0 else order.price
    gap = abs(current / order.decision_price - 1.0)  # decision_price > 0: checked by _staleness
    if not gap <= ctx.params.max_gap_pct:
        return {"gap": r4(gap), "limit": ctx.params.max_gap_pct, "decision_price": order.decision_price,
                "current": current}
    return None


@rule("GATE-7")
def signal_freshness(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-7: STALE_SIGNAL (intraday > stale_signal_seconds, planned > max_signal_age_hours)
    and PRICE_GAP (moved > max_gap_pct since the decision price). Exits: warning only."""
    # Fast path (every order of a run): fresh by raw age and no gap. Anything else, including
    # a planned intent only fresh after the weekend discount, takes the explaining path.
    dt, dp, p = order.decision_time, order.decision_price, ctx.params
    if dt is not None and dp is not None and dp > 0:
        age_s = (ctx.now - dt).total_seconds()
        limit_s = p.stale_signal_seconds if order.intraday else p.max_signal_age_hours * 3600.0
        if -p.stale_signal_seconds <= age_s <= limit_s:
            q = ctx.quotes.get(order.symbol)
            current = (q.bid + q.ask) * 0.5 if q is not None and q.bid > 0 else order.price
            if abs(current / dp - 1.0) <= p.max_gap_pct:
                return _PASS7
    return _freshness_verdict(order, view, ctx)


def _freshness_verdict(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-7 in full: which problem (with its numbers), rejected for entries, warned for exits."""
    stale = _staleness(order, ctx)
    problem = ("STALE_SIGNAL", stale) if stale is not None else None
    if problem is None:
        gap = _gap(order, ctx)
        if gap is None:
            return _PASS7
        problem = ("PRICE_GAP", gap)
    code, detail = problem
    if view.reduces(order):
        return warn("GATE-7", code, **detail)
    return reject("GATE-7", code, **detail)


@rule("GATE-8")
def slippage(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-8: a limit price within max_slip_pct of the current quote's mid; NO_QUOTE without one.

    Market orders have no price bound, so only urgency=immediate exits may use them
    (EXIT-2; else MARKET_ORDER); such an exit without a quote is warned, not blocked.
    A quote older than stale_signal_seconds is not a current quote.
    """
    q = ctx.quotes.get(order.symbol)
    q_problem: dict[str, object] | None
    if q is not None and (ctx.now - q.ts).total_seconds() > ctx.params.stale_signal_seconds:
        q_problem = {"quote_age_s": round((ctx.now - q.ts).total_seconds(), 1)}
    elif q is None or not (q.bid > 0 and q.ask >= q.bid):
        q_problem = {"quote": None if q is None else f"bid={q.bid} ask={q.ask}"}
    else:
        q_problem = None
    if order.order_type == "market":
        if order.urgency != "immediate" or not view.reduces(order):
            return reject("GATE-8", "MARKET_ORDER", urgency=order.urgency, kind=order.kind)
        return warn("GATE-8", "NO_QUOTE", **q_problem) if q_problem else _PASS8
    if q_problem is not None:
        return reject("GATE-8", "NO_QUOTE", **q_problem)
    mid, limit = (q.bid + q.ask) * 0.5, order.limit_price
    if limit is None:  # malformed: GATE-5 rejects it with INVALID_ORDER
        return reject("GATE-8", "NO_LIMIT_PRICE")
    slip = abs(limit - mid) / mid
    if not slip <= ctx.params.max_slip_pct:
        return reject("GATE-8", "SLIPPAGE", limit_price=limit, mid=round(mid, 4), slip=r4(slip),
                      limit=ctx.params.max_slip_pct)
    return _PASS8


@rule("GATE-9")
def market_quality(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-9: SPREAD wider than spread_limit_bps, or SYMBOL_MOVE more than symbol_move_limit_pct
    today (from the day's open or the previous close, whichever is larger). Exits: warning only.
    Without a quote this rule has nothing to judge (GATE-8 owns NO_QUOTE)."""
    q = ctx.quotes.get(order.symbol)
    if q is None:
        return _PASS9
    p, bid, ask = ctx.params, q.bid, q.ask
    mid = (bid + ask) / 2.0
    spread = (ask - bid) / mid * 1e4 if mid > 0 else float("inf")
    if not spread <= p.spread_limit_bps:
        code, detail = "SPREAD", {"spread_bps": round(spread, 1), "limit_bps": p.spread_limit_bps}
    else:
        move = _day_move(mid, q.day_open, q.prev_close)
        if move is None or move <= p.symbol_move_limit_pct:
            return _PASS9
        code, detail = "SYMBOL_MOVE", {"move": r4(move), "limit": p.symbol_move_limit_pct,
                                       "day_open": q.day_open, "prev_close": q.prev_close}
    if view.reduces(order):
        return warn("GATE-9", code, **detail)
    return reject("GATE-9", code, **detail)


def _day_move(mid: float, day_open: float | None, prev_close: float | None) -> float | None:
    """Largest absolute move of ``mid`` from the references we have (None without any)."""
    move = None
    if day_open is not None and day_open > 0:
        move = abs(mid / day_open - 1.0)
    if prev_close is not None and prev_close > 0:
        from_close = abs(mid / prev_close - 1.0)
        # written so that a NaN move is kept (and rejects) rather than dropped by max()
        move = from_close if move is None or not move >= from_close else move
    return move
