"""Trading controls and the kill switch: CTL-1 sources, CTL-2 freezes, CTL-3 re-arm, CTL-5 flatten,
and their CLI commands (CTL-4: tradebook halt | resume | flatten | status)."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tradebook.safety.controls import (effective_state, flag_path, freeze, halt, record_incident, reduce_only,
                                resume, try_rearm)
from tradebook.errors import ControlRefused, LedgerLocked
from tradebook.phases.flatten import flatten
from tradebook.ledger import controls as control_store
from tradebook.ledger import events
from tradebook.ledger import trades as trade_store
from tradebook.ledger.db import Ledger
from support.trading import stored_intents, stored_verdicts

T0 = datetime(2011, 7, 5, 14, 0, tzinfo=timezone.utc)  # 10:00 in New York


@pytest.fixture(autouse=True)
def _no_env_kill_switch(monkeypatch):
    monkeypatch.delenv("KILL_SWITCH", raising=False)


@pytest.fixture
def params(make_params):
    return make_params()


@pytest.fixture
def ledger(params, root) -> Ledger:
    return Ledger(params.ledger_path(root))


def _hold_lock(path: Path) -> subprocess.Popen:
    """A real second process that opens the ledger read-write and keeps it (OPS-1)."""
    code = (f"import duckdb, time; c = duckdb.connect({str(path)!r}); "
            "print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()


def _controls(ledger: Ledger) -> list[tuple]:
    return [(c["state"], c["reason"], c["actor"], c["source"]) for c in ledger.read(control_store.control_history)]


def _event_kinds(ledger: Ledger) -> list[str]:
    return [e.kind for e in ledger.read(events.find)]


# --- CTL-1: sources ---------------------------------------------------------------------------
def test_ctl1_state_when_no_source_is_set_then_running_and_no_ledger_is_created(params, root):
    """CTL-1: nothing set -> RUNNING; a status check never creates a ledger."""
    status = effective_state(params, root)
    assert (status.state, status.reasons, status.sources) == ("RUNNING", (), ())
    assert status.allows_entries and status.allows_exits
    assert not params.ledger_path(root).exists()


@pytest.mark.parametrize("value, state", [("1", "HALTED"), ("yes", "HALTED"), ("0", "RUNNING"), ("", "RUNNING")])
def test_ctl1_state_when_env_kill_switch_set_then_halted(params, root, monkeypatch, value, state):
    """CTL-1: env KILL_SWITCH=1 halts (any truthy value does; 0 or empty does not)."""
    monkeypatch.setenv("KILL_SWITCH", value)
    status = effective_state(params, root)
    assert status.state == state
    assert ("env" in status.sources) == (state == "HALTED")


def test_ctl1_state_when_flag_file_merely_touched_then_halted(params, root):
    """CTL-1: the flag file halts whatever its content (an operator may just `touch runs/KILL_SWITCH`)."""
    flag_path(params, root).touch()
    status = effective_state(params, root)
    assert status.state == "HALTED" and status.sources == ("flag_file",)
    assert not status.allows_exits


def test_ctl1_halt_when_ledger_free_then_flag_json_and_ledger_row_written(params, root, ledger):
    """CTL-1: halt writes the flag file (reason, actor, ts) and records a HALTED row and event."""
    status = halt(params, root, "  bad fills  ", actor="alice", source="cli")
    data = json.loads(flag_path(params, root).read_text())
    assert data["reason"] == "bad fills" and data["actor"] == "alice" and data["state"] == "HALTED"
    assert datetime.fromisoformat(data["ts"]).tzinfo is not None
    assert status.state == "HALTED" and {"flag_file", "ledger"} <= set(status.sources)
    assert any("ledger control row recorded" in n for n in status.notes)
    assert _controls(ledger) == [("HALTED", "bad fills", "alice", "cli")]
    assert "CONTROL_HALTED" in _event_kinds(ledger)
    assert not list(flag_path(params, root).parent.glob(".KILL_SWITCH*"))  # atomic write left no temp file


def test_ctl1_when_another_process_holds_the_ledger_then_state_fails_closed_and_halt_still_works(
        params, root, ledger, monkeypatch):
    """CTL-1/OPS-1: with the ledger locked by a real process, status is HALTED (fail closed), halt
    works through the flag file alone and says so, and resume refuses rather than clear blind."""
    monkeypatch.setenv("TRADEBOOK_LEDGER_LOCK_TIMEOUT_S", "0.5")
    ledger.check()
    holder = _hold_lock(ledger.path)
    try:
        locked = effective_state(params, root)
        assert locked.state == "HALTED" and locked.sources == ("ledger_unavailable",)
        assert "LedgerLocked" in locked.ledger_error
        status = halt(params, root, "ledger stuck, stop everything")
        assert status.state == "HALTED" and flag_path(params, root).exists()
        assert any("not recorded in the ledger" in n and "LedgerLocked" in n for n in status.notes)
        again = effective_state(params, root)
        assert again.sources[0] == "flag_file" and "ledger stuck, stop everything" in again.reasons[0]
        with pytest.raises(LedgerLocked):
            resume(params, root, "try to clear while locked")
        assert flag_path(params, root).exists()
    finally:
        _release(holder)
    assert _controls(ledger) == []  # the halt was not recorded: the flag alone holds it
    assert effective_state(params, root).state == "HALTED"


def test_ctl1_halt_when_flag_file_cannot_be_written_then_ledger_row_alone_halts(params, root, ledger):
    """CTL-1: halt does not depend on the flag file either; it says which source failed."""
    flag_path(params, root).mkdir()  # a directory where the flag file should be: writing it fails
    status = halt(params, root, "flag path broken")
    assert status.state == "HALTED" and "ledger" in status.sources
    assert any("not recorded in the flag file" in n for n in status.notes)
    assert _controls(ledger) == [("HALTED", "flag path broken", "operator", "cli")]


def test_ctl1_when_ledger_corrupt_then_halted_fail_closed_and_file_untouched(params, root):
    """CTL-1: a corrupt ledger -> HALTED with the reason; halt still writes the flag file."""
    path = params.ledger_path(root)
    path.write_bytes(b"not a duckdb file" * 100)
    status = effective_state(params, root)
    assert status.state == "HALTED" and "corrupt" in status.reasons[0]
    assert halt(params, root, "corrupt ledger").state == "HALTED"
    assert flag_path(params, root).exists()
    assert path.read_bytes() == b"not a duckdb file" * 100


def test_ctl1_state_when_sources_disagree_then_most_restrictive_wins_with_all_reasons(
        params, root, ledger, monkeypatch):
    """CTL-1: FROZEN > HALTED > REDUCE_ONLY > RUNNING; every reason is returned, strictest first."""
    reduce_only(ledger, "api circuit open", "api_breaker", now=T0)
    freeze(ledger, "daily loss 2.3%", "breakers", "BRK-1", now=T0 + timedelta(minutes=5))
    monkeypatch.setenv("KILL_SWITCH", "1")
    status = effective_state(params, root)
    assert status.state == "FROZEN" and status.since == T0 + timedelta(minutes=5)
    assert "daily loss 2.3%" in status.reasons[0]
    assert any("KILL_SWITCH" in r for r in status.reasons) and any("api circuit" in r for r in status.reasons)
    assert set(status.sources) == {"env", "ledger"}


# --- CTL-2: freezes never auto-clear ----------------------------------------------------------
def test_ctl2_freeze_when_time_passes_and_rearm_tried_then_still_frozen(params, root, ctx):
    """CTL-2: a freeze survives time, health and re-arm attempts."""
    freeze(ctx.ledger, "max drawdown 10%", "breakers", "BRK-2", now=T0)
    assert try_rearm(ctx, health_ok=True, now=T0 + timedelta(days=3)) is False
    assert effective_state(params, root).state == "FROZEN"


def test_ctl2_lower_request_when_frozen_then_state_not_lowered(params, root, ledger):
    """CTL-2: an auto trip or a halt while FROZEN is noted as an event, never written as a lower state."""
    freeze(ledger, "min equity", "breakers", "BRK-3", now=T0)
    reduce_only(ledger, "divergence", "reconcile", now=T0)
    status = halt(params, root, "operator halt")
    assert status.state == "FROZEN"
    assert json.loads(flag_path(params, root).read_text())["state"] == "HALTED"
    assert [r[0] for r in _controls(ledger)] == ["FROZEN"]
    assert _event_kinds(ledger).count("CONTROL_NOTED") == 2


@pytest.mark.parametrize("reason", ["", "   "])
def test_ctl2_resume_when_reason_blank_then_refused_and_still_frozen(params, root, ledger, reason):
    """CTL-2: clearing needs an explicit reason."""
    freeze(ledger, "daily loss", "breakers", "BRK-1", now=T0)
    with pytest.raises(ControlRefused, match="reason"):
        resume(params, root, reason)
    assert effective_state(params, root).state == "FROZEN"


def test_ctl2_resume_when_env_kill_switch_set_then_refused_telling_to_unset(params, root, monkeypatch):
    """CTL-2: resume cannot override env KILL_SWITCH=1; it tells the operator to unset it."""
    halt(params, root, "stop")
    monkeypatch.setenv("KILL_SWITCH", "1")
    with pytest.raises(ControlRefused, match="unset KILL_SWITCH"):
        resume(params, root, "all good")
    assert flag_path(params, root).exists()


def test_ctl2_resume_when_reason_given_then_running_flag_removed_and_recorded(params, root, ledger):
    """CTL-2: resume with a reason clears FROZEN and HALTED, removes the flag, records row and event."""
    freeze(ledger, "daily loss", "breakers", "BRK-1", now=T0)
    halt(params, root, "stop")
    status = resume(params, root, "loss reviewed with risk", actor="bob")
    assert status.state == "RUNNING" and not flag_path(params, root).exists()
    assert _controls(ledger)[-1] == ("RUNNING", "loss reviewed with risk", "bob", "cli")
    assert "CONTROL_RESUME" in _event_kinds(ledger)
    assert resume(params, root, "again").notes[-1] == "already RUNNING; nothing to resume"


# --- CTL-3: auto trips re-arm only by the rules -----------------------------------------------
def test_ctl3_rearm_when_auto_trip_cooled_down_healthy_and_few_incidents_then_running(params, root, ctx):
    """CTL-3: REDUCE_ONLY from an auto trip re-arms after the cooldown with a passing health check."""
    reduce_only(ctx.ledger, "api circuit open", "api_breaker", now=T0)
    status = effective_state(params, root)
    assert status.state == "REDUCE_ONLY" and status.allows_exits and not status.allows_entries
    assert try_rearm(ctx, health_ok=True, now=T0 + timedelta(minutes=30)) is True
    assert effective_state(params, root).state == "RUNNING"
    assert "CONTROL_REARM" in _event_kinds(ctx.ledger)


@pytest.mark.parametrize("minutes, health_ok, extra_incidents", [
    (29, True, 0),    # cooldown not over
    (31, False, 0),   # health check fails
    (31, True, 2),    # 1 (the trip) + 2 = 3 incidents today = max_incidents_per_day
])
def test_ctl3_rearm_when_a_rule_fails_then_stays_reduce_only(params, root, ctx, minutes, health_ok,
                                                           extra_incidents):
    """CTL-3: cooldown, health check and MAX_INCIDENTS_PER_DAY each block the re-arm."""
    reduce_only(ctx.ledger, "divergence twice", "reconcile", now=T0)
    with ctx.ledger.transaction() as con:
        for i in range(extra_incidents):
            record_incident(con, "API_ERRORS", f"burst {i}", T0)
    assert try_rearm(ctx, health_ok=health_ok, now=T0 + timedelta(minutes=minutes)) is False
    assert effective_state(params, root).state == "REDUCE_ONLY"


def test_ctl3_rearm_when_incidents_were_yesterday_and_second_trip_recent_then_cooldown_from_last_trip(ctx):
    """CTL-3: incidents count per exchange day; a new trip restarts the cooldown."""
    with ctx.ledger.transaction() as con:
        for i in range(3):
            record_incident(con, "API_ERRORS", f"old {i}", T0 - timedelta(days=1))
    reduce_only(ctx.ledger, "circuit open", "api_breaker", now=T0)
    reduce_only(ctx.ledger, "circuit open again", "api_breaker", now=T0 + timedelta(minutes=20))
    assert try_rearm(ctx, True, T0 + timedelta(minutes=35)) is False
    assert try_rearm(ctx, True, T0 + timedelta(minutes=50)) is True


def test_ctl3_rearm_when_halted_by_operator_then_never(params, root, ctx):
    """CTL-3: re-arm never touches HALTED (or FROZEN), even after an auto trip in the same episode."""
    reduce_only(ctx.ledger, "circuit open", "api_breaker", now=T0)
    halt(params, root, "operator stop")
    flag_path(params, root).unlink()
    assert try_rearm(ctx, True, T0 + timedelta(hours=2)) is False
    assert effective_state(params, root).state == "HALTED"


def test_record_incident_when_late_evening_utc_then_counted_on_the_new_york_date(ledger):
    """CTL-3: 'today' is the exchange date (America/New_York)."""
    with ledger.transaction() as con:
        record_incident(con, "DIVERGENCE", "AAPL qty", datetime(2011, 7, 6, 2, 0, tzinfo=timezone.utc))
    assert [str(i["session_date"]) for i in ledger.read(control_store.incident_history)] == ["2011-07-05"]
    assert "INCIDENT" in _event_kinds(ledger)


def test_record_incident_when_now_is_naive_then_value_error(ledger):
    with ledger.transaction() as con, pytest.raises(ValueError, match="timezone-aware"):
        record_incident(con, "X", "naive", datetime(2011, 7, 5, 10, 0))


# --- CTL-4: the CLI ---------------------------------------------------------------------------
@pytest.fixture
def cli(root, monkeypatch):
    from typer.testing import CliRunner

    from tradebook.cli import app

    monkeypatch.setenv("TRADEBOOK_ROOT", str(root))
    runner = CliRunner()
    return lambda *args, input=None: runner.invoke(app, list(args), input=input)


def test_ctl4_cli_when_halt_then_status_shows_it_and_resume_needs_typed_confirmation(cli, params, root):
    """CTL-4: tradebook halt / status / resume (typed RESUME unless --yes), each recorded."""
    out = cli("halt", "--reason", "cli test halt", "--params", "params/sim.yaml")   # this account only
    assert out.exit_code == 0 and "HALTED" in out.output and flag_path(params, root).exists()
    status = cli("status")
    assert status.exit_code == 3 and "HALTED" in status.output and "cli test halt" in status.output
    refused = cli("resume", "--reason", "checked", input="resume\n")
    assert refused.exit_code == 1 and flag_path(params, root).exists()
    done = cli("resume", "--reason", "checked", input="RESUME\n")
    assert done.exit_code == 0 and "RUNNING" in done.output and not flag_path(params, root).exists()


def test_ctl4_cli_status_when_ledger_locked_then_state_from_flag_and_ledger_busy(cli, params, root, ledger):
    """CTL-4/OPS-1: status still answers from the flag file while another process holds the ledger."""
    ledger.check()
    halt(params, root, "before the lock")
    holder = _hold_lock(ledger.path)
    try:
        out = cli("status")
    finally:
        _release(holder)
    assert out.exit_code == 4, out.output  # ledger unreadable outranks not RUNNING (README "Health")
    assert "HALTED" in out.output and "before the lock" in out.output and "ledger busy" in out.output


def test_ctl4_cli_flatten_when_not_confirmed_then_nothing_happens(cli, params, root):
    """CTL-5 via CLI: without typing FLATTEN nothing is halted, cancelled or sold."""
    out = cli("flatten", "--reason", "test", input="no\n")
    assert out.exit_code == 1 and not flag_path(params, root).exists()
    assert effective_state(params, root).state == "RUNNING"


# --- CTL-5: flatten on the SimBroker ----------------------------------------------------------
def _in_session(broker, minutes: int = 10) -> datetime:
    session = broker.first_session_on_or_after(broker.now().date())
    broker.advance_to(session.open + timedelta(minutes=minutes))
    return broker.now()


def _limit_buy(broker, cid: str, symbol: str = "IBM", price: str = "1.00"):
    from decimal import Decimal

    from tradebook.broker.base import OrderRequest

    return broker.submit(OrderRequest(symbol, "buy", Decimal(1), cid, order_type="limit",
                                      limit_price=Decimal(price), time_in_force="gtc"))


def test_ctl5_flatten_when_positions_and_open_orders_in_session_then_cancelled_closed_and_frozen(ctx, params, root):
    """CTL-5: cancel open orders, close all positions at market, freeze; audited as EXIT intents."""
    broker = ctx.broker
    broker.seed_position("AAPL", 10, 300.0)
    broker.seed_position("MSFT", 20, 25.0)
    now = _in_session(broker)
    _limit_buy(broker, "entry-ibm-1")
    result = flatten(ctx, "strategy broken", actor="carol")
    day = f"{now:%Y%m%d}"
    assert result.cancelled == ("entry-ibm-1",)
    assert result.submitted == (f"flat-{day}-AAPL", f"flat-{day}-MSFT") and not result.failed
    assert broker.positions() == [] and broker.open_orders() == []
    assert result.status.state == "FROZEN" and effective_state(params, root).state == "FROZEN"
    assert json.loads(flag_path(params, root).read_text())["state"] == "FROZEN"
    rows = [(i.kind, i.urgency, i.order_type, i.state, i.gate_status) for i in stored_intents(ctx.ledger)]
    assert rows == [("EXIT", "immediate", "market", "FILLED", "bypass")] * 2
    assert len([v for v in stored_verdicts(ctx.ledger) if v.rule == "CTL-5"]) == 2
    assert sorted((t["symbol"], t["side"], t["kind"]) for t in ctx.ledger.read(trade_store.history)) == [
        ("AAPL", "sell", "FILL"), ("MSFT", "sell", "FILL")]
    kinds = _event_kinds(ctx.ledger)
    for kind in ("FLATTEN_START", "FLATTEN_CANCEL", "FLATTEN_SUBMIT", "CONTROL_FROZEN", "FLATTEN_DONE"):
        assert kind in kinds
    assert _controls(ctx.ledger)[-1] == ("FROZEN", "flatten: strategy broken", "carol", "cli")


def test_ctl5_flatten_when_run_twice_while_market_closed_then_one_closing_order_only(ctx):
    """CTL-5/EXE-1: a second flatten finds its working closing order by client id and keeps it."""
    broker = ctx.broker
    broker.seed_position("AAPL", 10, 300.0)
    first = flatten(ctx, "first")
    assert len(first.submitted) == 1 and broker.open_orders()[0].status == "accepted"
    second = flatten(ctx, "second")
    assert second.submitted == () and second.cancelled == () and second.already_closing == ("AAPL",)
    assert [o.client_order_id for o in broker.open_orders()] == list(first.submitted)
    _in_session(broker)
    assert broker.positions() == []
    assert [(f.symbol, f.side, f.qty) for f in broker.fills()] == [("AAPL", "sell", 10.0)]


def test_ctl5_flatten_when_close_fails_then_reported_and_next_flatten_uses_a_new_client_id(ctx):
    """CTL-5: a failed close is reported (still FROZEN); the retry never reuses the failed id."""
    broker = ctx.broker
    broker.seed_position("AAPL", 10, 300.0)
    now = _in_session(broker)
    broker.inject_fault("http_503")
    failed = flatten(ctx, "first try")
    assert failed.submitted == () and failed.failed[0][0] == "AAPL" and "503" in failed.failed[0][1]
    assert failed.status.state == "FROZEN" and len(broker.positions()) == 1
    assert [i.state for i in stored_intents(ctx.ledger)] == ["FAILED"]
    retry = flatten(ctx, "second try")
    assert retry.submitted == (f"flat-{now:%Y%m%d}-AAPL-2",) and broker.positions() == []


def test_ctl5_flatten_when_submit_outcome_unknown_then_looked_up_not_resent(ctx):
    """CTL-5/EXE-1: a timeout after the venue accepted is resolved by client-id lookup: one sell."""
    broker = ctx.broker
    broker.seed_position("MSFT", 20, 25.0)
    _in_session(broker)
    broker.inject_fault("timeout_after_accept")
    result = flatten(ctx, "timeout test")
    again = flatten(ctx, "timeout test again")
    assert len(result.submitted) == 1 and again.submitted == () and broker.positions() == []
    assert [(f.symbol, f.qty) for f in broker.fills()] == [("MSFT", 20.0)]
    assert [i.state for i in stored_intents(ctx.ledger)] == ["FILLED"]


def test_ctl5_flatten_when_reason_blank_then_refused_and_nothing_sent(ctx, params, root):
    """CTL-5: flatten needs a reason; refused before anything is halted, cancelled or sold."""
    ctx.broker.seed_position("AAPL", 10, 300.0)
    with pytest.raises(ControlRefused, match="reason"):
        flatten(ctx, "  ")
    assert len(ctx.broker.positions()) == 1 and not flag_path(params, root).exists()


def test_ctl5_cli_flatten_when_confirmed_then_positions_closed_and_frozen(cli, ctx):
    """CTL-5 via CLI: typed FLATTEN confirmation, then the same flatten."""
    ctx.broker.seed_position("AAPL", 10, 300.0)
    _in_session(ctx.broker)
    out = cli("flatten", "--reason", "cli flatten", input="FLATTEN\n")
    assert out.exit_code == 0, out.output
    assert "submitted 1 closing order" in out.output and "FROZEN" in out.output
    assert ctx.broker.positions() == []
