"""Research to production: the strategy interface (re-exported from ``tradebook.strategies``),
the backtest and its pieces (BT-1, RES-1); parameter sweeps and walk-forward
(``research.sweep``, ``research.walkforward``, the vectorised SMA grid ``research.grid``:
SWP-1, SWP-2).

A strategy written for this interface runs unchanged in ``tradebook backtest``, the
decide phase (``tradebook run decide``, the daemon, ``tradebook demo``) and notebooks.
"""
from tradebook.strategies.base import (EntrySignal, ExitSignal, Held, Signals, Strategy,
                                                StrategyError, StrategyParams)

__all__ = ["EntrySignal", "ExitSignal", "Held", "Signals", "Strategy", "StrategyError", "StrategyParams"]
