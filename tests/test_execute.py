"""Execute: windows, gate, crash-safe idempotent submit, faults (EXIT-1…3, EXE-1, EXE-3, EXE-5, EXE-6, POS-3)."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tradebook.safety import controls
from tradebook.phases import intents as it
from tradebook.broker.base import OrderRequest
from tradebook.ledger import closed_today, cooldowns, events
from tradebook.phases.execute import run_execute
from tradebook.phases.reconcile import run_reconcile
from support.trading import (EXEC_DAY, broker_orders, decided_book, decide_time, fills, hold, intent_state, intent_states,
                             ledger_positions, make_ctx, mid, ny, plant, positions_match, record_order, stored_intents,
                             stored_orders, stored_verdicts, window_time)


@pytest.fixture
def ectx(root):
    """Decided on 2011-07-20 after the close: exit MSFT (held), enter AAPL and IBM; clock still at decide time."""
    return decided_book(root)


EXIT_ID, AAPL_ID, IBM_ID = "20110720-MSFT-EXIT", "20110720-AAPL-ENTRY", "20110720-IBM-ENTRY"


def _states(ctx) -> dict[str, str]:
    return intent_states(ctx.ledger)


def _orders_of(ctx, iid: str) -> list:
    return [o for o in stored_orders(ctx.ledger) if o.intent_id == iid]


def test_exit1_when_before_window_then_nothing_sent_and_intents_stay_planned(ectx):
    """EXIT-1: outside open+5…open+30 nothing is sent; planned intents wait."""
    ectx.broker.advance_to(ny(EXEC_DAY, 9, 31))
    report = run_execute(ectx)
    assert broker_orders(ectx) == [] and set(_states(ectx).values()) == {"PLANNED"}
    assert sorted(report.waiting) == sorted([EXIT_ID, AAPL_ID, IBM_ID]) and "outside" in report.summary()


def test_exit1_exit2_when_in_window_then_exits_first_with_limit_orders(ectx):
    """EXIT-1: executed in the next session's window; exits first; EXIT-2: limit orders for planned intents."""
    ectx.broker.advance_to(window_time())
    report = run_execute(ectx)
    assert [o.intent_id for o in report.outcomes] == [EXIT_ID, AAPL_ID, IBM_ID]
    assert _states(ectx) == {EXIT_ID: "FILLED", AAPL_ID: "FILLED", IBM_ID: "FILLED"}
    assert {o.order_type for o in stored_orders(ectx.ledger)} == {"limit"}
    assert sorted(o[0] for o in broker_orders(ectx)) == sorted(it.client_order_id(i, 1) for i in (EXIT_ID, AAPL_ID, IBM_ID))
    assert positions_match(ectx)


def test_exe6_when_filled_then_fill_rows_carry_slippage_vs_decision_price(ectx):
    """EXE-6: every fill is recorded with the intent's decision price and the slippage in bps."""
    ectx.broker.advance_to(window_time())
    run_execute(ectx)
    rows = fills(ectx)
    assert len(rows) == 3
    for f in rows:
        sign = 1 if f["side"] == "buy" else -1
        assert f["slippage_bps"] == pytest.approx(sign * (f["price"] - f["decision_price"]) / f["decision_price"] * 1e4)


def test_exit3_when_window_missed_then_alert_once_and_intent_stays_planned(ectx):
    """EXIT-3: a window missed (process down) leaves intents PLANNED with one MISSED_WINDOW alert each."""
    ectx.broker.advance_to(ny(EXEC_DAY, 10, 30))
    report = run_execute(ectx)
    assert sorted(report.missed) == sorted([EXIT_ID, AAPL_ID, IBM_ID]) and broker_orders(ectx) == []
    run_execute(ectx)
    alerts = ectx.ledger.read(events.find, "ALERT", alert="MISSED_WINDOW")
    assert sorted(a.data["intent_id"] for a in alerts) == sorted([EXIT_ID, AAPL_ID, IBM_ID])
    assert set(_states(ectx).values()) == {"PLANNED"}


def test_exit3_when_restarted_next_window_then_exit_executes_and_stale_entries_expire(ectx, root):
    """EXIT-3: intents survive a restart (new process = new Context); the next window runs them.
    A day-old entry is stale (gate STALE_SIGNAL → EXPIRED); a planned exit is only warned, and executes."""
    ectx.broker.advance_to(ny(EXEC_DAY, 10, 30))
    run_execute(ectx)                                         # missed
    fresh = make_ctx(root)                                    # "restart"
    fresh.broker.advance_to(window_time(EXEC_DAY + timedelta(days=1)))
    run_reconcile(fresh)                                      # REC-8: the day's reconcile comes first
    run_execute(fresh)
    assert _states(fresh) == {EXIT_ID: "FILLED", AAPL_ID: "EXPIRED", IBM_ID: "EXPIRED"}
    assert {i.intent_id: i.gate_reason for i in stored_intents(fresh.ledger)}[AAPL_ID] == "STALE_SIGNAL"


def test_exe1_when_submit_times_out_after_accept_then_looked_up_and_adopted_once(ectx):
    """EXE-1: an unknown outcome is resolved by looking the client_order_id up, never by resending."""
    ectx.broker.inject_fault("timeout_after_accept")
    ectx.broker.advance_to(window_time())
    run_execute(ectx)
    run_execute(ectx)
    cids = [o[0] for o in broker_orders(ectx)]
    assert len(cids) == len(set(cids)) == 3 and _states(ectx)[EXIT_ID] == "FILLED"
    assert positions_match(ectx)


def test_exe1_when_submit_fails_once_with_http_500_then_looked_up_and_resent_with_same_id(ectx):
    """EXE-1: after a transient error the id is looked up; absent → sent once more with the *same* id."""
    ectx.broker.inject_fault("http_500")
    ectx.broker.advance_to(window_time())
    run_execute(ectx)
    assert [o[0] for o in broker_orders(ectx) if o[1] == "MSFT"] == [it.client_order_id(EXIT_ID, 1)]
    assert _states(ectx)[EXIT_ID] == "FILLED"


def test_exe1_when_submit_keeps_failing_with_http_500_then_next_run_resends_same_client_id(ectx):
    """EXE-1: still not at the broker → SUBMITTED with outcome unknown; the next run looks up, re-gates
    and sends the *same* id."""
    ectx.broker.inject_fault("http_500", times=2)
    ectx.broker.advance_to(window_time())
    first = run_execute(ectx)
    assert first.outcomes[0].state == "SUBMITTED" and "unknown" in first.outcomes[0].reason
    assert [o.status for o in _orders_of(ectx, EXIT_ID)] == ["unknown"]
    run_execute(ectx)
    exit_orders = [o for o in broker_orders(ectx) if o[1] == "MSFT"]
    assert [o[0] for o in exit_orders] == [it.client_order_id(EXIT_ID, 1)]
    assert _states(ectx)[EXIT_ID] == "FILLED" and positions_match(ectx)


def test_exe1_when_broker_already_has_the_client_id_then_adopted_not_resent(ectx):
    """EXE-1: look the id up at the broker before sending; a hit is adopted."""
    ectx.broker.advance_to(window_time())
    cid = it.client_order_id(AAPL_ID, 1)
    ectx.broker.submit(OrderRequest("AAPL", "buy", Decimal(10), cid, "market", None))
    run_execute(ectx)
    assert [o[0] for o in broker_orders(ectx)].count(cid) == 1
    assert _states(ectx)[AAPL_ID] == "FILLED"
    submitted = ectx.ledger.read(events.find, "INTENT_SUBMITTED")
    assert len([e for e in submitted if e.reason.startswith("adopted")]) == 1


def test_exe1_when_pending_order_never_reached_broker_after_window_then_new_attempt_new_id(ectx):
    """EXE-1: absent at the broker after its window → not_found, PLANNED again; the next attempt gets a new id."""
    ectx.broker.advance_to(window_time())
    now = ectx.now()
    with ectx.ledger.transaction() as con:  # what a crash right after recording SUBMITTED leaves behind
        record_order(con, it.client_order_id(EXIT_ID, 1), EXIT_ID, "MSFT", "sell", 100, now=now)
        it.transition(con, EXIT_ID, "SUBMITTED", reason="test", now=now, attempt=1)
    ectx.broker.advance_to(ny(EXEC_DAY, 10, 30))
    run_reconcile(ectx)
    assert [o.status for o in _orders_of(ectx, EXIT_ID)] == ["not_found"]
    assert intent_state(ectx, EXIT_ID) == "PLANNED"
    ectx.broker.advance_to(window_time(EXEC_DAY + timedelta(days=1)))
    run_execute(ectx)
    assert [o[0] for o in broker_orders(ectx) if o[1] == "MSFT"] == [it.client_order_id(EXIT_ID, 2)]


def test_exe3_when_run_budget_spent_then_no_new_order_and_timeout_event(ectx):
    """EXE-3: the execution run has a wall-clock budget; when spent, nothing more is sent."""
    ectx.broker.advance_to(window_time())
    report = run_execute(ectx, budget_s=0.0)
    assert report.timed_out and broker_orders(ectx) == []
    assert set(_states(ectx).values()) == {"PLANNED"}
    assert ectx.ledger.read(events.count, "EXECUTION_TIMEOUT") == 1


def test_exe5_when_fractional_refused_then_one_whole_share_retry_as_next_attempt(root):
    """EXE-5: a fractional reject falls back to whole shares (floor) as attempt+1, logged."""
    ectx = make_ctx(root)
    ectx.broker.advance_to(decide_time())
    plant(ectx, "AAPL", "ENTRY", 10.5)   # only AAPL due
    run_reconcile(ectx)
    ectx.broker.advance_to(window_time())
    ectx.broker.inject_fault("fractional_reject")
    run_execute(ectx)
    rows = [(o.client_order_id, o.qty, o.status) for o in _orders_of(ectx, AAPL_ID)]
    assert rows == [(it.client_order_id(AAPL_ID, 1), 10.5, "rejected"), (it.client_order_id(AAPL_ID, 2), 10.0, "filled")]
    assert intent_state(ectx, AAPL_ID) == "FILLED"
    retry, = ectx.ledger.read(events.find, "INTENT_SUBMITTED", attempt=2)
    assert "whole-share retry" in retry.reason


def test_exe2_when_broker_rejects_for_business_reason_then_failed_without_retry(ectx):
    """EXE-2: business rejects (buying power) are never retried: FAILED with the code, one order row."""
    ectx.broker.inject_fault("reject_buying_power")
    ectx.broker.advance_to(window_time())
    report = run_execute(ectx)
    assert report.outcomes[0].state == "FAILED" and "INSUFFICIENT_BUYING_POWER" in report.outcomes[0].reason
    assert [o.status for o in _orders_of(ectx, EXIT_ID)] == ["rejected"]
    run_execute(ectx)
    assert len(_orders_of(ectx, EXIT_ID)) == 1


def test_gate1_when_halted_then_no_order_and_rejections_recorded_with_verdicts(ectx):
    """Every order passes the gate: HALTED → nothing reaches the broker; verdicts stored with the intents.
    Entries are rejected for good; the exit stays PLANNED (EXIT-7: a halt is a temporary refusal)."""
    controls.halt(ectx.params, ectx.root, "test halt")
    ectx.broker.advance_to(window_time())
    report = run_execute(ectx)
    assert broker_orders(ectx) == []
    assert _states(ectx) == {EXIT_ID: "PLANNED", AAPL_ID: "REJECTED", IBM_ID: "REJECTED"}
    assert report.control_state == "HALTED" and len(report.tables()["rejected / expired / failed"]) == 2
    assert len({v.intent_id for v in stored_verdicts(ectx.ledger) if v.reason_code == "HALTED"}) == 3


def test_exit7_when_halt_lifted_inside_window_then_planned_exit_executes(ectx):
    """EXIT-7 (issue 12 item 7): a few minutes' halt inside the window, then resume and execute:
    the planned exit was left PLANNED by the halted run and fills in the later run."""
    controls.halt(ectx.params, ectx.root, "a few minutes")
    ectx.broker.advance_to(window_time(minutes_after_open=6))
    run_execute(ectx)
    assert intent_state(ectx, EXIT_ID) == "PLANNED"
    assert ectx.ledger.read(events.count, "INTENT_DEFERRED", intent_id=EXIT_ID) == 1
    controls.resume(ectx.params, ectx.root, "halt over")
    ectx.broker.advance_to(window_time(minutes_after_open=12))
    run_execute(ectx)
    assert intent_state(ectx, EXIT_ID) == "FILLED"
    assert "MSFT" not in {p.symbol for p in ectx.broker.positions()} and positions_match(ectx)


def test_exit7_when_orders_per_run_exceeded_then_rest_stay_planned_and_next_run_sends_them(root):
    """EXIT-7 (issue 12 item 7): with orders_per_run exceeded the rest is not rejected for good:
    exits (and entries, whose run budget renews) stay PLANNED and the next run in the window sends them."""
    ctx = make_ctx(root, orders_per_run=2)
    ctx.broker.advance_to(decide_time())
    for sym in ("MSFT", "IBM", "AAPL"):
        hold(ctx, sym, 10, mid(ctx, sym))
        plant(ctx, sym, "EXIT", 10)
    ctx.broker.advance_to(window_time(minutes_after_open=6))
    first = run_execute(ctx)
    assert sorted(o.state for o in first.outcomes) == ["FILLED", "FILLED", "PLANNED"]
    ctx.broker.advance_to(window_time(minutes_after_open=8))
    run_execute(ctx)
    assert set(_states(ctx).values()) == {"FILLED"} and ctx.broker.positions() == []


def test_pos3_when_symbol_closed_today_or_in_cooldown_then_entry_rejected(ectx):
    """POS-3: no re-entry of a symbol closed today; a per-ticker cooldown after any order."""
    ectx.broker.advance_to(window_time())
    now = ectx.now()
    with ectx.ledger.transaction() as con:
        closed_today.mark(con, "AAPL", EXEC_DAY, now)
        cooldowns.touch(con, "IBM", now - timedelta(minutes=5))
    run_execute(ectx)
    reasons = {i.intent_id: i.gate_reason for i in stored_intents(ectx.ledger)}
    assert (reasons[AAPL_ID], reasons[IBM_ID], reasons[EXIT_ID]) == ("REENTRY", "COOLDOWN", "OK")


def test_exit1_when_partial_fill_left_working_then_cancelled_after_window_as_partial(ectx):
    """EXIT-1 choice: the unfilled rest of a planned order is cancelled after its window → PARTIAL."""
    ectx.broker.inject_fault("partial_fill")
    ectx.broker.advance_to(window_time())
    run_execute(ectx)
    assert intent_state(ectx, EXIT_ID) == "SUBMITTED"
    ectx.broker.advance_to(ny(EXEC_DAY, 10, 5))
    report = run_execute(ectx)
    assert report.cancelled == [it.client_order_id(EXIT_ID, 1)]
    assert intent_state(ectx, EXIT_ID) == "PARTIAL"
    assert ledger_positions(ectx)["MSFT"].qty == 50.0
    assert positions_match(ectx)


def test_execute_report_when_done_then_tables_and_summary(ectx):
    ectx.broker.advance_to(window_time())
    report = run_execute(ectx)
    assert "FILLED 3" in report.summary() and len(report.tables()["intents processed"]) == 3
    assert mid(ectx, "AAPL") > 0


class HaltAfterFirstSubmit:
    """The operator pulls the kill switch while a run is sending (a broker wrapper that does it)."""

    def __init__(self, inner, ctx):
        self.inner, self.ctx = inner, ctx

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def submit(self, request):
        order = self.inner.submit(request)
        controls.halt(self.ctx.params, self.ctx.root, "operator halt mid-run")
        return order


def test_ctl1_when_kill_switch_pulled_mid_run_then_next_order_is_not_sent(ectx):
    """CTL-1/GATE-1 at the last step: the state is read again before each order, not once per run."""
    ectx.broker.advance_to(window_time())
    ectx.__dict__["broker"] = HaltAfterFirstSubmit(ectx.broker, ectx)
    report = run_execute(ectx)
    assert [o.state for o in report.outcomes] == ["FILLED", "REJECTED", "REJECTED"]
    assert report.control_state == "HALTED" and len(broker_orders(ectx)) == 1


def test_exit6_when_planned_exit_exceeds_max_order_notional_then_split_into_children_within_cap_same_run(root):
    """EXIT-6 (issue 12 item 6): a planned exit worth ~15k with max_order_notional 10k goes out as
    child orders each within the cap, with deterministic client ids, all in the same run; GATE-5
    still rejects any single order above the cap."""
    ctx = make_ctx(root)
    ctx.broker.advance_to(decide_time())
    qty = float(round(15_000 / mid(ctx, "MSFT")))
    hold(ctx, "MSFT", qty, mid(ctx, "MSFT"))
    plant(ctx, "MSFT", "EXIT", qty)
    ctx.broker.advance_to(window_time())
    run_execute(ctx)
    parts = [f"{EXIT_ID}-part1", f"{EXIT_ID}-part2"]
    assert _states(ctx) == {EXIT_ID: "CANCELLED", parts[0]: "FILLED", parts[1]: "FILLED"}
    orders = broker_orders(ctx)
    assert [o[0] for o in orders] == [it.client_order_id(p, 1) for p in parts]
    assert sum(o[5] for o in orders) == qty and ctx.broker.positions() == [] and positions_match(ctx)
    assert all(o.qty * o.limit_price <= ctx.params.max_order_notional for o in stored_orders(ctx.ledger))
    assert not [v for v in stored_verdicts(ctx.ledger) if v.reason_code == "MAX_ORDER_NOTIONAL"]


def test_exit6_when_split_exit_children_then_they_count_once_against_order_rates(root):
    """EXIT-6 with GATE-10: one split is one order for the rates, so orders_per_run=1 still
    sends every child of the exit in the same run."""
    ctx = make_ctx(root, orders_per_run=1)
    ctx.broker.advance_to(decide_time())
    qty = float(round(25_000 / mid(ctx, "MSFT")))
    hold(ctx, "MSFT", qty, mid(ctx, "MSFT"))
    plant(ctx, "MSFT", "EXIT", qty)
    ctx.broker.advance_to(window_time())
    run_execute(ctx)
    states = _states(ctx)
    assert states.pop(EXIT_ID) == "CANCELLED" and len(states) == 3 and set(states.values()) == {"FILLED"}
    assert ctx.broker.positions() == []
    from tradebook.phases.execute_support import _ledger_inputs

    assert _ledger_inputs(ctx, ctx.now())[1] == {"MSFT": 1}   # today's per-symbol count: one order


@pytest.mark.parametrize("trip", ["halt", "reduce_only"])
def test_execute_summary_when_nothing_due_and_not_running_then_states_the_real_state(ectx, trip):
    """GATE-1/REC-8: with nothing due (before the window) the summary still says HALTED / REDUCE_ONLY,
    never the RUNNING it used to assume."""
    if trip == "halt":
        controls.halt(ectx.params, ectx.root, "test halt")
    else:
        controls.reduce_only(ectx.ledger, "reconcile failed", "reconcile")
    ectx.broker.advance_to(ny(EXEC_DAY, 9, 31))
    report = run_execute(ectx)
    want = "HALTED" if trip == "halt" else "REDUCE_ONLY"
    assert report.control_state == want and f"state {want})" in report.summary() and broker_orders(ectx) == []
