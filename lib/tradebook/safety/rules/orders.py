"""Rules on the order itself: GATE-5 notional bounds, GATE-6 no shorts, GATE-10 order rates."""
from __future__ import annotations

from tradebook.safety.gate import GateContext, ProposedOrder, Verdict, reject, warn
from tradebook.safety.portfolio_view import QTY_EPS, PortfolioView
from tradebook.safety.rules._common import passed, r2, rule

_PASS5, _PASS6, _PASS10 = passed("GATE-5"), passed("GATE-6"), passed("GATE-10")


@rule("GATE-5")
def order_notional(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-5: order notional between min_order_notional and max_order_notional.

    Also rejects malformed orders (INVALID_ORDER: qty or price not positive, a limit
    order without a positive limit price). An exit that closes a whole position worth
    less than the minimum passes with a DUST_EXIT warning: otherwise dust could never
    be sold.
    """
    qty, price, p = order.qty, order.price, ctx.params
    if not (qty > 0 and price > 0):
        return reject("GATE-5", "INVALID_ORDER", qty=qty, price=price)
    if order.order_type == "limit" and not (order.limit_price is not None and order.limit_price > 0):
        return reject("GATE-5", "INVALID_ORDER", limit_price=order.limit_price)
    n = qty * price
    if not n <= p.max_order_notional:
        return reject("GATE-5", "MAX_ORDER_NOTIONAL", notional=r2(n), limit=p.max_order_notional)
    if n < p.min_order_notional:
        if view.reduces(order) and qty >= abs(view.held_qty(order.symbol)) - QTY_EPS:
            return warn("GATE-5", "DUST_EXIT", notional=r2(n), limit=p.min_order_notional)
        return reject("GATE-5", "MIN_ORDER_NOTIONAL", notional=r2(n), limit=p.min_order_notional)
    return _PASS5


@rule("GATE-6")
def no_shorts(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-6: a sell may not exceed the held quantity (long-only unless shorts are allowed)."""
    if order.side != "sell" or ctx.params.allow_shorts:
        return _PASS6
    held = view.held_qty(order.symbol)
    if not order.qty <= held + QTY_EPS:
        return reject("GATE-6", "NO_SHORTS", sell_qty=order.qty, held=held)
    return _PASS6


@rule("GATE-10")
def order_rate(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-10: orders per symbol per day, per day and per execute run stay under their limits.

    Applies to exits too: the limits are a brake on runaway loops; the executor
    orders exits first so they get the run's budget. The later children of a split exit
    (EXIT-6) ride on their first part's count: one split is one order here, never cut in half.
    """
    if order.part > 1 and order.kind == "EXIT":
        return _PASS10
    p = ctx.params
    n_sym = ctx.orders_today_by_symbol.get(order.symbol, 0)
    if n_sym >= p.orders_per_symbol_day:
        return reject("GATE-10", "ORDER_RATE_SYMBOL", count=n_sym, limit=p.orders_per_symbol_day)
    if ctx.orders_today >= p.orders_per_day:
        return reject("GATE-10", "ORDER_RATE_DAY", count=ctx.orders_today, limit=p.orders_per_day)
    if ctx.orders_this_run >= p.orders_per_run:
        return reject("GATE-10", "ORDER_RATE_RUN", count=ctx.orders_this_run, limit=p.orders_per_run)
    return _PASS10
