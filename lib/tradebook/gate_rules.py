"""Gate rules, one pure function per requirement (GATE-n), each with a stable reason code.

Every rule has the signature ``(order, view, ctx) -> Verdict`` and reads only its
arguments. Exits (position-reducing orders) are never blocked by exposure caps.
"""
from __future__ import annotations

from tradebook.gate import GateContext, PortfolioView, ProposedOrder, Verdict, ok, reject


def _rule(rule_id: str):
    def mark(fn):
        fn.rule_id = rule_id
        return fn
    return mark


def _reduces(order: ProposedOrder, view: PortfolioView) -> bool:
    held = view.held_qty(order.symbol)
    return order.side == "sell" and 0 < order.qty <= held


@_rule("GATE-3")
def max_position(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-3: a symbol's position after the order is at most max_position_pct of equity."""
    if _reduces(order, view):
        return ok("GATE-3")
    _, after = view.value_after(order)
    limit = ctx.params.max_position_pct * view.equity
    if after > limit:
        return reject("GATE-3", "MAX_POSITION", after=round(after, 2), limit=round(limit, 2))
    return ok("GATE-3", after=round(after, 2), limit=round(limit, 2))


@_rule("GATE-4")
def gross_exposure(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-4: gross exposure after the order (existing positions at current prices) within the cap."""
    if _reduces(order, view):
        return ok("GATE-4")
    before, after = view.value_after(order)
    gross_after = view.gross - before + after
    limit = ctx.params.max_gross_exposure_pct * view.equity
    if gross_after > limit:
        return reject("GATE-4", "GROSS_EXPOSURE", gross_after=round(gross_after, 2), limit=round(limit, 2))
    return ok("GATE-4", gross_after=round(gross_after, 2), limit=round(limit, 2))


@_rule("GATE-5")
def order_notional(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-5: order notional between min_order_notional and max_order_notional."""
    n = order.notional
    p = ctx.params
    if n > p.max_order_notional:
        return reject("GATE-5", "MAX_ORDER_NOTIONAL", notional=round(n, 2), limit=p.max_order_notional)
    if n < p.min_order_notional:
        return reject("GATE-5", "MIN_ORDER_NOTIONAL", notional=round(n, 2), limit=p.min_order_notional)
    return ok("GATE-5", notional=round(n, 2))


@_rule("GATE-6")
def no_shorts(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-6: a sell may not exceed the held quantity (long-only unless shorts are allowed)."""
    held = view.held_qty(order.symbol)
    if order.side == "sell" and order.qty > held + 1e-9 and not ctx.params.allow_shorts:
        return reject("GATE-6", "NO_SHORTS", sell_qty=order.qty, held=held)
    return ok("GATE-6")


RULES = [max_position, gross_exposure, order_notional, no_shorts]
