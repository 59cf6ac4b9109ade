"""Prices inside the simulator: replayed adjusted daily bars and a seeded intraday path.

Each (symbol, session) gets one price per session minute, k = 0 (the open) .. n (the
close): open -> first extreme -> second extreme -> close, piecewise linear, the order
of high and low chosen by a seeded coin, plus a little seeded noise clipped to
[low, high]. The path touches the day's high and low exactly, so a limit order fills
in the simulator only if it would have been crossed by the real day's range.
Everything is derived from (seed, symbol, day): no state, identical in every process.
Before a session opens the price is the previous close; after it closes, the close.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from tradebook import sessions
from tradebook.broker.base import Quote

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

NOISE_OF_RANGE = 0.03   # noise sigma as a fraction of the day's high-low range


@dataclass(frozen=True, eq=False)
class SymbolBars:
    """One symbol's adjusted bars as plain lists (fast scalar lookups)."""

    symbol: str
    days: list[date]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    index: dict[date, int]


@dataclass(frozen=True, slots=True)
class Bar:
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True, slots=True)
class PricePoint:
    """The mid price at an instant, with the reference session's open and previous close."""

    mid: float
    day_open: float | None
    prev_close: float | None


@lru_cache(maxsize=None)
def symbol_bars(symbol: str) -> SymbolBars:
    """The symbol's adjusted bars (loaded once per process; UnknownSymbol if not bundled)."""
    from tradebook.marketdata import load_bars

    frame = load_bars([symbol])
    days = list(frame["date"])
    return SymbolBars(symbol, days, frame["open"].tolist(), frame["high"].tolist(),
                      frame["low"].tolist(), frame["close"].tolist(),
                      {d: i for i, d in enumerate(days)})


def close_before(bars: SymbolBars, day: date) -> float | None:
    """The last close strictly before ``day`` (None before the first bar)."""
    import bisect

    i = bisect.bisect_left(bars.days, day) - 1
    return bars.close[i] if i >= 0 else None


def bar_on(bars: SymbolBars, day: date) -> Bar | None:
    """The day's bar; a flat bar at the last close for a session without data; None before listing."""
    i = bars.index.get(day)
    if i is not None:
        return Bar(bars.open[i], bars.high[i], bars.low[i], bars.close[i])
    last = close_before(bars, day)
    return None if last is None else Bar(last, last, last, last)


def has_data(symbol: str, day: date) -> bool:
    """True when ``day`` lies within the symbol's bundled history (it is tradable that day)."""
    bars = symbol_bars(symbol)
    return bars.days[0] <= day <= bars.days[-1]


@lru_cache(maxsize=8192)
def day_path(symbol: str, day: date, minutes: int, seed: int) -> "np.ndarray":
    """Mid prices for session minutes 0..minutes (open .. close) of one day; read-only."""
    import numpy as np

    bar = bar_on(symbol_bars(symbol), day)
    if bar is None:
        raise ValueError(f"no price for {symbol} on {day}")
    # crc32, not hash(): the path must be identical in every process.
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode()), day.toordinal()])
    lo, hi = min(bar.low, bar.open, bar.close), max(bar.high, bar.open, bar.close)
    high_first = rng.random() < 0.5
    n = max(minutes, 4)
    t1 = int(rng.uniform(0.05, 0.45) * n) or 1
    t2 = max(int(rng.uniform(0.55, 0.95) * n), t1 + 1)
    x1, x2 = (hi, lo) if high_first else (lo, hi)
    grid = np.arange(n + 1)
    path = np.interp(grid, [0, t1, t2, n], [bar.open, x1, x2, bar.close])
    noise = rng.normal(0.0, NOISE_OF_RANGE * (hi - lo), n + 1)
    noise[[0, t1, t2, n]] = 0.0  # keep open, high, low and close exact
    path = np.clip(path + noise, lo, hi)[: minutes + 1]
    path.setflags(write=False)
    return path


def session_minutes(i: int) -> int:
    """Number of whole minutes in session ``i`` (390, or 210 on a half day)."""
    t = sessions.table()
    return (t.closes[i] - t.opens[i]) // 60


def price_at(symbol: str, ts: float, seed: int) -> PricePoint | None:
    """The mid at epoch second ``ts`` (None before the symbol has any data)."""
    t = sessions.table()
    i = t.opened_by(ts)
    if i < 0:
        return None
    day = t.days[i]
    bars = symbol_bars(symbol)
    bar = bar_on(bars, day)
    if bar is None:
        return None
    prev_close = close_before(bars, day)
    if ts >= t.closes[i]:
        return PricePoint(bar.close, bar.open, prev_close)
    minutes = session_minutes(i)
    k = min(int((ts - t.opens[i]) // 60), minutes)
    return PricePoint(float(day_path(symbol, day, minutes, seed)[k]), bar.open, prev_close)


def bid_ask(mid: float, spread_bps: float) -> tuple[float, float]:
    """Bid and ask around ``mid``, each half the spread away."""
    half = mid * spread_bps / 2e4
    return mid - half, mid + half


def quote(symbol: str, at: datetime, seed: int, spread_bps: float) -> Quote | None:
    """The simulated quote at ``at`` (None before the symbol has any data)."""
    point = price_at(symbol, sessions.epoch(at), seed)
    if point is None:
        return None
    bid, ask = bid_ask(point.mid, spread_bps)
    return Quote(symbol, bid, ask, at, point.day_open, point.prev_close)


def bars_through(symbols: list[str], start: date, last: date) -> "pd.DataFrame":
    """Adjusted daily bars with start <= date <= last, long format (marketdata.COLUMNS)."""
    import bisect

    import pandas as pd

    from tradebook.marketdata import COLUMNS, load_bars

    parts = []
    for symbol in symbols:
        frame, days = load_bars([symbol]), symbol_bars(symbol).days
        parts.append(frame.iloc[bisect.bisect_left(days, start):bisect.bisect_right(days, last)])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
