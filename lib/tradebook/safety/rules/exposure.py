"""Exposure rules on the whole portfolio at current prices after the order (seed 003 Fix #1).

GATE-3 max position, GATE-4 gross exposure, GATE-11 buying power, GATE-12 tier and
sector caps. Each reads the view's cached aggregates, so it is O(1) per order.
Position-reducing orders always pass GATE-3/4/12: exits must never be trapped by
exposure that drift created. Comparisons are written ``not value <= limit < INF`` so
that a NaN or infinite equity, price or buying power rejects instead of passing.
"""
from __future__ import annotations

from tradebook.safety.exposure import UNMAPPED, cap_of, in_buffer
from tradebook.safety.gate import GateContext, ProposedOrder, Verdict, reject, warn
from tradebook.safety.portfolio_view import PortfolioView
from tradebook.safety.rules._common import passed, r2, r4, rule

_PASS3, _PASS4, _PASS11, _PASS12 = (passed(g) for g in ("GATE-3", "GATE-4", "GATE-11", "GATE-12"))
INF = float("inf")


@rule("GATE-3")
def max_position(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-3: a symbol's position after the order is at most max_position_pct of equity."""
    if view.reduces(order):
        return _PASS3
    _, after = view.value_after(order)
    limit = ctx.params.max_position_pct * view.equity
    if not after <= limit < INF:
        return reject("GATE-3", "MAX_POSITION", after=r2(after), limit=r2(limit), equity=r2(view.equity))
    return _PASS3


@rule("GATE-4")
def gross_exposure(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-4: gross exposure after the order (existing positions at current prices) within the cap."""
    if view.reduces(order):
        return _PASS4
    gross_after = view.gross + view.exposure_delta(order)
    limit = ctx.params.max_gross_exposure_pct * view.equity
    if not gross_after <= limit < INF:
        return reject("GATE-4", "GROSS_EXPOSURE", gross_after=r2(gross_after), limit=r2(limit),
                      equity=r2(view.equity))
    return _PASS4


@rule("GATE-11")
def buying_power(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-11: a buy's notional is at most buying_power_use_pct of the buying power left."""
    if order.side != "buy":
        return _PASS11
    limit = ctx.params.buying_power_use_pct * view.buying_power
    if not order.notional <= limit < INF:
        return reject("GATE-11", "BUYING_POWER", notional=r2(order.notional), limit=r2(limit),
                      buying_power=r2(view.buying_power))
    return _PASS11


@rule("GATE-12")
def concentration(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-12: the order's tier and sector stay within their caps after the order, drift included.

    Within ``cap_buffer_pct`` of equity below a cap (cap 30%, buffer 5%: from 25%)
    the order passes with a TIER_CAP_BUFFER / SECTOR_CAP_BUFFER warning. A symbol
    without a tier, a sector, or a cap for its tier cannot be checked: entries reject.
    Caps and the warning band are tradebook.safety.exposure's, which the panel and report display.
    """
    if view.reduces(order):
        return _PASS12
    p, sym = ctx.params, order.symbol
    tier, sector = view.symbol_tier.get(sym), view.symbol_sector.get(sym)
    tier_pct = cap_of("tier", tier if tier is not None else UNMAPPED, p)
    if tier_pct is None or sector is None:
        return reject("GATE-12", "UNMAPPED_SYMBOL", tier=tier, sector=sector,
                      tier_has_cap=tier_pct is not None)
    equity, delta = view.equity, view.exposure_delta(order)
    tier_after, tier_cap = view.by_tier.get(tier, 0.0) + delta, tier_pct * equity
    if not tier_after <= tier_cap < INF:
        return reject("GATE-12", "TIER_CAP", tier=tier, after=r2(tier_after), cap=r2(tier_cap),
                      after_pct=r4(tier_after / equity) if equity else None)
    sector_after, sector_cap = view.by_sector.get(sector, 0.0) + delta, p.sector_cap_pct * equity
    if not sector_after <= sector_cap < INF:
        return reject("GATE-12", "SECTOR_CAP", sector=sector, after=r2(sector_after), cap=r2(sector_cap),
                      after_pct=r4(sector_after / equity) if equity else None)
    buffer = p.cap_buffer_pct * equity
    if in_buffer(tier_after, tier_cap, buffer):
        return warn("GATE-12", "TIER_CAP_BUFFER", tier=tier, after=r2(tier_after), cap=r2(tier_cap))
    if in_buffer(sector_after, sector_cap, buffer):
        return warn("GATE-12", "SECTOR_CAP_BUFFER", sector=sector, after=r2(sector_after), cap=r2(sector_cap))
    return _PASS12
