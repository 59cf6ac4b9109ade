"""The live gate inside a backtest (BT-1): each session's orders pass the same rules as the execute phase's.

``GateAdapter`` builds what the execute phase would build at the open plus the exit
window start: the portfolio at the open, quotes around the open, correlations as of the
previous session, the last order time per symbol, and the exchange holidays (GATE-7).
"""
from __future__ import annotations

from dataclasses import fields
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from tradebook.research.arrays import pd_ffill, rolling_correlation

if TYPE_CHECKING:
    from tradebook.params import Params
    from tradebook.research.simulator import Book, Market, Order

NY = "America/New_York"


class GateAdapter:
    """Builds the execute phase's gate inputs for a backtest session (open + exit window start)."""

    def __init__(self, market: "Market", params: "Params"):
        import numpy as np
        from zoneinfo import ZoneInfo

        from tradebook.safety.gate import GateContext

        self.m, self.p, self.tz = market, params, ZoneInfo(NY)
        self.close_ff = pd_ffill(market.close)
        days = market.dates
        weekdays = np.arange(days[0], days[-1] + 1, dtype="datetime64[D]")
        weekdays = weekdays[np.is_busday(weekdays)]
        holidays = frozenset(d.item() for d in np.setdiff1d(weekdays, days))
        names = {f.name for f in fields(GateContext)}
        self.extra: dict[str, Any] = {"non_trading_days": holidays} if "non_trading_days" in names else {}
        self.corr = rolling_correlation(self.close_ff, params.correlation_lookback_days)
        self.last_order_at: dict[str, datetime] = {}

    def _at(self, t: int, clock: time, minutes: int = 0) -> datetime:
        day = self.m.dates[t].item()
        return datetime.combine(day, clock, self.tz) + timedelta(minutes=minutes)

    def start(self, t: int, book: "Book"):
        """A GateRun for session ``t``: portfolio at the open, quotes, correlations as of t-1."""
        import numpy as np

        from tradebook.broker.base import Quote
        from tradebook.safety.gate import GateContext, GateRun
        from tradebook.safety.portfolio_view import Holding, PortfolioView

        m, p = self.m, self.p
        price = np.where(m.has_bar[t], m.open[t], self.close_ff[t - 1] if t else np.nan)
        held = np.flatnonzero(book.qty)
        holdings = {m.symbols[j]: Holding(float(book.qty[j]), float(price[j])) for j in held}
        equity = book.cash + sum(h.value for h in holdings.values())
        view = PortfolioView(equity, book.cash, holdings, p.symbol_tiers, p.symbol_sectors)
        now = self._at(t, time(9, 30), p.exit_window_start_min)
        half = p.sim.spread_bps / 2e4
        quotes = {m.symbols[j]: Quote(m.symbols[j], m.open[t, j] * (1 - half), m.open[t, j] * (1 + half), now,
                                      day_open=float(m.open[t, j]),
                                      prev_close=float(self.close_ff[t - 1, j]) if t else None)
                  for j in np.flatnonzero(m.has_bar[t])}
        corr = {}
        if t and len(held):
            c = self.corr[t - 1]
            for i, a in enumerate(m.symbols):
                for j in held:
                    if i != j and not np.isnan(c[i, j]):
                        corr[(a, m.symbols[j])] = corr[(m.symbols[j], a)] = float(c[i, j])
        ctx = GateContext(now=now, params=p, quotes=quotes, last_order_at=dict(self.last_order_at),
                          correlations=corr, **self.extra)
        return GateRun(view, ctx)

    def check(self, run: Any, t: int, order: "Order", qty: float, price: float):
        """Gate one order; returns the rejecting verdict, or None when it may fill."""
        from tradebook.safety.gate import ProposedOrder

        symbol = self.m.symbols[order.col]
        proposed = ProposedOrder(
            intent_id=f"bt-{t}-{symbol}-{order.side}", symbol=symbol, side=order.side, qty=qty,  # type: ignore[arg-type]  # str holds a Literal value
            price=price, kind=order.kind, order_type="limit", limit_price=price,  # type: ignore[arg-type]  # str holds a Literal value
            confidence=order.confidence, decision_price=float(self.m.close[order.decided, order.col]),
            decision_time=self._at(order.decided, time(16, 0), self.p.schedule.decide_after_close_min))
        result = run.check(proposed)
        if result.passed:
            self.last_order_at[symbol] = run.ctx.now
            return None
        return result.rejection
