"""Rules on what the portfolio already holds: GATE-13 correlation, GATE-14 re-entry / cooldown /
max concurrent positions (POS-3). Position-reducing exits pass both."""
from __future__ import annotations

from tradebook.safety.gate import GateContext, ProposedOrder, Verdict, reject
from tradebook.safety.portfolio_view import QTY_EPS, PortfolioView
from tradebook.safety.rules._common import passed, r2, r4, rule
from tradebook.safety.rules.correlation import correlation_index

_PASS13, _PASS14 = passed("GATE-13"), passed("GATE-14")


@rule("GATE-13")
def correlation(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-13: no new position whose return correlation with a holding exceeds correlation_limit.

    Fallback when the symbol has no correlation data (not in ctx.correlations): sector
    as the proxy. A new position is rejected when its sector already holds at least
    half of the sector cap -- two names in one sector tend to move together, and half
    the cap is where a second correlated bet starts to dominate the sector budget,
    while a sector with little exposure still admits a first diversifying name.
    """
    sym = order.symbol
    h = view.holdings.get(sym)
    if (h is not None and abs(h.qty) > QTY_EPS) or view.reduces(order):
        return _PASS13  # only *new* positions; add-ons are capped by GATE-3/12
    p = ctx.params
    index = correlation_index(ctx.correlations, p.correlation_limit) if ctx.correlations else None
    if index is not None and sym in index.symbols:
        for other, c in index.neighbours.get(sym, ()):
            held = view.holdings.get(other)
            if held is not None and abs(held.qty) > QTY_EPS:
                return reject("GATE-13", "CORRELATION", other=other, corr=r4(c), limit=p.correlation_limit)
        return _PASS13
    sector = view.symbol_sector.get(sym)
    if sector is None:
        return _PASS13  # unmapped: GATE-12 rejects the entry
    half_cap = 0.5 * p.sector_cap_pct * view.equity
    exposure = view.by_sector.get(sector, 0.0)
    if exposure > 0.0 and not exposure < half_cap:
        return reject("GATE-13", "CORRELATION", proxy="sector", sector=sector, exposure=r2(exposure),
                      half_cap=r2(half_cap))
    return _PASS13


@rule("GATE-14")
def reentry(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-14: REENTRY (closed today), COOLDOWN (an order on the symbol within
    cooldown_minutes_per_ticker), MAX_CONCURRENT (a new symbol at max_concurrent_positions)."""
    if view.reduces(order):
        return _PASS14
    sym, p = order.symbol, ctx.params
    if sym in ctx.closed_today:
        return reject("GATE-14", "REENTRY", symbol=sym)
    last = ctx.last_order_at.get(sym)
    if last is not None:
        minutes = (ctx.now - last).total_seconds() / 60.0
        if minutes < p.cooldown_minutes_per_ticker:
            return reject("GATE-14", "COOLDOWN", minutes_since=round(minutes, 1),
                          cooldown=p.cooldown_minutes_per_ticker)
    if abs(view.held_qty(sym)) <= QTY_EPS and view.n_positions >= p.max_concurrent_positions:
        return reject("GATE-14", "MAX_CONCURRENT", positions=view.n_positions,
                      limit=p.max_concurrent_positions)
    return _PASS14
