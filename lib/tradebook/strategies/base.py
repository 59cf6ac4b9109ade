"""The strategy interface (STR-1): what decide, the backtest and notebooks all call.

A strategy is a Python class with its own validated parameters::

    from tradebook.research import Strategy, StrategyParams, EntrySignal, Signals

    class Breakout(Strategy):
        class Params(StrategyParams):      # pydantic; unknown keys are refused
            lookback: int = 20

        def history_days(self) -> int:     # bars each symbol needs before it can signal
            return self.params.lookback + 1

        def generate(self, bars, held):    # bars up to the session's close; what is held
            ...
            return Signals(entries=[...], exits=[...])

``bars`` is long format (symbol, date, open, high, low, close, volume), sorted by
symbol then date, holding only bars up to the decision session's close. ``held`` maps
each held symbol to a ``Held`` (quantity, average price, entry session or None when
unknown). Signals are for the last bar of each symbol: entries carry a confidence in
[0, 1], the decision price and a reason; exits a reason (and optionally urgency
"immediate" for a market order).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from pydantic import BaseModel, ConfigDict

from tradebook.errors import TradebookError
from tradebook.strategies.swing_rules import EntrySignal, ExitSignal, Signals

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EntrySignal", "ExitSignal", "Held", "Signals", "Strategy", "StrategyError", "StrategyParams",
           "check_signals"]


class StrategyError(TradebookError):
    """A strategy could not be loaded, raised, or returned malformed signals: nothing is traded that day."""

    def __init__(self, message: str, *, strategy: str, symbol: str | None = None):
        super().__init__(message)
        self.strategy, self.symbol = strategy, symbol


class StrategyParams(BaseModel):
    """Base of every strategy's parameters: frozen, unknown keys refused (like all params)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


@dataclass(frozen=True)
class Held:
    """What is held of one symbol when the strategy decides."""

    qty: float
    avg_price: float
    opened: date | None       # session of entry; None when unknown (EXTERNAL positions)


class Strategy:
    """Base class for strategies: set ``Params``, implement ``generate`` (and ``history_days``)."""

    Params: ClassVar[type[StrategyParams]] = StrategyParams
    name: str = ""
    root: "Path | None" = None       # the project root, for strategies that read project files

    def __init__(self, params: StrategyParams | Mapping[str, Any] | None = None):
        if not isinstance(params, StrategyParams):
            params = self.Params.model_validate(dict(params or {}))
        self.params = params

    @property
    def label(self) -> str:
        """The name errors and reports use: ``name`` or module:Class."""
        return self.name or f"{type(self).__module__}:{type(self).__qualname__}"

    def history_days(self) -> int:
        """Sessions of bars each symbol needs before the last one can signal."""
        return 250

    def generate(self, bars: "pd.DataFrame", held: Mapping[str, Held]) -> Signals:
        """Signals for the last bar of each symbol in ``bars`` (see the module docstring)."""
        raise NotImplementedError(f"{self.label} does not implement generate(bars, held)")


def check_signals(label: str, signals: Any, universe: set[str], held: Mapping[str, Held]) -> Signals:
    """The strategy's output, or a StrategyError naming the strategy and the offending symbol."""
    if not isinstance(signals, Signals):
        raise StrategyError(f"strategy {label} returned {type(signals).__name__}, not Signals(entries, exits)",
                            strategy=label)
    for e in signals.entries:
        symbol = getattr(e, "symbol", None)
        where = f"strategy {label}, symbol {symbol}"
        if not isinstance(e, EntrySignal):
            raise StrategyError(f"{where}: an entry must be an EntrySignal, not {type(e).__name__}",
                                strategy=label, symbol=symbol)
        problem = _entry_problem(e, universe)
        if problem:
            raise StrategyError(f"{where}: malformed entry signal: {problem}", strategy=label, symbol=symbol)
    for x in signals.exits:
        symbol = getattr(x, "symbol", None)
        if not isinstance(x, ExitSignal):
            raise StrategyError(f"strategy {label}, symbol {symbol}: an exit must be an ExitSignal, "
                                f"not {type(x).__name__}", strategy=label, symbol=symbol)
        if not isinstance(x.reason, str) or not x.reason.strip() or x.urgency not in ("normal", "immediate"):
            raise StrategyError(f"strategy {label}, symbol {symbol}: malformed exit signal: needs a reason and "
                                f"urgency 'normal' or 'immediate'", strategy=label, symbol=symbol)
    return signals


def _entry_problem(e: EntrySignal, universe: set[str]) -> str | None:
    if e.symbol not in universe:
        return "symbol has no bars in this run (not in params.symbols?)"
    if not isinstance(e.confidence, (int, float)) or not 0.0 <= float(e.confidence) <= 1.0:
        return f"confidence must be a number in [0, 1], got {e.confidence!r}"
    if not isinstance(e.price, (int, float)) or not math.isfinite(e.price) or e.price <= 0:
        return f"decision price must be a positive number, got {e.price!r}"
    if not isinstance(e.reason, str) or not e.reason.strip():
        return "reason must be a non-empty string"
    return None


def call_strategy(strategy: Strategy, bars: "pd.DataFrame", held: Mapping[str, Held]) -> Signals:
    """``strategy.generate`` checked; any exception becomes a StrategyError naming the symbol.

    When the call raises, each symbol is retried alone to find the one that breaks it.
    """
    universe = set(bars["symbol"].unique()) if len(bars) else set()
    try:
        out = strategy.generate(bars, held)
    except StrategyError:
        raise
    except Exception as exc:  # a user strategy may raise anything: the day must trade nothing
        symbol = _culprit(strategy, bars, held, universe)
        where = f", symbol {symbol}" if symbol else ""
        scope = "" if symbol or len(universe) < 2 else " for the whole call (on every symbol's bars)"
        raise StrategyError(f"strategy {strategy.label}{where} raised {type(exc).__name__}{scope}: {exc}; "
                            "nothing is traded this session", strategy=strategy.label, symbol=symbol) from exc
    return check_signals(strategy.label, out, universe, held)


def _culprit(strategy: Strategy, bars: "pd.DataFrame", held: Mapping[str, Held], universe: set[str]) -> str | None:
    """The first symbol whose bars alone make ``generate`` raise, when others do not; None when
    every symbol raises alone too (the call itself is broken: naming one symbol would mislead)."""
    if len(universe) < 2:
        return next(iter(universe), None)
    raising, calm = [], False
    for symbol in sorted(universe):
        try:
            strategy.generate(bars[bars["symbol"] == symbol].reset_index(drop=True),
                              {s: h for s, h in held.items() if s == symbol})
            calm = True
        except Exception:
            raising.append(symbol)
        if raising and calm:
            return raising[0]
    return None
