"""The report: ledger aggregations, exposure against caps, empty-ledger wording, HTML export."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import nbformat
import pytest

from tradebook.ledger import controls as control_store
from tradebook.ledger import equity as equity_store
from tradebook.ledger import fills as fill_store
from tradebook.ledger import positions as position_store
from tradebook.ledger import runs as run_store
from tradebook.ledger import trades as trade_store
from tradebook.report import build as rpt
from tradebook.context import Context
from tradebook.ledger import intents as intent_store
from tradebook.ledger.verdicts import append_verdicts
from tradebook.report.sections import section_blocks
from tradebook.style import style

NY = ZoneInfo("America/New_York")
D1, D2, D3 = date(2011, 7, 5), date(2011, 7, 6), date(2011, 7, 7)


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=NY)


def populate(ctx: Context) -> None:
    """A small ledger: 3 sessions, 2 entries + 1 exit, rejections, a halt/resume, an incident, open intents."""
    with ctx.ledger.transaction() as con:
        for snapshot in [(at(D1, 9, 15), D1, "START_OF_DAY", 100_000.0, 100_000.0),
                         (at(D2, 9, 15), D2, "START_OF_DAY", 100_500.0, 92_000.0),
                         (at(D2, 11), D2, "PEAK", 100_800.0, 92_000.0),
                         (at(D3, 9, 15), D3, "START_OF_DAY", 100_200.0, 96_000.0)]:
            equity_store.append_snapshot(con, *snapshot)
        for row in [
                ["i-aapl", at(D1, 16, 15), "ENTRY", "AAPL", "buy", 100, "limit", 45.5, 0.4, 45.0, "PULLBACK", "FILLED",
                 "pass", "OK", at(D2, 9, 36)],
                ["i-ibm", at(D1, 16, 15), "ENTRY", "IBM", "buy", 25, "limit", 146.0, 0.3, 146.0, "PULLBACK", "FILLED",
                 "pass", "OK", at(D2, 9, 36)],
                ["i-ibm-x", at(D2, 16, 15), "EXIT", "IBM", "sell", 25, "limit", 150.0, None, 150.0, "RSI_EXIT", "FILLED",
                 "pass", "OK", at(D3, 9, 36)],
                ["i-goog", at(D2, 16, 15), "ENTRY", "GOOG", "buy", 50, "limit", 300.0, 0.2, 300.0, "PULLBACK",
                 "REJECTED", "reject", "MAX_ORDER_NOTIONAL", at(D3, 9, 36)],
                ["i-msft", at(D3, 16, 15), "ENTRY", "MSFT", "buy", 150, "limit", 22.5, 0.5, 22.5, "PULLBACK", "PLANNED",
                 None, None, at(D3, 16, 15)],
                ["i-aapl-x", at(D3, 16, 15), "EXIT", "AAPL", "sell", 100, "limit", 46.0, None, 46.0, "TREND_BREAK",
                 "PLANNED", None, None, at(D3, 16, 15)],
        ]:
            iid, created, kind, symbol, side, qty, order_type, limit, confidence, price, why, state, gate, code, updated = row
            intent_store.insert(con, intent_store.Intent(iid, created, None, kind, symbol, side, qty, order_type, limit,
                                                         "normal", confidence, price, None, why, state, 0, gate, code,
                                                         updated))
        for iid, ts, rule, severity, code in [
            ["i-goog", at(D3, 9, 36), "GATE-5", "reject", "MAX_ORDER_NOTIONAL"],
            ["i-goog", at(D3, 9, 36), "GATE-3", "reject", "MAX_POSITION"],
            ["i-aapl", at(D2, 9, 36), "GATE-3", "pass", "OK"],
            ["i-ibm", at(D2, 9, 36), "GATE-12", "warn", "TIER_CAP_BUFFER"],
        ]:
            append_verdicts(con, iid, None, ts, [(rule, severity, code, {})])
        fill_store.insert(con, "c1", "i-aapl", "AAPL", "buy", 100, 45.09, at(D2, 9, 36), 45.0, 20.0)
        fill_store.insert(con, "c2", "i-ibm", "IBM", "buy", 25, 145.854, at(D2, 9, 36), 146.0, None)
        fill_store.insert(con, "c3", "i-ibm-x", "IBM", "sell", 25, 150.15, at(D3, 9, 36), 150.0, -10.0)
        trade_store.append(con, at(D2, 9, 36), "AAPL", "buy", 100, 45.09, "FILL", None, "fill")
        trade_store.append(con, at(D2, 9, 36), "IBM", "buy", 25, 145.854, "FILL", None, "fill")
        trade_store.append(con, at(D3, 9, 36), "IBM", "sell", 25, 150.15, "FILL", 107.4, "fill")
        position_store.insert(con, "AAPL", 100, 45.09, "STRATEGY", at(D2, 9, 36), 0.4, "TIER3", "Technology",
                              at(D2, 9, 36))
        position_store.insert(con, "XOM", 40, 80.0, "EXTERNAL", None, None, None, None, at(D3, 9, 15))
        control_store.append_control(con, at(D2, 12), "HALTED", "checking a data glitch", "operator", "cli")
        control_store.append_control(con, at(D2, 12, 30), "RUNNING", "glitch understood", "operator", "cli")
        control_store.append_incident(con, at(D3, 9, 15), D3, "RECONCILE_DIVERGENCE", "XOM seen at the broker twice")
        for run_id, phase, started, ended, status, error in [
                ("r1", "decide", at(D1, 16, 15), at(D1, 16, 16), "OK", None),
                ("r2", "execute", at(D2, 9, 35), at(D2, 9, 36), "OK", None),
                ("r3", "execute", at(D3, 9, 35), at(D3, 9, 36), "FAILED", "BrokerUnavailable: 503")]:
            run_store.start(con, run_id, phase, started_at=started)
            run_store.finish(con, run_id, status, ended, error)


@pytest.fixture
def built(ctx):
    populate(ctx)
    return rpt.build_report(ctx, prices={"AAPL": 46.0}, use_broker=False)


def test_report_when_ledger_populated_then_daily_and_cumulative_pnl_from_snapshots(built):
    eq = built.frames["equity"]
    assert list(eq["session_date"]) == [D1, D2, D3]
    # close of a session = next session's start-of-day equity; the last one its latest observation
    assert list(eq["equity"]) == [100_500.0, 100_200.0, 100_200.0]
    assert list(eq["daily_pnl"]) == [500.0, -300.0, 0.0]
    assert list(eq["cum_pnl"]) == [500.0, 200.0, 200.0]
    assert eq["drawdown"].iloc[-1] == pytest.approx(100_200 / 100_500 - 1)
    assert eq.set_index("session_date").loc[D3, "realized"] == pytest.approx(107.4)


def test_gate3_gate12_when_positions_then_exposure_by_symbol_tier_sector_against_caps(built):
    """GATE-3/GATE-12: exposure at current prices (cost when no price), compared with each cap."""
    sym = built.frames["exposure by symbol"].set_index("symbol")
    equity = 100_200.0
    assert sym.loc["AAPL", "value"] == pytest.approx(4600.0)
    assert sym.loc["AAPL", "pct_equity"] == pytest.approx(4600 / equity)
    assert sym.loc["AAPL", "status"] == "OK" and sym.loc["AAPL", "priced_at"] == "market"
    assert sym.loc["XOM", "priced_at"] == "cost" and sym.loc["XOM", "tier"] == "UNMAPPED"
    assert sym.loc["AAPL", "unrealized"] == pytest.approx((46.0 - 45.09) * 100)
    tier = built.frames["exposure by tier"].set_index("tier")
    assert tier.loc["TIER3", "cap"] == 0.30
    sector = built.frames["exposure by sector"].set_index("sector")
    assert sector.loc["Technology", "cap"] == 0.30
    gross = built.frames["gross exposure"].iloc[0]
    assert gross["value"] == pytest.approx(4600 + 3200)
    assert gross["status"] == "OK"


def test_exe6_when_fills_then_slippage_vs_decision_price_per_symbol_and_side(built):
    """EXE-6: slippage per fill (stored, or computed from the decision price when missing)."""
    slip = built.frames["slippage"].set_index(["symbol", "side"])
    assert slip.loc[("AAPL", "buy"), "avg_bps"] == pytest.approx(20.0)
    assert slip.loc[("IBM", "buy"), "avg_bps"] == pytest.approx((145.854 - 146) / 146 * 1e4)
    assert slip.loc[("IBM", "sell"), "avg_bps"] == pytest.approx(-10.0)
    fills = built.frames["fills"]
    assert list(fills["symbol"]) == ["IBM", "IBM", "AAPL"]  # newest first
    assert fills["kind"].iloc[0] == "EXIT"


def test_report_when_rejections_then_grouped_by_rule_and_reason_code(built):
    rej = built.frames["rejections"]
    assert set(zip(rej["rule"], rej["reason_code"])) == {("GATE-5", "MAX_ORDER_NOTIONAL"), ("GATE-3", "MAX_POSITION")}
    assert list(built.frames["warnings"]["reason_code"]) == ["TIER_CAP_BUFFER"]
    assert built.totals["rejected_intents"] == 1


def test_ctl2_when_controls_and_incidents_then_history_newest_first_and_open_intents_listed(built):
    """CTL-2/EXIT-1: control changes with who/why, incidents, and EXIT_PLANNED intents are shown."""
    assert list(built.frames["controls"]["state"]) == ["RUNNING", "HALTED"]
    assert list(built.frames["incidents"]["kind"]) == ["RECONCILE_DIVERGENCE"]
    intents = built.frames["intents"]
    assert set(intents["intent_id"]) == {"i-msft", "i-aapl-x"}
    assert "EXIT_PLANNED" in set(intents["state"])
    runs = built.frames["runs"].set_index("phase")
    assert runs.loc["execute", "failed"] == 1 and runs.loc["execute", "last_status"] == "FAILED"
    assert built.totals["open_intents"] == 2 and built.totals["open_incidents"] == 1


def test_report_when_populated_then_every_section_renders_tables_and_figures(built):
    figures = built.figures()
    assert set(figures) == {"pnl", "exposure", "fills", "rejections"}
    for section in rpt.SECTIONS:
        blocks = section_blocks(built, section)
        assert blocks, section
        for kind, payload in blocks:
            if kind == "table":
                assert "<table" in style(payload).to_html()
    summary = built.summary()
    assert "equity 100,200.00" in summary and "fills 3" in summary and "positions 2" in summary


def test_show_when_every_section_shown_then_each_figure_drawn_once(built, monkeypatch, capsys):
    """§7 speed: the report notebook shows four sections with figures; the figures are built once, not per section."""
    import dataclasses

    from tradebook.report import plots, sections

    calls = []
    real = plots.report_figures
    monkeypatch.setattr(plots, "report_figures", lambda report: calls.append(1) or real(report))
    fresh = dataclasses.replace(built)   # nothing cached from other tests
    for section in rpt.SECTIONS:
        sections.show_section(fresh, section)
    assert len(calls) == 1
    assert set(fresh.figures()) == {"pnl", "exposure", "fills", "rejections"} and len(calls) == 1


def test_report_when_ledger_empty_then_clear_none_yet_messages_and_no_crash(ctx):
    report = rpt.build_report(ctx, use_broker=False)
    assert report.figures() == {}
    text = " ".join(p for s in rpt.SECTIONS for k, p in section_blocks(report, s) if k == "text")
    for phrase in ("No fills yet", "No open positions", "No gate rejections", "No open intents",
                   "No incidents recorded", "No equity recorded yet", "No phase runs recorded yet"):
        assert phrase in text
    assert report.summary() == "report: nothing recorded yet"


def test_report_when_show_called_in_notebook_context_then_displays_each_section(built, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(type(obj).__name__))
    for section in rpt.SECTIONS:
        built.show(section)
    assert {"Markdown", "Styler", "Image"} <= set(shown)
    with pytest.raises(ValueError, match="unknown report section"):
        built.show("nope")


def test_export_html_when_executed_notebook_then_html_without_code(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## P&L"),
                nbformat.v4.new_code_cell("secret_code_marker = 1", outputs=[
                    nbformat.v4.new_output("display_data", data={"text/html": "<b>equity 123</b>"})])]
    src = tmp_path / "run.ipynb"
    nbformat.write(nb, src)
    out = rpt.export_html(src, tmp_path / "out" / "report.html")
    html = out.read_text()
    assert "equity 123" in html and "P&amp;L" in html
    assert "secret_code_marker" not in html


def test_export_html_when_notebook_missing_then_clear_error(tmp_path):
    from tradebook.errors import TradebookError

    with pytest.raises(TradebookError, match="does not exist"):
        rpt.export_html(tmp_path / "missing.ipynb", tmp_path / "r.html")


def test_report_when_sim_broker_then_equity_and_clock_come_from_the_broker(ctx):
    """On a fresh project the report reads the SimBroker: starting cash, simulated 'now'."""
    report = rpt.build_report(ctx)
    assert report.totals["equity"] == pytest.approx(ctx.params.sim.starting_cash)
    assert report.asof.date() == ctx.params.sim.start_date
    assert report.summary().startswith(f"report {ctx.params.sim.start_date:%Y-%m-%d} · state RUNNING")
    assert report.figures() == {}  # one session is not a curve yet
    text = " ".join(p for k, p in section_blocks(report, "pnl") if k == "text")
    assert "One session so far" in text


def test_report_when_broker_unavailable_then_positions_at_cost_and_a_note(root, make_params, monkeypatch):
    """Paper mode without keys: the broker cannot be built, the report still renders from the ledger."""
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    ctx = Context(make_params(mode="paper"), root)
    populate(ctx)
    report = rpt.build_report(ctx)
    assert any("broker unavailable" in n for n in report.notes)
    assert set(report.frames["exposure by symbol"]["priced_at"]) == {"cost"}
    assert report.totals["equity"] == pytest.approx(100_200.0)  # the ledger's latest equity


def test_daily_equity_when_broker_clock_behind_ledger_then_no_row_appended():
    import pandas as pd

    raw = pd.DataFrame({"session_date": [D2, D3], "open_eq": [100.0, 110.0], "close_eq": [110.0, 105.0],
                        "realized": [0.0, 0.0], "trades": [0, 0]})
    same_day = rpt.daily_equity(raw, 120.0, at(D3, 16))
    assert list(same_day["equity"]) == [110.0, 120.0]
    behind = rpt.daily_equity(raw, 120.0, at(D1, 16))
    assert list(behind["session_date"]) == [D2, D3]
    ahead = rpt.daily_equity(raw, 120.0, at(D3 + timedelta(days=1), 16))
    assert list(ahead["equity"]) == [110.0, 105.0, 120.0]
    assert ahead["daily_pnl"].iloc[-1] == pytest.approx(15.0)


@pytest.mark.integration
def test_report_cli_when_html_then_notebook_run_recorded_and_runs_report_html_written(root):
    """`tradebook report --html`: a real papermill run of notebooks/report.ipynb, exported without code."""
    import os
    import subprocess
    import sys

    populate(Context.load("params/sim.yaml", {}, root=root))
    out = subprocess.run([sys.executable, "-m", "tradebook.cli", "report", "--html"], cwd=root, text=True,
                         capture_output=True, timeout=240, env={**os.environ, "TRADEBOOK_ROOT": str(root)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "report: OK" in out.stdout
    html = (root / "runs" / "report.html").read_text()
    assert "Exposure against the caps" in html and "RECONCILE_DIVERGENCE" in html and "<img" in html
    assert "build_report(ctx)" not in html  # code cells are left out
    assert list((root / "runs").glob("20*/*-report.ipynb"))
