"""The widget control panel (CTL-4): handlers driven directly, no browser; the notebook under papermill."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tradebook.safety.controls import effective_state, flag_path, freeze
from tradebook.panel.widgets import ControlPanel
from support.trading import control_rows


@pytest.fixture(autouse=True)
def _no_env_kill_switch(monkeypatch):
    monkeypatch.delenv("KILL_SWITCH", raising=False)


@pytest.fixture
def panel(ctx) -> ControlPanel:
    return ControlPanel(ctx, actor="dana@panel")


def _controls(ctx) -> list[tuple]:
    return [(c["state"], c["reason"], c["actor"], c["source"]) for c in control_rows(ctx)]


def test_ctl4_panel_when_built_then_shows_running_and_has_stable_selectors(panel):
    """CTL-4: state, reasons, exposure, buttons with readable labels and tb-* classes for browser tests."""
    assert panel.status.state == "RUNNING" and "RUNNING" in panel.state_html.value
    assert panel.summary().startswith("state RUNNING")
    labels = {b.description for b in (panel.halt_button, panel.resume_button, panel.flatten_button,
                                      panel.refresh_button)}
    assert labels == {"Halt", "Resume", "Flatten", "Refresh"}
    for widget, css in ((panel.halt_button, "tb-halt"), (panel.resume_button, "tb-resume"),
                        (panel.flatten_button, "tb-flatten"), (panel.refresh_button, "tb-refresh"),
                        (panel.reason_box, "tb-reason"), (panel.confirm_box, "tb-confirm"),
                        (panel.state_html, "tb-state"), (panel.log_html, "tb-log"), (panel.widget, "tb-panel")):
        assert css in widget._dom_classes


def test_ctl4_panel_halt_when_clicked_then_flag_file_and_ledger_row_from_widget(panel, ctx):
    """CTL-1/CTL-4: the widget is a kill-switch source: one click halts (flag file + ledger row)."""
    panel.reason_box.value = "spread blew out"
    panel.halt_button.click()
    data = json.loads(flag_path(ctx.params, ctx.root).read_text())
    assert data["source"] == "widget" and data["reason"] == "spread blew out"
    assert _controls(ctx) == [("HALTED", "spread blew out", "dana@panel", "widget")]
    assert panel.status.state == "HALTED" and "HALTED" in panel.state_html.value
    assert "spread blew out" in panel.freezes_html.value and "halt: HALTED" in panel.log_html.value


@pytest.mark.parametrize("confirm, reason", [("", "reviewed"), ("resume", "reviewed"), ("RESUME", "")])
def test_ctl4_panel_resume_when_unconfirmed_or_no_reason_then_nothing_changes(panel, ctx, confirm, reason):
    """CTL-2/CTL-4: resume needs the typed word RESUME and a reason; otherwise it only logs why."""
    freeze(ctx.ledger, "daily loss", "breakers", "BRK-1")
    panel.confirm_box.value, panel.reason_box.value = confirm, reason
    assert panel.on_resume() is None
    assert effective_state(ctx.params, ctx.root).state == "FROZEN" and panel.status.state == "FROZEN"
    assert panel.messages and panel.confirm_box.value == ""


def test_ctl4_panel_resume_when_confirmed_with_reason_then_running_and_flag_removed(panel, ctx):
    """CTL-2/CTL-4: a confirmed resume clears halt and freeze and is recorded with the widget source."""
    freeze(ctx.ledger, "daily loss", "breakers", "BRK-1")
    panel.on_halt()
    panel.confirm_box.value, panel.reason_box.value = "RESUME", "loss reviewed"
    assert panel.on_resume().state == "RUNNING"
    assert not flag_path(ctx.params, ctx.root).exists()
    assert _controls(ctx)[-1] == ("RUNNING", "loss reviewed", "dana@panel", "widget")
    assert panel.status.state == "RUNNING"


def test_ctl5_panel_flatten_when_confirmed_then_positions_closed_and_frozen(panel, ctx):
    """CTL-4/CTL-5: the Flatten button (typed FLATTEN) closes everything and freezes."""
    broker = ctx.broker
    broker.seed_position("AAPL", 10, 300.0)
    session = broker.first_session_on_or_after(broker.now().date())
    broker.advance_to(session.open + timedelta(minutes=10))
    panel.refresh()
    assert [p.symbol for p in panel.positions] == ["AAPL"] and "AAPL" in panel.exposure_html.value
    panel.reason_box.value = "flatten from panel"
    panel.on_flatten()
    assert len(broker.positions()) == 1  # not confirmed: nothing happened
    panel.confirm_box.value, panel.reason_box.value = "FLATTEN", "flatten from panel"
    result = panel.on_flatten()
    assert result.submitted and broker.positions() == []
    assert panel.status.state == "FROZEN" and panel.positions == []


def test_ctl4_panel_when_broker_unavailable_then_still_shows_state_and_halts(root, make_params, monkeypatch):
    """CTL-4: without broker credentials the panel reports it and the kill switch still works."""
    from tradebook.context import Context

    for key in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY"):
        monkeypatch.delenv(key, raising=False)
    ctx = Context(make_params(mode="paper"), root)
    panel = ControlPanel(ctx, actor="ed")
    assert panel.broker_error and "broker unavailable" in panel.account_html.value
    assert panel.on_halt().state == "HALTED" and panel.status.state == "HALTED"


@pytest.mark.integration
def test_ctl4_notebook_when_run_with_papermill_then_panel_built_without_changing_state(root, monkeypatch, tmp_path):
    """CTL-4: notebooks/control_panel.ipynb runs under papermill; loading the panel changes nothing."""
    import nbformat
    import papermill

    monkeypatch.setenv("TRADEBOOK_ROOT", str(root))
    out = tmp_path / "panel-out.ipynb"
    papermill.execute_notebook(str(root / "notebooks" / "control_panel.ipynb"), str(out),
                               parameters={"params_file": "params/sim.yaml", "overrides": {}},
                               cwd=str(root), progress_bar=False, kernel_name="python3")
    nb = nbformat.read(out, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "state RUNNING" in text
    widget_outputs = [o for c in nb.cells for o in c.get("outputs", [])
                      if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widget_outputs
    assert not list((root / "runs").glob("KILL_SWITCH*"))


def test_ctl4_panel_last_runs_when_ledger_has_runs_then_listed_and_when_locked_then_busy(ctx):
    """CTL-4 / OPS-1: the panel's last runs come from the runs store (a broken import inside the panel is
    an error, never shown as "ledger busy"); a ledger held by another process is shown as busy."""
    import subprocess
    import sys
    from datetime import datetime, timezone

    from tradebook.ledger import runs
    from tradebook.panel.widgets import _runs_html, recent_runs

    started = datetime(2011, 7, 5, 13, 25, tzinfo=timezone.utc)
    with ctx.ledger.transaction() as con:
        runs.start(con, "run-1", "reconcile", started_at=started, notebook_path="runs/2011-07-05/reconcile.ipynb",
                   sim_time=started)
    assert [(phase, state) for phase, state, *_ in recent_runs(ctx)] == [("reconcile", "RUNNING")]
    status = effective_state(ctx.params, ctx.root)
    assert "reconcile" in _runs_html(ctx, status) and "busy" not in _runs_html(ctx, status)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(30)", str(ctx.params.ledger_path(ctx.root))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert "ledger busy" in _runs_html(ctx, status)
    finally:
        holder.kill()
        holder.wait()
