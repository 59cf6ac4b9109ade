"""Intent rows, ids and the state machine (EXIT-1, EXIT-3, EXE-1) and the chaos hook."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import date, datetime, timedelta

import pytest

from tradebook.ledger import intents as intent_store
from tradebook.phases import intents as it
from tradebook.broker.base import Session
from tradebook.ledger import events
from support.trading import NY, make_ctx, plant, ny, stored_intents


def test_exe1_when_ids_are_derived_then_same_inputs_give_same_ids():
    """EXE-1: intent id from (session date, symbol, kind); client_order_id from (intent id, attempt)."""
    iid = it.intent_id(date(2011, 7, 20), "AAPL", "EXIT")
    assert iid == "20110720-AAPL-EXIT" == it.intent_id(date(2011, 7, 20), "AAPL", "EXIT")
    assert it.client_order_id(iid, 1) == it.client_order_id(iid, 1) == "tb-20110720-AAPL-EXIT-a1"
    assert it.client_order_id(iid, 2) != it.client_order_id(iid, 1)


def test_exe1_when_intent_id_is_long_then_client_order_id_is_hashed_to_48_chars():
    """EXE-1: Alpaca caps client_order_id at 48 characters; long ids are hashed, still deterministic."""
    iid = it.intent_id(date(2011, 7, 20), "A-VERY-LONG-SYMBOL-NAME", "ADD_ON", "STOP_LOSS-12")
    cid = it.client_order_id(iid, 3)
    assert len(cid) <= 48 and cid == it.client_order_id(iid, 3) and cid.endswith("-a3")


def test_intent_id_when_kind_unknown_then_value_error():
    with pytest.raises(ValueError):
        it.intent_id(date(2011, 7, 20), "AAPL", "SHORT")


@pytest.mark.parametrize("src,dst,allowed", [
    ("PLANNED", "SUBMITTED", True), ("PLANNED", "REJECTED", True), ("PLANNED", "EXPIRED", True),
    ("PLANNED", "CANCELLED", True), ("PLANNED", "FILLED", False), ("SUBMITTED", "FILLED", True),
    ("SUBMITTED", "PARTIAL", True), ("SUBMITTED", "FAILED", True), ("SUBMITTED", "PLANNED", True),
    ("FILLED", "SUBMITTED", False), ("REJECTED", "PLANNED", False), ("EXPIRED", "SUBMITTED", False),
    ("PARTIAL", "FILLED", False), ("CANCELLED", "PLANNED", False),
])
def test_exit3_when_transition_requested_then_state_machine_decides(root, src, dst, allowed):
    """EXIT-3: PLANNED → SUBMITTED → FILLED | PARTIAL | CANCELLED | EXPIRED | FAILED; terminal states stay."""
    ctx = make_ctx(root)
    intent = plant(ctx, "AAPL", "ENTRY", 10, price=100.0, when=ny(date(2011, 7, 20), 16, 15))
    now = intent.created_at
    with ctx.ledger.transaction() as con:
        intent_store.set_state(con, intent.intent_id, src, intent.attempt, now)   # put it there, unchecked
    if allowed:
        with ctx.ledger.transaction() as con:
            after = it.transition(con, intent.intent_id, dst, reason="test", now=now)
        assert after.state == dst
        recorded = ctx.ledger.read(events.find, f"INTENT_{dst}")
        assert [(e.kind, e.symbol, e.reason) for e in recorded] == [(f"INTENT_{dst}", "AAPL", "test")]
    else:
        with pytest.raises(it.InvalidTransition):
            with ctx.ledger.transaction() as con:
                it.transition(con, intent.intent_id, dst, reason="test", now=now)
        assert [i.state for i in stored_intents(ctx.ledger)] == [src]


def test_exit3_when_intent_inserted_twice_then_one_row(root):
    """EXIT-3: intents live in the ledger, one row per deterministic id."""
    ctx = make_ctx(root)
    first = plant(ctx, "AAPL", "EXIT", 5, price=100.0, when=ny(date(2011, 7, 20), 16, 15))
    with ctx.ledger.transaction() as con:
        assert it.insert(con, first) is False
        assert it.load(con, first.intent_id).display_state == "EXIT_PLANNED"
    assert [i.intent_id for i in stored_intents(ctx.ledger)] == [first.intent_id]


def _session(day: date) -> Session:
    return Session(day, datetime.combine(day, datetime.min.time(), NY).replace(hour=9, minute=30),
                   datetime.combine(day, datetime.min.time(), NY).replace(hour=16))


def test_exit1_when_windows_computed_then_open_plus_start_to_open_plus_end(make_params):
    """EXIT-1: the window is open+exit_window_start_min … open+exit_window_end_min of the next session."""
    params = make_params()
    sessions = [_session(date(2011, 7, 20)), _session(date(2011, 7, 21))]
    start, end = it.window_of(sessions[1], params)
    assert (start, end) == (ny(date(2011, 7, 21), 9, 35), ny(date(2011, 7, 21), 10, 0))
    assert it.first_window_after(sessions, ny(date(2011, 7, 20), 16, 15), params) == (start, end)
    assert it.current_window(sessions, ny(date(2011, 7, 21), 9, 40), params) == (start, end)
    assert it.current_window(sessions, ny(date(2011, 7, 21), 10, 1), params) is None
    assert it.first_window_after(sessions, ny(date(2011, 7, 21), 16, 15), params) is None


def test_crash_point_when_env_unset_then_noop(monkeypatch):
    monkeypatch.delenv(it.CRASH_ENV, raising=False)
    for step in it.CRASH_STEPS:
        it.crash_point(step)  # returns: the test process is still alive


def _run_hook(target: str, calls: list[str]) -> int:
    code = ("from tradebook.phases.intents import crash_point\n"
            + "".join(f"crash_point({c!r})\n" for c in calls) + "print('survived')")
    env = {**os.environ, it.CRASH_ENV: target}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60).returncode


def test_crash_point_when_env_names_step_then_sigkill_at_nth_hit():
    """OPS-2 chaos hook: TRADEBOOK_CRASH_AT=step[@n] kills the process (SIGKILL) at that boundary."""
    assert _run_hook("after_broker_submit", ["before_gate", "after_broker_submit"]) == -signal.SIGKILL
    assert _run_hook("before_gate@2", ["before_gate"]) == 0
    assert _run_hook("before_gate@2", ["before_gate", "before_gate"]) == -signal.SIGKILL
    assert _run_hook("after_gate_recorded", ["after_submitted_recorded"]) == -signal.SIGKILL


def test_display_table_when_exit_planned_then_shown_as_exit_planned(root):
    ctx = make_ctx(root)
    plant(ctx, "AAPL", "EXIT", 5, price=100.0, when=ny(date(2011, 7, 20), 16, 15))
    with ctx.ledger.connect() as con:
        frame = it.display_table(it.in_states(con, ["PLANNED"]))
    assert list(frame["state"]) == ["EXIT_PLANNED"]
    assert timedelta(0) == frame["decision_time"].iloc[0] - frame["created_at"].iloc[0]
