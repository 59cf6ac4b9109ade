"""The built-in pullback swing strategy (``use: swing``, the default) on the interface.

The rules and indicators are ``tradebook.strategies.swing_rules`` (see its docstring); this class
gives them validated params and the ``Strategy`` calling convention. The backtest
also has a vectorised path for it (``tradebook.research.backtest.SwingRules``), checked
against ``generate`` day by day in the tests.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from pydantic import Field, model_validator

from tradebook.strategies import swing_rules as rules
from tradebook.strategies.base import Held, Signals, Strategy, StrategyParams

if TYPE_CHECKING:
    import pandas as pd


class SwingParams(StrategyParams):
    """Trend filter + pullback entry, trend-invalidation / bounce / time exits."""

    trend_sma: int = Field(100, ge=5, le=400)
    fast_sma: int = Field(20, ge=2, le=200)
    pullback_rsi: int = Field(2, ge=2, le=50)      # short RSI: Connors-style 2-day pullback
    rsi_entry: float = Field(30.0, ge=1, le=99)
    rsi_exit: float = Field(70.0, ge=1, le=99)
    max_hold_days: int = Field(15, ge=1, le=250)
    trend_full_pct: float = Field(0.10, gt=0.0, le=1.0)  # fast SMA this far above the trend SMA = full strength
    depth_weight: float = Field(0.6, ge=0.0, le=1.0)     # confidence = w * pullback depth + (1-w) * trend

    @model_validator(mode="after")
    def _fast_below_trend(self) -> "SwingParams":
        if self.fast_sma >= self.trend_sma:
            raise ValueError("fast_sma must be shorter than trend_sma")
        return self


class Swing(Strategy):
    """Buy sharp dips (short RSI below ``rsi_entry``) while the close is above its trend SMA."""

    Params = SwingParams
    params: SwingParams

    def history_days(self) -> int:
        return rules.min_history(self.params)

    def generate(self, bars: "pd.DataFrame", held: Mapping[str, Held]) -> Signals:
        return rules.generate(bars, self.params, {s: h.opened for s, h in held.items()})
