"""Named, causal features of daily bars for model strategies (STR-2).

A feature definition is a list of names from ``FEATURES``; each value on day t uses
bars up to t only, so a model trained on the history sees at each close exactly what
the decide phase computes. ``feature_table`` returns one row per bar (symbol, date,
and one column per name); rows without enough history hold NaN.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def _ret(n: int) -> Callable[["pd.Series"], "pd.Series"]:
    return lambda c: c / c.shift(n) - 1.0


def _vol(n: int) -> Callable[["pd.Series"], "pd.Series"]:
    return lambda c: (c / c.shift(1) - 1.0).rolling(n).std()


def _sma_ratio(fast: int, slow: int) -> Callable[["pd.Series"], "pd.Series"]:
    return lambda c: c.rolling(fast).mean() / c.rolling(slow).mean() - 1.0


def _rsi(n: int) -> Callable[["pd.Series"], "pd.Series"]:
    def f(c: "pd.Series") -> "pd.Series":
        import pandas as pd

        from tradebook.strategies.swing_rules import wilder_rsi

        return pd.Series(wilder_rsi(c.to_numpy(dtype=float), n), index=c.index) / 100.0
    return f


FEATURES: dict[str, tuple[int, Callable[["pd.Series"], "pd.Series"]]] = {
    # name: (sessions of history needed, function of the close series)
    "ret_1": (2, _ret(1)), "ret_5": (6, _ret(5)), "ret_20": (21, _ret(20)),
    "vol_20": (21, _vol(20)), "sma_ratio_20_100": (100, _sma_ratio(20, 100)),
    "sma_ratio_5_20": (20, _sma_ratio(5, 20)), "rsi_2": (30, _rsi(2)), "rsi_14": (60, _rsi(14)),
}


def unknown(names: list[str]) -> list[str]:
    return [n for n in names if n not in FEATURES]


def history(names: list[str]) -> int:
    """Sessions of bars the features need before their first value."""
    return max((FEATURES[n][0] for n in names), default=1)


def feature_table(bars: "pd.DataFrame", names: list[str]) -> "pd.DataFrame":
    """symbol, date and one column per feature name, for every bar (sorted by symbol, date)."""

    frame = bars.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    out = frame[["symbol", "date"]].copy()
    grouped = frame.groupby("symbol", sort=False)["close"]
    for name in names:
        out[name] = grouped.transform(FEATURES[name][1]).astype(float)
    return out


def last_rows(bars: "pd.DataFrame", names: list[str]) -> tuple["pd.DataFrame", "np.ndarray"]:
    """The last bar of each symbol (symbol, date, close) and its feature matrix (NaN rows dropped)."""
    table = feature_table(bars, names)
    frame = bars.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    table["close"] = frame["close"].to_numpy(dtype=float)
    last = table.groupby("symbol", sort=True).tail(1).dropna(subset=names)
    return last[["symbol", "date", "close"]].reset_index(drop=True), last[names].to_numpy(dtype=float)
