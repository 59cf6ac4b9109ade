"""Static figures for the report and backtest notebooks (matplotlib, Agg, no pyplot).

Figures use matplotlib's object API (no pyplot, no global state) and are shown as PNG
images, so they render the same in JupyterLab, in executed notebooks and in the HTML
export (``png``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from matplotlib.ticker import MaxNLocator

from tradebook.style import AMBER, BLUE, RED, equity_figure, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tradebook.report.build import Report


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
