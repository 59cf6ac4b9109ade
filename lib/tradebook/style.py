"""How tables and figures look, for the report and the research notebooks alike.

Tables are pandas Stylers: money with thousands separators, percentages, basis points,
exchange-time timestamps, cap and control status in colour. Figures use matplotlib's
object API (no pyplot, no global state) and are shown as PNG images, so they render the
same in JupyterLab, in executed notebooks and in the HTML export (``png``).
"""
from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

GREEN, RED, BLUE, GREY, AMBER = "#2e7d32", "#c62828", "#1565c0", "#9e9e9e", "#ef6c00"
MONEY = {"value", "notional", "cost_usd", "unrealized", "equity", "open_equity", "daily_pnl", "cum_pnl",
         "realized", "pnl", "cash", "holdings", "realized_pnl"}
PRICE = {"price", "avg_price", "decision_price", "limit_price", "entry_price", "exit_price"}
PCT = {"pct_equity", "cap", "drawdown", "exposure", "win_rate"}
PCT_POINTS = {"return_pct", "avg_return_pct"}  # already in percent
ONE_DECIMAL = {"avg_days"}
BPS = {"slippage_bps", "avg_bps", "median_bps", "worst_bps"}
STATUS_COLOURS = {"OVER": f"color: white; background-color: {RED}", "WARN": "background-color: #ffe0b2",
                  "OK": f"color: {GREEN}", "RUNNING": f"color: {GREEN}", "REDUCE_ONLY": f"color: {AMBER}",
                  "HALTED": f"color: {RED}", "FROZEN": f"color: white; background-color: {RED}",
                  "FAILED": f"color: {RED}"}


def style(frame: "pd.DataFrame", max_rows: int = 50) -> Any:
    """A Styler that reads well: money, prices, %, bps, timestamps in exchange time, status colours."""
    import pandas as pd

    shown = frame.head(max_rows)
    fmt: dict[str, Any] = {}
    for col in shown.columns:
        if col in MONEY or col in PRICE:
            fmt[col] = "{:,.2f}"
        elif col == "qty":
            fmt[col] = "{:,.6g}"
        elif col in PCT:
            fmt[col] = "{:.2%}"
        elif col in BPS:
            fmt[col] = "{:+.1f}"
        elif col in PCT_POINTS:
            fmt[col] = "{:+.2f}%"
        elif col in ONE_DECIMAL:
            fmt[col] = "{:.1f}"
        elif col == "confidence":
            fmt[col] = "{:.2f}"
        elif pd.api.types.is_datetime64_any_dtype(shown[col]):
            pattern = "%Y-%m-%d" if col.endswith("date") else "%Y-%m-%d %H:%M"
            fmt[col] = lambda v, pattern=pattern: "" if pd.isna(v) else v.strftime(pattern)
    styler = shown.style.format(fmt, na_rep="–").hide(axis="index")
    text = [c for c in shown.columns if pd.api.types.is_object_dtype(shown[c]) or pd.api.types.is_string_dtype(shown[c])]
    if text:  # words read left-aligned; numbers stay right-aligned
        styler = styler.set_properties(subset=text, **{"text-align": "left"})
    status_cols = [c for c in ("status", "state", "last_status") if c in shown.columns]
    if status_cols:
        styler = styler.map(lambda v: STATUS_COLOURS.get(str(v).removeprefix("EXIT_"), ""), subset=status_cols)
    signed = [c for c in ("daily_pnl", "pnl", "unrealized", "cum_pnl") if c in shown.columns]
    if signed:
        styler = styler.map(lambda v: f"color: {GREEN if v > 0 else RED}" if v == v and v != 0 else "",
                            subset=signed)
    styler = styler.set_table_styles([{"selector": "th", "props": "text-align: left; background-color: #f5f5f5"},
                                      {"selector": "td", "props": "padding: 2px 10px; white-space: nowrap"}])
    prose = [c for c in ("reason", "detail", "error", "notebook_path") if c in shown.columns]
    if prose:  # long free text wraps (a per-column rule outranks the nowrap above); the rest stays on one line
        styler = styler.set_table_styles({c: [{"selector": "td", "props": "white-space: normal; min-width: 16em; "
                                                                          "max-width: 36em"}] for c in prose},
                                         overwrite=False)
    return styler


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
