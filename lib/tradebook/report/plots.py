"""Static figures for the report and backtest notebooks (matplotlib, Agg, no pyplot).

Figures use matplotlib's object API (no pyplot, no global state) and are shown as PNG
images, so they render the same in JupyterLab, in executed notebooks and in the HTML
export (``png``).
"""
from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING, Any

from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tradebook.research.results import BacktestResult
    from tradebook.report.build import Report

GREEN, RED, BLUE, GREY, AMBER = "#2e7d32", "#c62828", "#1565c0", "#9e9e9e", "#ef6c00"


def new_figure(rows: int = 1, cols: int = 1, height: float = 3.0, **kw: Any) -> tuple["Figure", Any]:
    """A figure with subplots, without pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, height * rows if cols == 1 else height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def png(fig: "Figure") -> bytes:
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return buf.getvalue()


def equity_figure(dates: Any, equity: Any, drawdown: Any, daily_pnl: Any = None, title: str = "Equity") -> "Figure":
    """Equity line, daily P&L bars (when given) and drawdown area, sharing the date axis."""
    import numpy as np

    rows = 3 if daily_pnl is not None else 2
    fig, axes = new_figure(rows, 1, height=2.4, sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 1.4][:rows]})
    ax = axes[0, 0]
    ax.plot(dates, equity, color=BLUE, lw=1.4)
    ax.set_title(title, loc="left", fontsize=11)
    ax.yaxis.set_major_formatter("${x:,.0f}")
    if daily_pnl is not None:
        pnl = np.asarray(daily_pnl, dtype=float)
        colours = np.where(pnl >= 0, GREEN, RED)
        if len(pnl) <= 250:
            axes[1, 0].bar(dates, pnl, color=colours, width=0.8)
        else:  # thousands of bar patches are slow to draw; one line collection is not
            axes[1, 0].vlines(dates, 0, pnl, colors=colours, lw=0.8)
        axes[1, 0].set_ylabel("daily P&L")
        axes[1, 0].yaxis.set_major_formatter("${x:,.0f}")
    dd = axes[-1, 0]
    dd.fill_between(dates, np.asarray(drawdown, dtype=float) * 100, 0, color=RED, alpha=0.35, step="post")
    dd.set_ylabel("drawdown")
    dd.yaxis.set_major_formatter("{x:.2g}%")
    fig.autofmt_xdate()
    return fig


def exposure_figure(report: "Report") -> "Figure":
    """% of equity per symbol, tier and sector, each bar against its cap (dashed)."""
    fig, axes = new_figure(1, 3, height=2.8)
    specs = (("exposure by symbol", "symbol", "per symbol (GATE-3)"), ("exposure by tier", "tier", "per tier (GATE-12)"),
             ("exposure by sector", "sector", "per sector (GATE-12)"))
    for ax, (name, key, title) in zip(axes.flat, specs):
        frame = report.frames[name]
        pct = frame["pct_equity"].fillna(0) * 100
        colours = [RED if s == "OVER" else AMBER if s == "WARN" else BLUE for s in frame["status"]]
        ax.barh(frame[key], pct, color=colours)
        for y, cap in enumerate(frame["cap"] * 100):
            ax.plot([cap, cap], [y - 0.4, y + 0.4], color="black", ls="--", lw=1)
        ax.set_title(title, loc="left", fontsize=10)
        ax.set_xlabel("% of equity (dashed: cap)")
    return fig


def histogram_figure(buckets: Any, counts: Any, xlabel: str, title: str) -> "Figure":
    fig, axes = new_figure(1, 1, height=2.6)
    ax = axes[0, 0]
    ax.bar(buckets, counts, width=4.5, color=BLUE, align="edge")
    ax.axvline(0, color="black", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fills")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, loc="left", fontsize=10)
    return fig


def bars_figure(labels: list[str], values: Any, xlabel: str, title: str, colour: str = RED) -> "Figure":
    fig, axes = new_figure(1, 1, height=max(1.8, 0.35 * len(labels) + 0.8))
    ax = axes[0, 0]
    ax.barh(labels[::-1], list(values)[::-1], color=colour, height=0.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_title(title, loc="left", fontsize=10)
    return fig


def report_figures(report: "Report") -> dict[str, "Figure"]:
    """The report's figures, only for sections with data."""
    out = {}
    eq = report.frames["equity"]
    if len(eq) >= 2:  # one point is not a curve
        out["pnl"] = equity_figure(eq["session_date"], eq["equity"], eq["drawdown"], eq["daily_pnl"],
                                   "Equity, daily P&L and drawdown")
    if len(report.frames["exposure by symbol"]):
        out["exposure"] = exposure_figure(report)
    hist = report.figures_data.get("slippage_hist")
    if hist is not None and len(hist):
        out["fills"] = histogram_figure(hist["bucket"], hist["n"], "slippage vs decision price (bps, + = worse)",
                                        "Slippage per fill")
    rej = report.frames["rejections"]
    if len(rej):
        out["rejections"] = bars_figure([f"{r} {c}" for r, c in zip(rej["rule"], rej["reason_code"])],
                                        rej["rejections"], "rejections", "Gate rejections by reason code")
    return out


# --- backtest ---------------------------------------------------------------------------------
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
    """One symbol's close with its SMAs, the short RSI with its levels, and the fills as markers."""
    import pandas as pd

    table = result.indicators
    if table is None:
        raise ValueError("this result has no indicator table (run_strategy keeps one)")
    rows = table[table["symbol"] == symbol]
    year = year or rows["date"].iloc[-1].year
    rows = rows[pd.to_datetime(rows["date"]).dt.year == year]
    fills = result.fills[(result.fills["symbol"] == symbol) & (pd.to_datetime(result.fills["date"]).dt.year == year)]
    fig, axes = new_figure(2, 1, height=2.6, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    ax, rx = axes[0, 0], axes[1, 0]
    ax.plot(rows["date"], rows["close"], color="black", lw=1.1, label="close")
    ax.plot(rows["date"], rows["sma_trend"], color=BLUE, lw=1, label="trend SMA")
    ax.plot(rows["date"], rows["sma_fast"], color=GREY, lw=1, label="fast SMA")
    for side, marker, colour in (("buy", "^", GREEN), ("sell", "v", RED)):
        f = fills[fills["side"] == side]
        ax.scatter(f["date"], f["price"], marker=marker, color=colour, s=45, zorder=3, label=f"{side} fill")
    ax.legend(frameon=False, ncol=5, fontsize=8)
    ax.set_title(f"{symbol} {year}: signals and fills", loc="left", fontsize=10)
    rx.plot(rows["date"], rows["rsi"], color=AMBER, lw=1)
    for level in result.rsi_levels:
        rx.axhline(level, color="black", ls="--", lw=0.8)
    rx.set_ylabel("short RSI")
    rx.set_ylim(0, 100)
    fig.autofmt_xdate()
    return fig
