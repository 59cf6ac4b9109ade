"""REC-8: a failed reconcile is an incident and an automatic REDUCE_ONLY trip (CTL-3); no entry is
sent on a session whose reconcile did not succeed (exits still are)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tradebook.safety import controls
from tradebook.testing.alpaca_fake.server import FakeAlpacaServer
from tradebook.context import Context
from tradebook.errors import BrokerUnavailable
from tradebook.ledger import events
from tradebook.phases.execute import run_execute
from tradebook.params import load_params
from tradebook.phases.reconcile import run_reconcile
from tradebook.engine.runner import run_phase
from support.trading import (DECIDE_DAY, EXEC_DAY, broker_orders, control_rows, decide_time, hold, incidents,
                             intent_states, make_ctx, ny, plant, stored_intents, stored_verdicts, window_time)

EXIT_ID, ENTRY_ID = "20110720-MSFT-EXIT", "20110720-AAPL-ENTRY"


@pytest.fixture
def fctx(root):
    """Decided after the 2011-07-20 close: exit MSFT (held), enter AAPL; clock before the next open."""
    ctx = make_ctx(root)
    ctx.broker.advance_to(decide_time())
    hold(ctx, "MSFT", 100, 25.0)
    plant(ctx, "MSFT", "EXIT", 100)
    plant(ctx, "AAPL", "ENTRY", 10)
    ctx.broker.advance_to(ny(EXEC_DAY, 9, 15))
    return ctx


def _fail_reconcile(ctx) -> None:
    ctx.broker.inject_fault("http_500", op="positions")
    with pytest.raises(BrokerUnavailable):
        run_reconcile(ctx)


def _states(ctx) -> dict[str, str]:
    return intent_states(ctx.ledger)


def _gate_reason(ctx, iid: str) -> str | None:
    return {i.intent_id: i.gate_reason for i in stored_intents(ctx.ledger)}[iid]


def test_rec8_when_positions_read_fails_then_incident_alert_and_reduce_only(fctx):
    """REC-8: the failure is recorded (incident, ALERT, REDUCE_ONLY by the auto actor) and still raised."""
    _fail_reconcile(fctx)
    recorded = incidents(fctx)
    assert [(i["kind"], i["session_date"]) for i in recorded] == [("RECONCILE_FAILED", EXEC_DAY)]
    assert "HTTP 500" in recorded[0]["detail"]
    status = controls.effective_state(fctx.params, fctx.root)
    assert status.state == "REDUCE_ONLY" and "reconcile failed" in status.reasons[0]
    assert len([e for e in fctx.ledger.read(events.find, "ALERT") if "reconcile failed" in e.reason]) == 1
    assert [c["ts"] for c in control_rows(fctx)] == [fctx.now()]   # the simulated clock


def test_rec8_when_reconcile_failed_then_execute_sends_the_exit_and_no_entry(fctx):
    """REC-8: after a failed reconcile the window sends only the position-reducing exit."""
    _fail_reconcile(fctx)
    fctx.broker.advance_to(window_time())
    run_execute(fctx)
    assert _states(fctx) == {EXIT_ID: "FILLED", ENTRY_ID: "REJECTED"}
    assert [(o[1], o[2]) for o in broker_orders(fctx)] == [("MSFT", "sell")]


def test_rec8_when_operator_resumes_after_failed_reconcile_then_entries_still_wait_for_a_good_one(fctx):
    """REC-8: clearing REDUCE_ONLY does not vouch for the book: the entry is refused NOT_RECONCILED."""
    _fail_reconcile(fctx)
    controls.resume(fctx.params, fctx.root, "broker back, checked by hand")
    fctx.broker.advance_to(window_time())
    report = run_execute(fctx)
    assert _states(fctx) == {EXIT_ID: "FILLED", ENTRY_ID: "REJECTED"}
    assert _gate_reason(fctx, ENTRY_ID) == "NOT_RECONCILED"
    assert "failed" in report.entry_blocker


def test_rec8_when_reconcile_succeeds_after_a_failure_then_entries_are_sent(fctx):
    """REC-8: a later successful reconcile of the session (and the operator's resume) allow entries again."""
    _fail_reconcile(fctx)
    controls.resume(fctx.params, fctx.root, "broker back")
    run_reconcile(fctx)
    fctx.broker.advance_to(window_time())
    run_execute(fctx)
    assert _states(fctx) == {EXIT_ID: "FILLED", ENTRY_ID: "FILLED"}


def test_rec8_when_only_an_earlier_session_was_reconciled_then_entry_refused_not_reconciled(root):
    """REC-8: a reconcile vouches for its own session only (the one in progress, or the next one)."""
    ctx = make_ctx(root)
    ctx.broker.advance_to(ny(DECIDE_DAY, 9, 15))
    run_reconcile(ctx)                       # covers 2011-07-20
    ctx.broker.advance_to(decide_time())
    plant(ctx, "AAPL", "ENTRY", 10)
    ctx.broker.advance_to(window_time())     # 2011-07-21: never reconciled
    run_execute(ctx)
    assert _gate_reason(ctx, ENTRY_ID) == "NOT_RECONCILED"
    [detail] = [v.detail for v in stored_verdicts(ctx.ledger) if v.reason_code == "NOT_RECONCILED"]
    assert "2011-07-21" in detail and "2011-07-20" in detail
    assert broker_orders(ctx) == []


def test_rec8_when_failed_reconcile_tripped_reduce_only_then_it_may_rearm_under_ctl3(fctx):
    """REC-8 + CTL-3: the trip is automatic: after the cooldown, with health ok, it may re-arm."""
    _fail_reconcile(fctx)
    later = fctx.now() + timedelta(minutes=fctx.params.rearm_cooldown_min + 1)
    with fctx.ledger.connect() as con:
        assert "cooldown" in controls.rearm_blocker(con, fctx.params, True, fctx.now())
        assert controls.rearm_blocker(con, fctx.params, True, later) is None


def test_rec8_when_reconcile_phase_fails_on_broker_then_run_failed_and_incident_recorded(root):
    """REC-8 through the runner: the notebook run fails, and the ledger holds the incident and the trip."""
    ctx = Context(load_params(root / "params" / "sim.yaml"), root)
    ctx.broker.inject_fault("http_500", op="positions")
    record = run_phase("reconcile", root=root, raise_on_failure=False)
    assert record.status == "FAILED" and "BrokerUnavailable" in record.error
    assert [i["kind"] for i in incidents(ctx)] == ["RECONCILE_FAILED"]
    assert controls.effective_state(ctx.params, root).state == "REDUCE_ONLY"


def test_rec8_when_alpaca_fake_answers_500_on_positions_then_incident_and_reduce_only(root, monkeypatch):
    """REC-8 on the Alpaca path: the fake answers 500 to GET /v2/positions."""
    monkeypatch.setenv("APCA_API_KEY_ID", "PKRECONCILEFAILTEST01")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "SKRECONCILEFAILTESTSECRET01")
    with FakeAlpacaServer(start=ny(EXEC_DAY, 9, 0), key_id="PKRECONCILEFAILTEST01",
                          secret_key="SKRECONCILEFAILTESTSECRET01") as fake:
        fake.inject("http_500", times=10, path="/v2/positions")
        overrides = {**fake.overrides(), "runs_dir": str(root / "runs"), "alpaca.retries": 0}
        ctx = Context(load_params(root / "params" / "alpaca-paper.yaml", overrides), root)
        with pytest.raises(BrokerUnavailable):
            run_reconcile(ctx)
        assert [i["kind"] for i in incidents(ctx)] == ["RECONCILE_FAILED"]
        assert controls.effective_state(ctx.params, root).state == "REDUCE_ONLY"
