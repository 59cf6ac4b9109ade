"""Real daily bars bundled offline: Quandl WIKI prices from the bokeh-sampledata package.

OHLC in the source are unadjusted (splits visible); ``adj_close / close`` is applied
to open/high/low/close so that series are continuous, and volume is scaled inversely.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from tradebook.errors import UnknownSymbol

if TYPE_CHECKING:
    import pandas as pd

AVAILABLE = ("AAPL", "GOOG", "IBM", "MSFT", "FB")
COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume"]


@lru_cache(maxsize=None)
def _symbol_frame(symbol: str) -> "pd.DataFrame":
    import numpy as np
    import pandas as pd
    from bokeh_sampledata import stocks

    raw = getattr(stocks, symbol)
    close = np.asarray(raw["close"], dtype=float)
    factor = np.asarray(raw["adj_close"], dtype=float) / close
    frame = pd.DataFrame({
        "symbol": symbol,
        "date": pd.to_datetime(raw["date"]).date,
        "open": np.asarray(raw["open"], dtype=float) * factor,
        "high": np.asarray(raw["high"], dtype=float) * factor,
        "low": np.asarray(raw["low"], dtype=float) * factor,
        "close": close * factor,
        "volume": np.asarray(raw["volume"], dtype=float) / factor,
    })
    # The source lists a few days twice or out of order; the simulator needs one row per day.
    return frame.drop_duplicates("date").sort_values("date").reset_index(drop=True)


def load_bars(symbols: list[str] | tuple[str, ...]) -> "pd.DataFrame":
    """Adjusted daily bars for ``symbols`` in long format (COLUMNS), sorted by symbol, date.

    The returned frame is shared between callers; copy it before mutating.
    """
    unknown = [s for s in symbols if s not in AVAILABLE]
    if unknown:
        raise UnknownSymbol(f"no bundled market data for {', '.join(unknown)}; "
                            f"the simulator knows {', '.join(AVAILABLE)}")
    return _concat(tuple(symbols)) if len(symbols) != 1 else _symbol_frame(symbols[0])


@lru_cache(maxsize=8)
def _concat(symbols: tuple[str, ...]) -> "pd.DataFrame":
    import pandas as pd

    return pd.concat([_symbol_frame(s) for s in symbols], ignore_index=True)


def closes_wide(symbols: list[str] | tuple[str, ...]) -> "pd.DataFrame":
    """Adjusted closes, one column per symbol, indexed by date (NaN before a listing)."""
    bars = load_bars(symbols)
    return bars.pivot(index="date", columns="symbol", values="close").sort_index()
