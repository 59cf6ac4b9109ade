"""The reference swing strategy on daily bars: trend filter + pullback entry.

Rules (all parameters in ``SwingParams``, ``params.strategy.params`` when ``use: swing``):

* **Trend filter**: the close is above its ``trend_sma``-day simple moving average.
* **Pullback entry**: while in trend, the short RSI (``pullback_rsi`` days, Wilder
  smoothing) closes below ``rsi_entry``, i.e. a sharp dip inside an uptrend.
  Confidence in [0, 1] blends how deep the dip is (RSI far below ``rsi_entry``) with
  how strong the trend is (the ``fast_sma`` above the trend SMA; ``trend_full_pct``
  above it counts as full strength), weighted by ``depth_weight``.
* **Exits**, first match wins, each with a reason: trend invalidated (close below
  the trend SMA), the bounce is done (RSI above ``rsi_exit``), or the position is
  ``max_hold_days`` sessions old.

Every indicator is causal (a value on day t uses bars up to t only), so the
signals ``generate`` finds on the last bar of a truncated history are exactly the
ones the backtest finds on that day over the full history. Entries are also
emitted for symbols already held: decide treats those as add-on candidates and
applies POS-1/POS-2; no entry is emitted for a symbol that exits the same day.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from tradebook.strategies.swing import SwingParams as StrategyParams

EXIT_TREND = "TREND_BREAK"
EXIT_RSI = "RSI_EXIT"
EXIT_MAX_HOLD = "MAX_HOLD"
INDICATOR_COLUMNS = ["sma_trend", "sma_fast", "rsi", "uptrend", "entry", "confidence",
                     "exit_trend", "exit_rsi"]


@dataclass(frozen=True)
class EntrySignal:
    symbol: str
    confidence: float
    price: float          # the decision price: the close of ``asof``
    reason: str
    asof: date


@dataclass(frozen=True)
class ExitSignal:
    symbol: str
    reason: str
    price: float
    urgency: str = "normal"
    asof: date = field(kw_only=True)  # keyword-only so it may follow the default above

    @property
    def code(self) -> str:
        """The reason code (TREND_BREAK, RSI_EXIT, MAX_HOLD) without the numbers."""
        return self.reason.split(":", 1)[0]


@dataclass(frozen=True)
class Signals:
    entries: list[EntrySignal]
    exits: list[ExitSignal]


def min_history(sp: "StrategyParams") -> int:
    """Bars a symbol needs before it can signal (trend SMA plus RSI warm-up)."""
    return sp.trend_sma + 10 * sp.pullback_rsi


def wilder_rsi(close: "np.ndarray", period: int) -> "np.ndarray":
    """Wilder's RSI (exponential smoothing alpha=1/period, seeded with the first change)."""
    import numpy as np
    import pandas as pd

    delta = np.diff(close, prepend=np.nan)
    gains = pd.Series(np.where(delta > 0, delta, 0.0))
    losses = pd.Series(np.where(delta < 0, -delta, 0.0))
    gains[0] = losses[0] = np.nan  # no change on the first bar
    up = gains.ewm(alpha=1.0 / period, adjust=False, ignore_na=True).mean().to_numpy()
    down = losses.ewm(alpha=1.0 / period, adjust=False, ignore_na=True).mean().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + up / down)
    rsi = np.where((down == 0) & (up > 0), 100.0, rsi)
    rsi = np.where((down == 0) & (up == 0), 50.0, rsi)
    rsi[:period] = np.nan  # not enough changes yet to mean anything
    return rsi


def _one_symbol(close: "np.ndarray", sp: "StrategyParams") -> dict[str, "np.ndarray"]:
    import numpy as np
    import pandas as pd

    s = pd.Series(close)
    sma_trend = s.rolling(sp.trend_sma).mean().to_numpy()
    sma_fast = s.rolling(sp.fast_sma).mean().to_numpy()
    rsi = wilder_rsi(close, sp.pullback_rsi)
    valid = ~np.isnan(sma_trend) & ~np.isnan(rsi)
    with np.errstate(invalid="ignore"):
        uptrend = valid & (close > sma_trend)
        entry = uptrend & (rsi < sp.rsi_entry)
        depth = np.clip((sp.rsi_entry - rsi) / sp.rsi_entry, 0.0, 1.0)
        strength = np.clip((sma_fast / sma_trend - 1.0) / sp.trend_full_pct, 0.0, 1.0)
        confidence = np.where(entry, sp.depth_weight * depth + (1 - sp.depth_weight) * strength, 0.0)
        exit_trend = valid & (close < sma_trend)
        exit_rsi = valid & (rsi > sp.rsi_exit)
    return {"sma_trend": sma_trend, "sma_fast": sma_fast, "rsi": rsi, "uptrend": uptrend,
            "entry": entry & ~exit_rsi, "confidence": np.round(confidence, 4),
            "exit_trend": exit_trend, "exit_rsi": exit_rsi}


def indicators(bars: "pd.DataFrame", sp: "StrategyParams") -> "pd.DataFrame":
    """The bars (long format, sorted by symbol/date on return) with every indicator and flag.

    Columns added: INDICATOR_COLUMNS. ``entry`` and ``confidence`` are the entry rule;
    ``exit_trend`` / ``exit_rsi`` the two price-based exits (the time exit needs the
    entry date, see ``generate``).
    """
    import numpy as np
    import pandas as pd

    frame = bars.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    parts: dict[str, list[np.ndarray]] = {c: [] for c in INDICATOR_COLUMNS}
    close = frame["close"].to_numpy(dtype=float)
    bounds = np.flatnonzero(frame["symbol"].to_numpy()[1:] != frame["symbol"].to_numpy()[:-1]) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(frame)]):
        for col, values in _one_symbol(close[lo:hi], sp).items():
            parts[col].append(values)
    out = frame.copy()
    for col in INDICATOR_COLUMNS:
        out[col] = np.concatenate(parts[col]) if parts[col] else pd.Series(dtype=float)
    return out


def entry_reason(rsi: float, close: float, sma_trend: float, sp: "StrategyParams") -> str:
    """Human-readable reason stored with an entry intent."""
    return (f"PULLBACK: RSI{sp.pullback_rsi} {rsi:.1f} < {sp.rsi_entry:g} with close {close:.2f} "
            f"{(close / sma_trend - 1) * 100:+.1f}% above SMA{sp.trend_sma}")


def exit_reason(code: str, *, rsi: float, close: float, sma_trend: float, held_days: int | None,
                sp: "StrategyParams") -> str:
    """Human-readable reason stored with an exit intent; starts with the reason code."""
    if code == EXIT_TREND:
        return f"{EXIT_TREND}: close {close:.2f} < SMA{sp.trend_sma} {sma_trend:.2f}"
    if code == EXIT_RSI:
        return f"{EXIT_RSI}: RSI{sp.pullback_rsi} {rsi:.1f} > {sp.rsi_exit:g}"
    return f"{EXIT_MAX_HOLD}: held {held_days} sessions >= {sp.max_hold_days}"


def exit_code(exit_trend: bool, exit_rsi: bool, held_days: int | None, sp: "StrategyParams") -> str | None:
    """The first exit rule that fires, in priority order, or None."""
    if exit_trend:
        return EXIT_TREND
    if exit_rsi:
        return EXIT_RSI
    if held_days is not None and held_days >= sp.max_hold_days:
        return EXIT_MAX_HOLD
    return None


def generate(bars: "pd.DataFrame", sp: "StrategyParams", held: Mapping[str, date | None]) -> Signals:
    """Signals for the last bar of each symbol in ``bars`` (data up to the decision day only).

    ``held`` maps held symbols to their entry date (None when unknown, e.g. EXTERNAL:
    such positions get the price-based exits but never the time exit).
    """
    import numpy as np

    entries: list[EntrySignal] = []
    exits: list[ExitSignal] = []
    if bars is None or len(bars) == 0:
        return Signals(entries, exits)
    table = indicators(bars, sp)
    last = table.groupby("symbol", sort=True).tail(1)
    for row in last.itertuples(index=False):
        asof = row.date
        if np.isnan(row.sma_trend) or np.isnan(row.rsi):
            continue  # not enough history for this symbol yet
        held_days = None
        if row.symbol in held and held[row.symbol] is not None:
            dates = table["date"].to_numpy()[table["symbol"].to_numpy() == row.symbol]
            held_days = int(np.count_nonzero(dates > held[row.symbol]))
        code = exit_code(bool(row.exit_trend), bool(row.exit_rsi), held_days, sp) if row.symbol in held else None
        if code:
            reason = exit_reason(code, rsi=row.rsi, close=row.close, sma_trend=row.sma_trend,
                                 held_days=held_days, sp=sp)
            exits.append(ExitSignal(row.symbol, reason, float(row.close), asof=asof))
        elif row.entry:
            entries.append(EntrySignal(row.symbol, float(row.confidence), float(row.close),
                                       entry_reason(row.rsi, row.close, row.sma_trend, sp), asof))
    entries.sort(key=lambda e: (-e.confidence, e.symbol))
    return Signals(entries, exits)

