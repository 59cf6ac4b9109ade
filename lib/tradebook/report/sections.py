"""What each report section says: a sentence, styled tables, a figure — or a clear "none yet".

``section_blocks`` is plain data (text / table / figure blocks) so it is testable
without a notebook; ``show_section`` displays the blocks in a notebook. Tables are
pandas Stylers: money with thousands separators, percentages, basis points,
exchange-time timestamps, cap and control status in colour.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from tradebook.style import png, style

if TYPE_CHECKING:
    from tradebook.report.build import Report

Block = tuple[str, Any]  # ("text", markdown) | ("table", DataFrame) | ("figure", section name)


def _money(v: float | None, sign: bool = False, md: bool = False) -> str:
    """$1,234.56 (signed when asked); in markdown the dollar is escaped so it is not read as maths."""
    if v is None or v != v:
        return "n/a"
    dollar = r"\$" if md else "$"
    return f"{'+' if sign and v > 0 else '-' if v < 0 else ''}{dollar}{abs(v):,.2f}"


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def section_blocks(report: "Report", section: str) -> list[Block]:
    """The blocks of one section, in display order."""
    return list(globals()[f"_{section}"](report))


def _summary(r: "Report") -> Iterator[Block]:
    import pandas as pd

    t = r.totals
    when = f"{r.asof:%Y-%m-%d %H:%M %Z}" if r.asof else "no activity yet"
    yield "text", f"As of **{when}** · trading state **{t['state']}**"
    rows = [("equity", _money(t["equity"])), ("P&L today", _money(t["day_pnl"], True)),
            ("P&L since start", _money(t["cum_pnl"], True)),
            ("drawdown from peak", f"{t['drawdown']:.2%}" if t["drawdown"] is not None else "n/a"),
            ("gross exposure", f"{t['gross_pct']:.1%} of equity (cap {r.params.max_gross_exposure_pct:.0%})"),
            ("open positions", f"{t['positions']}"), ("fills", f"{t['fills']:,}"),
            ("realized P&L", _money(t["realized_pnl"], True)), ("open intents", f"{t['open_intents']}"),
            ("intents rejected by the gate", f"{t['rejected_intents']:,}"),
            ("unresolved incidents", f"{t['open_incidents']}")]
    yield "table", pd.DataFrame(rows, columns=["measure", "figure"])
    for note in r.notes:
        yield "text", f"*Note: {note}.*"


def _pnl(r: "Report") -> Iterator[Block]:
    eq = r.frames["equity"]
    if not len(eq):
        yield "text", ("**No equity recorded yet.** The P&L appears once a phase has recorded account equity "
                       "(start-of-day snapshots) or the first trade has closed.")
        return
    if len(eq) < 2:
        yield "text", "*One session so far: the equity curve is drawn from the second session on.*"
    last, first = eq.iloc[-1], eq["open_equity"].iloc[0]
    ret = last["cum_pnl"] / first if first else float("nan")
    yield "text", (f"Equity **{_money(last['equity'], md=True)}** · today **{_money(last['daily_pnl'], True, True)}**"
                   f" · since {eq['session_date'].iloc[0]} **{_money(last['cum_pnl'], True, True)}** ({ret:+.2%}) · "
                   f"drawdown from peak **{last['drawdown']:.2%}** (worst {eq['drawdown'].min():.2%}) · realized "
                   f"{_money(float(eq['realized'].sum()), True, True)} over {_n(int(eq['trades'].sum()), 'trade record')}.")
    yield "figure", "pnl"
    yield "text", "Daily and cumulative P&L, newest first:"
    yield "table", eq.iloc[::-1].head(20)


def _exposure(r: "Report") -> Iterator[Block]:
    p = r.params
    caps = (f"caps: {p.max_position_pct:.0%} per symbol, {p.max_gross_exposure_pct:.0%} gross, "
            f"{p.sector_cap_pct:.0%} per sector, tiers " + ", ".join(f"{k} {v:.0%}" for k, v in p.tier_caps.items()))
    sym = r.frames["exposure by symbol"]
    if not len(sym):
        yield "text", f"**No open positions:** gross exposure 0% of equity ({caps})."
        return
    gross = r.frames["gross exposure"].iloc[0]
    flagged = sym[sym["status"] != "OK"]
    yield "text", (f"Gross exposure **{gross['pct_equity']:.1%}** of equity in {len(sym)} positions ({caps}); "
                   + (f"**{len(flagged)} at or over a cap**." if len(flagged) else "all within their caps."))
    if (sym["priced_at"] == "cost").any():
        yield "text", "*Some positions are valued at cost: the broker gave no current price for them.*"
    yield "figure", "exposure"
    for name in ("exposure by symbol", "exposure by tier", "exposure by sector", "gross exposure"):
        yield "table", r.frames[name]


def _fills(r: "Report") -> Iterator[Block]:
    slip = r.frames["slippage"]
    if not len(slip):
        yield "text", "**No fills yet:** nothing has been executed."
        return
    n = int(slip["fills"].sum())
    avg = (slip["avg_bps"] * slip["fills"]).sum() / n if n else float("nan")
    cost = float(slip["cost_usd"].sum())
    yield "text", (f"{_n(n, 'fill')}; slippage against the decision price averages **{avg:+.1f} bps** "
                   f"(positive = worse than decided): **{_money(abs(cost), md=True)} "
                   f"{'cost' if cost > 0 else 'saved'}** in total.")
    yield "figure", "fills"
    yield "table", slip
    yield "text", f"Latest {len(r.frames['fills'])} fills, newest first:"
    yield "table", r.frames["fills"]


def _rejections(r: "Report") -> Iterator[Block]:
    rej, warn = r.frames["rejections"], r.frames["warnings"]
    if not len(rej):
        yield "text", "**No gate rejections:** every order the gate saw passed."
    else:
        yield "text", (f"**{_n(r.totals['rejected_intents'], 'intent')}** refused by the gate "
                       f"({_n(int(rej['rejections'].sum()), 'failed rule check')}), by rule and reason code:")
        yield "figure", "rejections"
        yield "table", rej
    if len(warn):
        yield "text", "Warnings (orders passed, but near a limit):"
        yield "table", warn


def _controls(r: "Report") -> Iterator[Block]:
    controls, incidents = r.frames["controls"], r.frames["incidents"]
    yield "text", f"Trading state now: **{r.totals['state']}**."
    if len(controls):
        yield "text", "Control-state changes (halt, freeze, reduce-only, resume), newest first:"
        yield "table", controls
    else:
        yield "text", "No control-state changes recorded: nobody halted, froze or resumed trading."
    if len(incidents):
        yield "text", "Incidents, newest first:"
        yield "table", incidents
    else:
        yield "text", "**No incidents recorded.**"


def _intents(r: "Report") -> Iterator[Block]:
    intents = r.frames["intents"]
    if not len(intents):
        yield "text", "**No open intents:** nothing is planned or working at the broker."
        return
    yield "text", (f"{_n(len(intents), 'open intent')} (planned for the next execute window, or submitted and "
                   f"working):")
    yield "table", intents[["created_at", "intent_id", "state", "symbol", "side", "qty", "order_type", "limit_price",
                            "urgency", "confidence", "reason"]]


def _runs(r: "Report") -> Iterator[Block]:
    runs, failed = r.frames["runs"], r.frames["failed_runs"]
    if not len(runs):
        yield "text", "No phase runs recorded yet."
        return
    yield "table", runs
    if len(failed):
        yield "text", "**Failed runs** (each kept as an executed notebook):"
        yield "table", failed
    else:
        yield "text", "No failed runs."


def show_section(report: "Report", section: str) -> None:
    """Display one section's blocks in a notebook."""
    from IPython.display import Image, Markdown, display

    figures = None
    for kind, payload in section_blocks(report, section):
        if kind == "text":
            display(Markdown(payload))
        elif kind == "table":
            display(style(payload))
        else:
            figures = figures if figures is not None else report.figures()
            if payload in figures:
                display(Image(png(figures[payload])))
