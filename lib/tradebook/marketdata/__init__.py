"""Real daily bars bundled offline: Quandl WIKI prices from the bokeh-sampledata package.

OHLC in the source are unadjusted (splits visible); ``adj_close / close`` is applied
to open/high/low/close so that series are continuous, and volume is scaled inversely.

When a data store is in use (``use_store``, set by the sim broker from ``params.data``),
a symbol fetched into it (``tradebook data fetch``) is replayed from the store instead,
after ``marketdata.store`` checks it (DATA-1).
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from tradebook.errors import UnknownSymbol

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

AVAILABLE = ("AAPL", "GOOG", "IBM", "MSFT", "FB")
COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume"]
_STORE: list[str] = []   # the data store folder in use (empty: bundled sample only)


def use_store(folder: "str | Path | None") -> bool:
    """Replay symbols found in this store folder (None: bundled sample only); True if that changed."""
    new = [str(folder)] if folder else []
    changed = new != _STORE
    _STORE[:] = new
    return changed


def _stored(symbol: str) -> "str | None":
    from pathlib import Path

    if _STORE and (Path(_STORE[0]) / f"{symbol}.parquet").exists():
        return _STORE[0]
    return None


@lru_cache(maxsize=64)
def _store_frame(folder: str, symbol: str, mtime: float) -> "pd.DataFrame":
    from pathlib import Path

    from tradebook.marketdata.store import DataStoreError, check_frame, read_symbol

    frame = read_symbol(Path(folder), symbol)
    problems = check_frame(frame)
    if problems:
        raise DataStoreError(f"stored bars for {symbol} in {folder} fail the checks: {'; '.join(problems)}; "
                             "nothing is replayed from them (fix with `tradebook data fetch` or remove the file)")
    return frame.reset_index(drop=True)


def _frame(symbol: str) -> "pd.DataFrame":
    import os

    folder = _stored(symbol)
    if folder is None:
        return _symbol_frame(symbol)
    return _store_frame(folder, symbol, os.path.getmtime(os.path.join(folder, f"{symbol}.parquet")))


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
    unknown = [s for s in symbols if s not in AVAILABLE and _stored(s) is None]
    if unknown:
        raise UnknownSymbol(f"no bundled market data for {', '.join(unknown)}; "
                            f"the simulator knows {', '.join(AVAILABLE)} and what `tradebook data fetch` stored")
    if len(symbols) == 1:
        return _frame(symbols[0])
    if any(_stored(s) for s in symbols):
        import pandas as pd

        return pd.concat([_frame(s) for s in symbols], ignore_index=True)
    return _concat(tuple(symbols))


@lru_cache(maxsize=8)
def _concat(symbols: tuple[str, ...]) -> "pd.DataFrame":
    import pandas as pd

    return pd.concat([_symbol_frame(s) for s in symbols], ignore_index=True)


def closes_wide(symbols: list[str] | tuple[str, ...]) -> "pd.DataFrame":
    """Adjusted closes, one column per symbol, indexed by date (NaN before a listing)."""
    bars = load_bars(symbols)
    return bars.pivot(index="date", columns="symbol", values="close").sort_index()
