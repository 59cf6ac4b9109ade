"""The evening report: P&L, equity and drawdown, exposure against the caps, fills and
slippage, gate rejections, controls and incidents, open intents (SPEC §3 report).

``build_report(ctx)`` reads the ledger with a handful of DuckDB aggregations over one
short-lived connection (fast on millions of fills: only aggregates and the newest
rows come back) and asks the broker only for current prices and equity; when the
broker is unavailable positions are valued at cost and the report says so. Every
section reads well on an empty ledger. Presentation lives in ``report_sections``
(sentences, styled tables) and ``report_plots`` (figures); ``export_html`` turns an
executed report notebook into ``runs/report.html`` without code cells.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tradebook.ledger import controls as control_store
from tradebook.ledger import equity as equity_store
from tradebook.ledger import fills as fill_store
from tradebook.ledger import intents as intent_store
from tradebook.ledger import positions as position_store
from tradebook.ledger import runs as run_store
from tradebook.ledger import trades as trade_store
from tradebook.ledger import verdicts as verdict_store

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from tradebook.context import Context
    from tradebook.params import Params

TZ = "America/New_York"
OPEN_STATES = ("PLANNED", "SUBMITTED")  # PARTIAL is terminal (see tradebook.phases.intents)
SECTIONS = ("summary", "pnl", "exposure", "fills", "rejections", "controls", "intents", "runs")


@dataclass
class Report:
    """Everything the report notebook shows; ``tables()`` / ``summary()`` like every phase report."""

    asof: datetime | None
    params: "Params"
    frames: dict[str, "pd.DataFrame"]
    figures_data: dict[str, Any] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _figures: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def tables(self) -> dict[str, "pd.DataFrame"]:
        return dict(self.frames)

    def summary(self) -> str:
        t = self.totals
        equity = f"{t['equity']:,.2f}" if t.get("equity") is not None else "n/a"
        day = f"{t['day_pnl']:+,.2f}" if t.get("day_pnl") is not None else "n/a"
        cum = f"{t['cum_pnl']:+,.2f}" if t.get("cum_pnl") is not None else "n/a"
        return (f"report {self.asof:%Y-%m-%d} · state {t['state']} · equity {equity} · day P&L {day} · "
                f"total P&L {cum} · gross {t['gross_pct']:.1%} · positions {t['positions']} · fills {t['fills']} · "
                f"open intents {t['open_intents']} · rejected intents {t['rejected_intents']} · "
                f"open incidents {t['open_incidents']}") if self.asof else "report: nothing recorded yet"

    def figures(self) -> dict[str, Any]:
        """Matplotlib figures per section (only where there is data), built once per report.

        Each section the notebook shows asks for its figure; building all of them per
        section drew every figure four times (~0.1 s per report run).
        """
        from tradebook.report import plots as report_plots

        if self._figures is None:
            self._figures = report_plots.report_figures(self)
        return self._figures

    def show(self, section: str) -> None:
        """Display one section (heading-less: the notebook's markdown cells hold the headings)."""
        from tradebook.report import sections as report_sections

        if section not in SECTIONS:
            raise ValueError(f"unknown report section {section!r}; choose from {', '.join(SECTIONS)}")
        report_sections.show_section(self, section)


def build_report(ctx: "Context", *, prices: Mapping[str, float] | None = None, use_broker: bool = True,
                 limit: int = 50) -> Report:
    """Read the ledger (and current prices/equity from the broker) into a Report."""
    live: dict[str, Any] = _broker_snapshot(ctx) if use_broker else {"note": "broker not consulted: positions at cost"}
    with ctx.ledger.connect() as con:
        con.execute(f"SET TimeZone = '{TZ}'")
        frames = _read_frames(con, limit)
        hist = fill_store.slippage_histogram(con)
        counts = (fill_store.count(con), *trade_store.totals(con), intent_store.count_open(con, OPEN_STATES),
                  intent_store.count_gate_rejected(con), control_store.open_incidents(con))
        stamps = [fill_store.last_ts(con), control_store.last_ts(con), equity_store.last_ts(con)]
    asof = live.get("now") or max((t for t in stamps if t is not None), default=None)
    price_map = dict(live.get("prices", {}), **(prices or {}))
    equity_now = live.get("equity")
    frames["equity"] = daily_equity(frames["equity"], equity_now, asof)
    if equity_now is None and len(frames["equity"]):
        equity_now = float(frames["equity"]["equity"].iloc[-1])
    exposure = exposure_tables(frames.pop("positions"), ctx.params, price_map, equity_now)
    frames.update(exposure)
    state = _control_state(ctx)
    report = Report(asof, ctx.params, frames, {"slippage_hist": hist}, notes=[live["note"]] if live.get("note") else [])
    report.totals = _totals(report, counts, equity_now, state)
    return report


def _read_frames(con: "duckdb.DuckDBPyConnection", limit: int) -> dict[str, "pd.DataFrame"]:
    """The ledger's listings and aggregations, one frame per name (the newest ``limit`` rows of listings)."""
    return {"equity": equity_store.daily(con, TZ), "positions": position_store.open_listing(con),
            "fills": fill_store.recent(con, limit), "slippage": fill_store.slippage(con),
            "rejections": verdict_store.rejection_counts(con), "warnings": verdict_store.warning_counts(con),
            "incidents": control_store.recent_incidents(con, limit),
            "controls": control_store.recent_controls(con, limit),
            "intents": intent_store.open_listing(con, OPEN_STATES),
            # In sim mode a run's time that matters is the simulated clock (sim_time), not the wall clock.
            "runs": run_store.by_phase(con), "failed_runs": run_store.failed(con, 10)}


def _broker_snapshot(ctx: "Context") -> dict[str, Any]:
    """Current time, equity and position prices from the broker; a note instead when it fails."""
    from tradebook.errors import TradebookError

    try:
        broker = ctx.broker
        account = broker.account()
        return {"now": broker.clock().now, "equity": account.equity, "cash": account.cash,
                "prices": {p.symbol: p.market_price for p in broker.positions()}}
    except (TradebookError, OSError) as exc:
        return {"note": f"broker unavailable ({type(exc).__name__}): positions valued at cost, equity from "
                        f"the ledger's snapshots"}


def _control_state(ctx: "Context") -> str:
    from tradebook.errors import TradebookError

    try:
        from tradebook.safety.controls import effective_state

        return effective_state(ctx.params, ctx.root, ctx.ledger).state
    except (ImportError, TradebookError, OSError) as exc:
        return f"unknown ({type(exc).__name__})"


def daily_equity(raw: "pd.DataFrame", equity_now: float | None, asof: datetime | None) -> "pd.DataFrame":
    """Per session: open/close equity, daily and cumulative P&L, drawdown, realized P&L, trades."""
    import numpy as np
    import pandas as pd

    frame = raw.rename(columns={"open_eq": "open_equity", "close_eq": "equity"}).copy()
    frame["session_date"] = pd.to_datetime(frame["session_date"]).dt.date
    if equity_now is not None and asof is not None:
        today = pd.Timestamp(asof).tz_convert(TZ).date() if pd.Timestamp(asof).tzinfo else pd.Timestamp(asof).date()
        last = frame["session_date"].iloc[-1] if len(frame) else None
        if last == today:
            frame.loc[frame.index[-1], "equity"] = equity_now
        elif last is None or today > last:  # never append behind the ledger (a broker clock behind it)
            frame = pd.concat([frame, pd.DataFrame({"session_date": [today], "open_equity": [np.nan],
                                                    "equity": [equity_now], "realized": [0.0], "trades": [0]})],
                              ignore_index=True)
    frame = frame.dropna(subset=["equity"]).reset_index(drop=True)
    prev_close = frame["equity"].shift(1)
    frame["open_equity"] = frame["open_equity"].fillna(prev_close).fillna(frame["equity"])
    base = prev_close.fillna(frame["open_equity"])
    frame["daily_pnl"] = frame["equity"] - base
    frame["cum_pnl"] = frame["equity"] - (frame["open_equity"].iloc[0] if len(frame) else 0.0)
    frame["drawdown"] = frame["equity"] / frame["equity"].cummax() - 1.0
    frame["trades"] = frame["trades"].fillna(0).astype(int)
    return frame[["session_date", "open_equity", "equity", "daily_pnl", "cum_pnl", "drawdown", "realized", "trades"]]


def exposure_tables(positions: "pd.DataFrame", params: "Params", prices: Mapping[str, float],
                    equity: float | None) -> dict[str, "pd.DataFrame"]:
    """Exposure by symbol, tier and sector at current prices against the caps the gate enforces.

    Caps, tiers and the WARN band are tradebook.safety.exposure's (GATE-3/4/12): the report only
    displays them. A tier or sector without a cap shows NO_CAP (the gate refuses entries there).
    """
    import pandas as pd

    from tradebook.safety.exposure import exposure_lines, sector_of, tier_of

    pos = positions.copy()
    pos["tier"] = [tier_of(s, params) for s in pos["symbol"]]
    pos["sector"] = [sector_of(s, params) for s in pos["symbol"]]
    pos["price"] = [prices.get(s, a) for s, a in zip(pos["symbol"], pos["avg_price"])]
    pos["priced_at"] = ["market" if s in prices else "cost" for s in pos["symbol"]]
    pos["value"] = pos["qty"] * pos["price"]
    pos["unrealized"] = (pos["price"] - pos["avg_price"]) * pos["qty"]
    lines = exposure_lines(zip(pos["symbol"], pos["value"]), equity, params)
    rows = [{"group": x.group, "name": x.name, "positions": x.positions, "value": x.value, "pct_equity": x.pct,
             "cap": float("nan") if x.cap is None else x.cap, "status": x.level} for x in lines]
    table = pd.DataFrame(rows, columns=["group", "name", "positions", "value", "pct_equity", "cap", "status"])
    by_symbol = table[table["group"] == "symbol"].set_index("name")
    for column in ("pct_equity", "cap", "status"):
        pos[column] = [by_symbol.at[s, column] for s in pos["symbol"]]
    symbol = pos[["symbol", "origin", "tier", "sector", "qty", "avg_price", "price", "priced_at", "value",
                  "unrealized", "pct_equity", "cap", "status"]]
    groups = {key: table[table["group"] == key].drop(columns="group").rename(columns={"name": key})
              .reset_index(drop=True) for key in ("tier", "sector")}
    gross = table[table["group"] == "gross"].drop(columns=["group", "name", "positions"])
    gross.insert(0, "measure", "gross exposure")
    return {"exposure by symbol": symbol, "exposure by tier": groups["tier"],
            "exposure by sector": groups["sector"], "gross exposure": gross.reset_index(drop=True)}


def _totals(report: Report, counts: tuple, equity: float | None, state: str) -> dict[str, Any]:
    eq = report.frames["equity"]
    gross = report.frames["gross exposure"]
    return {"equity": equity, "state": state,
            "day_pnl": float(eq["daily_pnl"].iloc[-1]) if len(eq) else None,
            "cum_pnl": float(eq["cum_pnl"].iloc[-1]) if len(eq) else None,
            "drawdown": float(eq["drawdown"].iloc[-1]) if len(eq) else None,
            "gross_pct": float(gross["pct_equity"].iloc[0]) if equity else 0.0,
            "positions": len(report.frames["exposure by symbol"]),
            "fills": counts[0], "trades": counts[1], "realized_pnl": float(counts[2]),
            "open_intents": counts[3], "rejected_intents": counts[4], "open_incidents": counts[5]}


def export_html(executed_notebook_path: str | Path, out_path: str | Path) -> Path:
    """Write the executed notebook as standalone HTML without code cells (outputs and markdown only)."""
    import nbformat
    from nbconvert import HTMLExporter

    source = Path(executed_notebook_path)
    if not source.exists():
        from tradebook.errors import TradebookError

        raise TradebookError(f"executed notebook {source} does not exist; run `tradebook run report` first")
    notebook = nbformat.read(source, as_version=4)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(notebook)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out
