"""Backtest figures: equity and drawdown, round-trip returns, one symbol's signals and fills."""
from __future__ import annotations

from typing import TYPE_CHECKING

from tradebook.style import AMBER, BLUE, GREEN, GREY, RED, equity_figure, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tradebook.research.results import BacktestResult


def backtest_equity_figure(result: "BacktestResult") -> "Figure":
    eq = result.equity
    return equity_figure(list(eq.index), eq["equity"], eq["drawdown"], title="Backtest equity and drawdown")


def trade_returns_figure(result: "BacktestResult") -> "Figure":
    """Histogram of round-trip returns, winners green and losers red."""
    import numpy as np

    returns = result.round_trips["return_pct"].to_numpy()
    fig, axes = new_figure(1, 1, height=2.6)
    ax = axes[0, 0]
    bins = np.linspace(np.floor(returns.min()), np.ceil(returns.max()), 40) if len(returns) else 10
    ax.hist(returns[returns <= 0], bins=bins, color=RED, alpha=0.8, label="losers")
    ax.hist(returns[returns > 0], bins=bins, color=GREEN, alpha=0.8, label="winners")
    ax.set_xlabel("round-trip return %")
    ax.set_ylabel("trades")
    ax.legend(frameon=False)
    ax.set_title("Round-trip returns", loc="left", fontsize=10)
    return fig


def signals_figure(result: "BacktestResult", symbol: str, year: int | None = None) -> "Figure":
    """One symbol's close and fills as markers; with the swing strategy's indicator table also
    its SMAs and the short RSI with its levels. Any strategy gets at least the close and fills."""
    import pandas as pd

    table = result.indicators if result.indicators is not None else result.closes
    if table is None:
        raise ValueError("this result keeps no prices to plot (build it with run_backtest)")
    rows = table[table["symbol"] == symbol]
    if rows.empty:
        have = ", ".join(sorted(table["symbol"].unique())) or "none"
        raise ValueError(f"no bars for {symbol!r} in this backtest; its symbols: {have}")
    year = year or pd.Timestamp(rows["date"].iloc[-1]).year
    rows = rows[pd.to_datetime(rows["date"]).dt.year == year]
    fills = result.fills[(result.fills["symbol"] == symbol) & (pd.to_datetime(result.fills["date"]).dt.year == year)]
    indicators = result.indicators is not None
    fig, axes = (new_figure(2, 1, height=2.6, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}) if indicators
                 else new_figure(1, 1, height=3.2))
    ax = axes[0, 0]
    ax.plot(rows["date"], rows["close"], color="black", lw=1.1, label="close")
    if indicators:
        ax.plot(rows["date"], rows["sma_trend"], color=BLUE, lw=1, label="trend SMA")
        ax.plot(rows["date"], rows["sma_fast"], color=GREY, lw=1, label="fast SMA")
        _rsi_panel(axes[1, 0], rows, result.rsi_levels)
    for side, marker, colour in (("buy", "^", GREEN), ("sell", "v", RED)):
        f = fills[fills["side"] == side]
        ax.scatter(f["date"], f["price"], marker=marker, color=colour, s=45, zorder=3, label=f"{side} fill")
    ax.legend(frameon=False, ncol=5, fontsize=8)
    ax.set_title(f"{symbol} {year}: signals and fills", loc="left", fontsize=10)
    fig.autofmt_xdate()
    return fig


def _rsi_panel(rx, rows, levels: tuple[float, ...]) -> None:
    rx.plot(rows["date"], rows["rsi"], color=AMBER, lw=1)
    for level in levels:
        rx.axhline(level, color="black", ls="--", lw=0.8)
    rx.set_ylabel("short RSI")
    rx.set_ylim(0, 100)
