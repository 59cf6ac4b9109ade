"""SPEC §3 / OPS-4: the daemon's plan on the exchange calendar (holidays, half days) and done-checks."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tradebook.errors import ConfigError
from tradebook.ledger import events as event_store
from tradebook.ledger import runs
from tradebook.ledger.db import Ledger
from tradebook.ops.schedule import (BACKUP_EVENT, SimClock, day_plan, monitor_ticks, next_monitor_tick, parse_speed,
                                phase_done, slots_around)

NY = ZoneInfo("America/New_York")


def ny(day: str, hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=NY)


def by_phase(slots) -> dict:
    return {s.phase: s for s in slots}


def test_ops4_when_normal_session_then_phases_at_spec_times(make_params):
    """§3: reconcile open-15, execute open+5 (due until open+30), decide close+15, report close+20."""
    plan = by_phase(day_plan(date(2011, 11, 22), make_params()))
    assert plan["reconcile"].at == ny("2011-11-22", "09:15")
    assert (plan["execute"].at, plan["execute"].deadline) == (ny("2011-11-22", "09:35"), ny("2011-11-22", "10:00"))
    assert plan["decide"].at == ny("2011-11-22", "16:15")
    assert plan["report"].at == ny("2011-11-22", "16:20")
    assert plan["decide"].deadline == ny("2011-11-23", "09:30")  # catch-up allowed until the next open
    assert [s.phase for s in sorted(plan.values())] == ["reconcile", "execute", "decide", "report", "backup"]


def test_ops4_when_half_day_then_decide_follows_the_early_close(make_params):
    """§3: 2011-11-25 (day after Thanksgiving) closes at 13:00; decide at 13:15, not 16:15."""
    plan = by_phase(day_plan(date(2011, 11, 25), make_params()))
    assert plan["decide"].at == ny("2011-11-25", "13:15")
    assert plan["report"].at == ny("2011-11-25", "13:20")
    assert plan["decide"].deadline == ny("2011-11-28", "09:30")


def test_ops4_when_holiday_then_no_slots_and_decide_window_spans_it(make_params):
    """§3: Thanksgiving 2011-11-24 has no session; Wednesday's decide may catch up until Friday's open."""
    params = make_params()
    assert day_plan(date(2011, 11, 24), params) == []
    assert by_phase(day_plan(date(2011, 11, 23), params))["decide"].deadline == ny("2011-11-25", "09:30")


def test_ops4_when_schedule_params_change_then_plan_follows(make_params):
    params = make_params(**{"schedule.reconcile_before_open_min": 45, "exit_window_start_min": 10,
                            "schedule.decide_after_close_min": 30, "schedule.report_after_close_min": 5})
    plan = by_phase(day_plan(date(2011, 11, 22), params))
    assert plan["reconcile"].at == ny("2011-11-22", "08:45")
    assert plan["execute"].at == ny("2011-11-22", "09:40")
    assert plan["report"].at == plan["decide"].at == ny("2011-11-22", "16:30")  # report never before decide


def test_ops4_when_monitor_interval_then_ticks_inside_the_session_only(make_params):
    session_plan = day_plan(date(2011, 11, 25), make_params())
    from tradebook import sessions

    half_day = sessions.session_on(date(2011, 11, 25))
    ticks = list(monitor_ticks(half_day, 1800))
    assert ticks[0] == ny("2011-11-25", "10:00") and ticks[-1] == ny("2011-11-25", "12:30") and len(ticks) == 6
    assert len(list(monitor_ticks(half_day, 60))) == 209  # 210 minutes, the close itself excluded
    assert next_monitor_tick(half_day, 1800, ny("2011-11-25", "10:00")) == ny("2011-11-25", "10:30")
    assert next_monitor_tick(half_day, 1800, ny("2011-11-25", "12:45")) is None
    assert session_plan  # the half day still has its phase slots


def test_ops4_when_between_sessions_then_slots_around_cover_both(make_params):
    """Thursday (holiday) 10:00: Wednesday's decide/report are still due; Friday's slots come next."""
    slots = slots_around(ny("2011-11-24", "10:00"), make_params())
    keys = [(s.session.isoformat(), s.phase) for s in slots]
    assert ("2011-11-23", "decide") in keys and ("2011-11-25", "execute") in keys
    assert all(s.session in (date(2011, 11, 23), date(2011, 11, 25)) for s in slots)


def insert_run(ledger: Ledger, run_id: str, phase: str, at: datetime, status: str = "OK") -> None:
    """A run of ``phase`` at simulated time ``at`` that ended with ``status``."""
    with ledger.transaction() as con:
        runs.start(con, run_id, phase, started_at=datetime.now(timezone.utc), sim_time=at)
        runs.finish(con, run_id, status, datetime.now(timezone.utc), None)


def test_ops4_when_run_recorded_in_the_slot_window_then_phase_done(make_params, root: Path):
    """OPS-4: a restarted daemon sees from the runs table what ran, failed runs included."""
    params = make_params()
    ledger = Ledger(params.ledger_path(root))
    plan = by_phase(day_plan(date(2011, 11, 23), params))
    assert not phase_done(ledger, plan["decide"])
    insert_run(ledger, "r1", "decide", ny("2011-11-24", "08:00"), status="FAILED")  # late, failed: still done
    insert_run(ledger, "r2", "execute", ny("2011-11-22", "09:35"))                 # the day before: not today's
    assert phase_done(ledger, plan["decide"])
    assert not phase_done(ledger, plan["execute"])
    assert not phase_done(ledger, by_phase(day_plan(date(2011, 11, 25), params))["decide"])


def test_ops3_when_backup_event_for_the_session_then_backup_done(make_params, root: Path):
    params = make_params()
    ledger = Ledger(params.ledger_path(root))
    slot = by_phase(day_plan(date(2011, 11, 23), params))["backup"]
    assert not phase_done(ledger, slot)
    with ledger.transaction() as con:
        event_store.record(con, BACKUP_EVENT, data={"session": "2011-11-23"})
    assert phase_done(ledger, slot)


@pytest.mark.parametrize("text, expected", [(None, 60.0), ("max", None), ("600", 600.0), (2.5, 2.5)])
def test_ops4_when_speed_given_then_parsed(text, expected):
    assert parse_speed(text) == expected


@pytest.mark.parametrize("text", ["0", "-3", "fast"])
def test_ops4_when_speed_invalid_then_config_error(text):
    with pytest.raises(ConfigError):
        parse_speed(text)


def test_ops4_when_sim_clock_as_fast_as_possible_then_jumps_without_sleeping(make_params, root: Path):
    """Simulated time: advance_to jumps straight to the target, no wall-clock wait."""
    from tradebook.broker.sim.broker import SimBroker

    broker = SimBroker.from_params(make_params(**{"sim.start_date": "2011-11-21"}), root)
    clock = SimClock(broker, speed=None)
    start = clock.now()
    target = start + timedelta(days=2, hours=3)
    clock.advance_to(target, threading.Event())
    assert clock.now() == target


def test_ops4_when_manual_execute_before_the_window_then_daemon_execute_slot_not_done(make_params, root: Path):
    """OPS-4 / issue 12 item 11: the execute slot counts only runs inside the window: a manual
    `tradebook run execute` at 09:32 (window opens 09:35) does not make the daemon skip 09:35."""
    params = make_params()
    ledger = Ledger(params.ledger_path(root))
    slot = by_phase(day_plan(date(2011, 11, 23), params))["execute"]
    insert_run(ledger, "manual", "execute", ny("2011-11-23", "09:32"))
    assert not phase_done(ledger, slot)
    insert_run(ledger, "late", "execute", ny("2011-11-23", "10:05"))   # after the window: not this slot either
    assert not phase_done(ledger, slot)
    insert_run(ledger, "daemon", "execute", ny("2011-11-23", "09:35"))
    assert phase_done(ledger, slot)
