"""An example user strategy: a Donchian channel breakout (README, "Your own strategy").

Use it with ``-p strategy.use=strategies.breakout:Breakout`` or in a params file::

    strategy:
      use: strategies.breakout:Breakout
      params: {lookback: 20, exit_lookback: 10}
"""
from __future__ import annotations

from pydantic import Field

from tradebook.research import EntrySignal, ExitSignal, Signals, Strategy, StrategyParams


class Breakout(Strategy):
    """Buy a close above the highest close of the last ``lookback`` sessions; sell below the ``exit_lookback`` low."""

    class Params(StrategyParams):
        lookback: int = Field(20, ge=2, le=250)
        exit_lookback: int = Field(10, ge=2, le=250)

    def history_days(self) -> int:
        return max(self.params.lookback, self.params.exit_lookback) + 1

    def generate(self, bars, held):
        p = self.params
        entries, exits = [], []
        for symbol, frame in bars.groupby("symbol", sort=True):
            close = frame["close"].to_numpy(dtype=float)
            if len(close) <= max(p.lookback, p.exit_lookback):
                continue                                   # not enough history yet
            day, last = frame["date"].iloc[-1], float(close[-1])
            high = close[-p.lookback - 1:-1].max()
            low = close[-p.exit_lookback - 1:-1].min()
            if symbol in held and last < low:
                exits.append(ExitSignal(symbol, f"BREAKDOWN: close {last:.2f} < {p.exit_lookback}-day low {low:.2f}",
                                        last, asof=day))
            elif symbol not in held and last > high:
                strength = min(1.0, (last / high - 1.0) / 0.02)   # 2% above the channel = full confidence
                entries.append(EntrySignal(symbol, round(max(strength, 0.01), 4), last,
                                           f"BREAKOUT: close {last:.2f} > {p.lookback}-day high {high:.2f}", day))
        return Signals(entries, exits)
