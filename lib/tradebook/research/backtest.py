"""Research backtest over the bundled daily bars: the live strategy and gate, fast (RES-1).

Indicators are computed once, vectorised (``tradebook.strategies.swing_rules.indicators``); a tight
event loop then walks the sessions. Each session: pending orders fill at the open
(next-bar-open fills, through the same gate as execute when ``use_gate``), then the
rules look at the close and queue orders for the next open. The equity curve is
rebuilt from the fills with array arithmetic after the loop.

Rule sets: any strategy on the interface (``tradebook.research``) through
``research.session_rules.StrategyRules``, called each session as decide calls it;
``SwingRules``, the vectorised path of the built-in swing strategy (same signals,
checked day by day in the tests) with the decide phase's own entry policy
(``positions.decide_entry``: sizing, signal threshold, POS-1..3 add-ons); and
``SmaCross`` (SMA fast/slow crossover, fixed size), the parity reference checked
against backtrader. ``run_backtest`` models costs, daily-bar stops and targets and
the account breakers (``research.frictions``, BT-1); the parity reference does not.
"""
from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, Sequence

from tradebook.research.arrays import pd_ffill
from tradebook.research.simulator import Book, Market, Order, simulate
from tradebook.research.results import BacktestResult, compare, show_compare
from tradebook.strategies.sma_cross import crossings

if TYPE_CHECKING:
    import pandas as pd

    from pathlib import Path

    from tradebook.params import Params
    from tradebook.strategies.base import Strategy
    from tradebook.strategies.swing import SwingParams

REFERENCE_SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")
__all__ = ["BacktestResult", "Market", "compare", "show_compare", "SmaCross", "SwingRules", "crossings", "run_reference",
           "run_backtest", "run_strategy"]


# --- rule sets ------------------------------------------------------------------------------
class SmaCross:
    """SMA(fast) / SMA(slow) crossover, fixed size: buy on an up-cross when flat, sell all on a down-cross.

    Crosses follow backtrader's CrossOver exactly: up when the last non-zero difference
    was negative and the difference is now positive (and vice versa).
    """

    def __init__(self, market: Market, fast: int = 20, slow: int = 50, size: float = 100.0):
        import numpy as np

        self.size = size
        up = np.zeros(market.has_bar.shape, dtype=bool)
        down = np.zeros_like(up)
        for j, r in enumerate(market.rows):
            u, d = crossings(market.close[r, j], fast, slow)
            up[r, j], down[r, j] = u, d
        self.up, self.down = up, down
        self.active = set(np.flatnonzero((up | down).any(axis=1)).tolist())

    def decide(self, t: int, book: Book) -> Sequence[Order]:
        if t not in self.active:
            return ()
        orders = []
        for j in range(len(book.market.symbols)):
            if self.up[t, j] and book.qty[j] == 0:
                orders.append(Order(j, "buy", self.size, "SMA_CROSS_UP", t))
            elif self.down[t, j] and book.qty[j] > 0:
                orders.append(Order(j, "sell", None, "SMA_CROSS_DOWN", t, kind="EXIT"))
        return orders


class SwingRules:
    """The reference swing strategy (``tradebook.strategies.swing_rules``) and the decide phase's entry policy."""

    def __init__(self, market: Market, bars: "pd.DataFrame", params: "Params", sp: "SwingParams"):
        import numpy as np

        from tradebook.strategies import swing_rules as strategy

        self.p, self.sp = params, sp
        self.table = table = strategy.indicators(bars, self.sp)
        if list(dict.fromkeys(table["symbol"])) != market.symbols or len(table) != int(market.has_bar.sum()):
            raise ValueError("build the Market from the same bars, sorted by symbol then date")
        self.entry = market.scatter(table["entry"].to_numpy(dtype=bool))
        self.conf = market.scatter(table["confidence"].to_numpy(dtype=float))
        self.exit_trend = market.scatter(table["exit_trend"].to_numpy(dtype=bool))
        self.exit_rsi = market.scatter(table["exit_rsi"].to_numpy(dtype=bool))
        self.rsi = market.scatter(table["rsi"].to_numpy(dtype=float))
        self.sma = market.scatter(table["sma_trend"].to_numpy(dtype=float))
        self.barno = np.cumsum(market.has_bar, axis=0) - 1
        self.close_ff = pd_ffill(market.close)
        self.market = market
        # EXE-5 as decide sees it in sim mode: fractional when enabled and the asset supports it.
        self.fractional = [params.fractional_enabled and s in params.sim.fractionable for s in market.symbols]

    def decide(self, t: int, book: Book) -> Sequence[Order]:
        """After the close of session ``t``: exits for held symbols, then entries by confidence."""
        from tradebook.strategies import swing_rules as strategy

        m, sp, orders = self.market, self.sp, []
        exiting = set()
        for j, start in list(book.entry_session.items()):
            if not m.has_bar[t, j]:
                continue
            held_days = int(self.barno[t, j] - self.barno[start, j])
            code = strategy.exit_code(self.exit_trend[t, j], self.exit_rsi[t, j], held_days, sp)
            if code:
                reason = strategy.exit_reason(code, rsi=self.rsi[t, j], close=m.close[t, j],
                                              sma_trend=self.sma[t, j], held_days=held_days, sp=sp)
                orders.append(Order(j, "sell", None, reason, t, kind="EXIT"))
                exiting.add(j)
        candidates = [int(j) for j in self.entry[t].nonzero()[0] if j not in exiting]
        if candidates:
            equity = book.equity_at_close(t, self.close_ff)
            n_open = int((book.qty > 0).sum())
            for j in sorted(candidates, key=lambda c: -self.conf[t, c]):
                order = self._entry(t, j, book, equity, n_open)
                if order:
                    orders.append(order)
                    n_open += order.kind == "ENTRY"
        return orders

    def _entry(self, t: int, j: int, book: Book, equity: float, n_open: int) -> Order | None:
        """The decide phase's own POS-1/POS-2/POS-3 decision (``positions.decide_entry``)."""
        from tradebook.strategies import swing_rules as strategy
        from tradebook.phases.positions import STRATEGY, LedgerPosition, decide_entry

        symbol, conf, price = self.market.symbols[j], float(self.conf[t, j]), float(self.market.close[t, j])
        held = book.qty[j]
        position = LedgerPosition(symbol, float(held), book.avg_price.get(j, 0.0), STRATEGY, None, None, None,
                                  None) if held > 0 else None
        decision = decide_entry(symbol, conf, price, position, equity=equity, params=self.p, open_positions=n_open,
                                fractional=self.fractional[j])
        if not decision.approved:
            return None
        reason = f"{decision.code}: " + strategy.entry_reason(self.rsi[t, j], price, self.sma[t, j], self.sp)
        return Order(j, "buy", decision.qty, reason, t, conf, decision.kind)


# --- entry points ---------------------------------------------------------------------------
def run_reference(symbols: Sequence[str] = REFERENCE_SYMBOLS, *, fast: int = 20, slow: int = 50,
                  size: float = 100.0, cash: float = 10_000_000.0,
                  bars: "pd.DataFrame | None" = None) -> BacktestResult:
    """The parity reference: SMA(fast/slow) crossover, fixed size, next-bar-open fills, no gate."""
    from tradebook.marketdata import load_bars

    market = Market.from_bars(bars if bars is not None else load_bars(list(symbols)))
    book = simulate(market, SmaCross(market, fast, slow, size), cash=cash)
    return BacktestResult.build(book, cash)


def run_backtest(params: "Params | None" = None, *, strategy: "Strategy | None" = None,
                 bars: "pd.DataFrame | None" = None, symbols: Sequence[str] | None = None,
                 start: date | None = None, end: date | None = None, cash: float | None = None,
                 use_gate: bool = True, frictions: bool = True, root: "Path | None" = None) -> BacktestResult:
    """Backtest strategy S with params P on bars B: the one entry point (CLI, notebooks, sweeps).

    ``strategy`` defaults to the one params choose (``params.strategy``, loaded from
    ``root``'s ``strategies/`` when user-written); ``bars`` to the store or bundled
    sample for ``symbols`` (default ``params.symbols``). Indicators warm up on all the
    bars; trading happens in [start, end]. Cash defaults to ``params.sim.starting_cash``.
    ``frictions`` turns on costs, stops/targets and breakers (BT-1).
    """
    import numpy as np

    from tradebook.params import Params
    from tradebook.research.frictions import Frictions
    from tradebook.research.session_rules import StrategyRules
    from tradebook.strategies.loader import load_strategy
    from tradebook.strategies.swing import Swing

    params = params or Params()
    strategy = strategy or load_strategy(params.strategy, root)
    if bars is None:
        from tradebook.marketdata.store import load_bars_any

        bars = load_bars_any(list(symbols or params.symbols), params, root)
    bars = bars.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    market = Market.from_bars(bars)
    first = int(np.searchsorted(market.dates, np.datetime64(start, "D"))) if start else 0
    last = int(np.searchsorted(market.dates, np.datetime64(end, "D"), side="right")) if end else None
    _require_sessions(market, first, last, start, end)
    cash = float(cash if cash is not None else params.sim.starting_cash)
    swing = type(strategy) is Swing
    rules: Any = SwingRules(market, bars, params, strategy.params) if swing else StrategyRules(market, bars, strategy, params)  # type: ignore[arg-type]  # Swing: SwingParams
    book = simulate(market, rules, cash=cash, params=params, use_gate=use_gate, start=first, end=last,
                    frictions=Frictions.from_params(params) if frictions else None)
    result = BacktestResult.build(book, cash)
    result.strategy = strategy.label
    result.strategy_errors = getattr(rules, "errors", [])
    result.closes = bars[["symbol", "date", "close"]]
    if swing:
        result.indicators = rules.table
        result.rsi_levels = (strategy.params.rsi_entry, strategy.params.rsi_exit)  # type: ignore[attr-defined]
    return result


def _require_sessions(market: Market, first: int, last: int | None, start: date | None, end: date | None) -> None:
    """An empty window is an error, not a zero-equity result that looks like a backtest (BT-1)."""
    from tradebook.errors import ConfigError

    dates = market.dates
    if len(dates) and first < (len(dates) if last is None else last):
        return
    have = f"the bars cover {str(dates[0])[:10]} → {str(dates[-1])[:10]}" if len(dates) else "there are no bars"
    raise ConfigError(f"no session to trade between {start or 'the first bar'} and {end or 'the last bar'}: {have}. "
                      "Pick --start/--end inside that range (with --start before --end), or fetch more with "
                      "`tradebook data fetch --symbols ... --start ...`")


def run_strategy(params: "Params | None" = None, *, symbols: Sequence[str] | None = None,
                 start: date | None = None, end: date | None = None, cash: float | None = None,
                 use_gate: bool = True, bars: "pd.DataFrame | None" = None, frictions: bool = True) -> BacktestResult:
    """``run_backtest`` with the strategy params choose (kept for notebooks written against it)."""
    return run_backtest(params, symbols=symbols, start=start, end=end, cash=cash, use_gate=use_gate, bars=bars,
                        frictions=frictions)
