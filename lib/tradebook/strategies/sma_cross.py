"""The SMA crossover on the interface (``use: sma_cross``): the backtrader parity reference.

Entry when SMA(fast) crosses above SMA(slow) on the last bar (confidence 1: sizing is
the decide phase's POS-1), exit when it crosses below. Crossings are
``crossings`` below, the exact backtrader CrossOver semantics the
parity test checks (tests/test_backtest_parity.py).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping

from pydantic import Field, model_validator

from tradebook.strategies.base import EntrySignal, ExitSignal, Held, Signals, Strategy, StrategyParams

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class SmaCrossParams(StrategyParams):
    fast: int = Field(20, ge=1, le=400)
    slow: int = Field(50, ge=2, le=1000)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> "SmaCrossParams":
        if self.fast >= self.slow:
            raise ValueError("fast must be shorter than slow")
        return self


class SmaCrossover(Strategy):
    """Buy the up-cross of SMA(fast) over SMA(slow), sell the down-cross."""

    Params = SmaCrossParams
    params: SmaCrossParams

    def history_days(self) -> int:
        # Crossings need the previous non-zero difference: a generous window keeps it found.
        return self.params.slow * 2 + 10

    def generate(self, bars: "pd.DataFrame", held: Mapping[str, Held]) -> Signals:
        entries, exits = [], []
        for symbol, frame in bars.groupby("symbol", sort=True):
            close = frame["close"].to_numpy(dtype=float)
            up, down = crossings(close, self.params.fast, self.params.slow)
            if not len(close):
                continue
            day, price = frame["date"].iloc[-1], float(close[-1])
            label = f"SMA{self.params.fast}/SMA{self.params.slow}"
            if down[-1] and symbol in held:
                exits.append(ExitSignal(symbol, f"SMA_CROSS_DOWN: {label} crossed down", price, asof=day))
            elif up[-1] and symbol not in held:
                entries.append(EntrySignal(symbol, 1.0, price, f"SMA_CROSS_UP: {label} crossed up", day))
        return Signals(entries, exits)


def crossings(close: "np.ndarray", fast: int, slow: int) -> tuple["np.ndarray", "np.ndarray"]:
    """(up, down) crossover flags of SMA(fast) over SMA(slow) for one symbol's closes."""
    import numpy as np
    import pandas as pd

    s = pd.Series(close)
    diff = (s.rolling(fast).mean() - s.rolling(slow).mean()).to_numpy(copy=True)
    # Rolling sums drift by a few ulps; where the sign could hinge on that, recompute the
    # means exactly rounded (math.fsum, as backtrader does) so crossings match bit for bit.
    close_call = np.flatnonzero(np.abs(diff) <= 1e-9 * np.abs(close))
    for i in close_call:
        diff[i] = math.fsum(close[i - fast + 1:i + 1]) / fast - math.fsum(close[i - slow + 1:i + 1]) / slow
    up = np.zeros(len(close), dtype=bool)
    down = np.zeros_like(up)
    if len(close) <= slow:
        return up, down
    nzd = pd.Series(np.where(diff == 0, np.nan, diff)).ffill().to_numpy(copy=True)
    nzd[slow - 1] = diff[slow - 1]  # the seed keeps a zero, like NonZeroDifference.nextstart
    prev, now = nzd[slow - 1:-1], diff[slow:]
    up[slow:] = (prev < 0) & (now > 0)
    down[slow:] = (prev > 0) & (now < 0)
    return up, down
