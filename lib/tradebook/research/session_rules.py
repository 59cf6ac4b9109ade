"""Any ``Strategy`` in the backtest, called exactly as the decide phase calls it (STR-3).

Each session the strategy gets the same window of bars decide would fetch (from
``decide.history_start``: the strategy's ``history_days`` plus a margin) for the
params' symbols and what is held, and what is held. Its signals then go through the
decide phase's own rules: exits for held symbols, entries in the strategy's order,
no entry for a symbol exiting, POS-1..3 sizing (``positions.decide_entry``). A
StrategyError on a session trades nothing that session and is kept in ``errors``.
"""
from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Sequence

from tradebook.research.arrays import pd_ffill
from tradebook.research.simulator import Book, Market, Order
from tradebook.strategies.base import Held, StrategyError, call_strategy

if TYPE_CHECKING:
    import pandas as pd

    from tradebook.params import Params
    from tradebook.strategies.base import Strategy


class StrategyRules:
    """Backtest rules that call ``strategy.generate`` after every close."""

    def __init__(self, market: Market, bars: "pd.DataFrame", strategy: "Strategy", params: "Params"):
        import numpy as np

        from tradebook.research.arrays import to_days

        self.market, self.strategy, self.p = market, strategy, params
        self.bars = bars.reset_index(drop=True)
        self.days = to_days(self.bars["date"])
        symbols = self.bars["symbol"].to_numpy()
        bounds = np.flatnonzero(symbols[1:] != symbols[:-1]) + 1
        self.spans = list(zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(self.bars)].tolist()))
        self.warmup = int(strategy.history_days())
        self.close_ff = pd_ffill(market.close)
        self.fractional = [params.fractional_enabled and s in params.sim.fractionable for s in market.symbols]
        self.universe = set(params.symbols)
        self.errors: list[tuple[date, str]] = []

    def window(self, t: int, held_cols: Sequence[int]) -> "pd.DataFrame":
        """The bars decide would load on session ``t``: params' symbols and held ones, up to the close."""
        import numpy as np

        from tradebook.phases.decide import history_start

        day = self.market.dates[t].item()
        lo_day = np.datetime64(history_start(day, self.warmup), "D")
        wanted = self.universe | {self.market.symbols[j] for j in held_cols}
        idx = []
        for j, (lo, hi) in enumerate(self.spans):
            if self.market.symbols[j] in wanted:
                d = self.days[lo:hi]
                a, b = np.searchsorted(d, lo_day), np.searchsorted(d, self.market.dates[t], side="right")
                idx.append(np.arange(lo + a, lo + b))
        return self.bars.iloc[np.concatenate(idx) if idx else []]

    def decide(self, t: int, book: Book) -> Sequence[Order]:
        """After the close of session ``t``: the strategy's signals through decide's rules."""
        import numpy as np

        m = self.market
        held_cols = np.flatnonzero(book.qty > 0).tolist()
        held = {m.symbols[j]: Held(float(book.qty[j]), book.avg_price.get(j, 0.0),
                                   m.dates[book.entry_session[j]].item() if j in book.entry_session else None)
                for j in held_cols}
        try:
            signals = call_strategy(self.strategy, self.window(t, held_cols), held)
        except StrategyError as exc:
            self.errors.append((m.dates[t].item(), str(exc)))
            return ()
        col = {s: j for j, s in enumerate(m.symbols)}
        orders, exiting = [], set()
        for x in signals.exits:
            if x.symbol in held and x.symbol not in exiting:
                orders.append(Order(col[x.symbol], "sell", None, x.reason, t, kind="EXIT"))
                exiting.add(x.symbol)
        equity = book.equity_at_close(t, self.close_ff)
        n_open = len(held_cols)
        for e in signals.entries:
            if e.symbol in exiting or e.symbol not in col:
                continue
            order = self._entry(t, col[e.symbol], e, book, equity, n_open)
            if order:
                orders.append(order)
                n_open += order.kind == "ENTRY"
        return orders

    def _entry(self, t: int, j: int, e, book: Book, equity: float, n_open: int) -> Order | None:
        from tradebook.phases.positions import STRATEGY, LedgerPosition, decide_entry

        held = float(book.qty[j])
        position = (LedgerPosition(e.symbol, held, book.avg_price.get(j, 0.0), STRATEGY, None, None, None, None)
                    if held > 0 else None)
        d = decide_entry(e.symbol, float(e.confidence), float(e.price), position, equity=equity, params=self.p,
                         open_positions=n_open, fractional=self.fractional[j])
        if not d.approved:
            return None
        return Order(j, "buy", d.qty, f"{d.code}: {e.reason}", t, float(e.confidence), d.kind)
