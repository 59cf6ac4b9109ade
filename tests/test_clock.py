"""One clock (issue 13 item 6): in sim mode operator actions are stamped with the simulated clock."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tradebook.safety import controls
from tradebook.clock import operator_now
from tradebook.ledger import events
from tradebook.safety.killswitch import flag_path, read_flag
from support.trading import EXEC_DAY, control_rows, make_ctx, ny


def test_halt_resume_when_sim_mode_then_flag_rows_and_events_use_the_simulated_clock(root):
    """CTL-1/CTL-2 in sim mode: halt and resume carry the broker's simulated time, not today's date."""
    ctx = make_ctx(root)
    sim_time = ny(EXEC_DAY, 10, 0)
    ctx.broker.advance_to(sim_time)
    status = controls.halt(ctx.params, root, "drill")
    assert status.since == sim_time
    assert read_flag(flag_path(ctx.params, root)).since == sim_time
    controls.resume(ctx.params, root, "drill over")
    stamps = [c["ts"] for c in control_rows(ctx)]
    stamps += [e.ts for e in ctx.ledger.read(events.find, kind_prefix="CONTROL_")]
    assert len(stamps) == 4 and set(stamps) == {sim_time}


def test_operator_now_when_no_sim_state_yet_then_wall_clock_and_nothing_created(root):
    """CTL-6: stamping an action never needs (or creates) a sim account."""
    ctx = make_ctx(root)
    before = datetime.now(timezone.utc)
    assert abs(operator_now(ctx.params, root) - before) < timedelta(seconds=5)
    assert not ctx.params.sim_state_path(root).exists()
    assert abs(operator_now(None, root) - before) < timedelta(seconds=5)


def test_run_failed_event_when_sim_phase_fails_then_stamped_with_the_simulated_clock(root):
    """One clock: a failed phase run's RUN_FAILED event carries the simulated time in sim mode."""
    from pathlib import Path

    from tradebook.engine.runner import run_phase

    ctx = make_ctx(root, runs_dir="runs")
    sim_time = ny(EXEC_DAY, 9, 15)
    ctx.broker.advance_to(sim_time)
    broken = Path(__file__).parent / "notebooks" / "broken.ipynb"
    record = run_phase("reconcile", root=root, notebook=broken, raise_on_failure=False,
                       overrides={"sim.start_date": "2011-07-01"})
    assert record.status == "FAILED"
    assert [e.ts for e in ctx.ledger.read(events.find, "RUN_FAILED")] == [sim_time]


def test_fallback_now_when_params_invalid_then_sim_state_clock_unless_file_says_paper_or_live(root):
    """CTL-6 + one clock: with invalid params the mode is only what the file says: sim (or not said)
    with a sim state present -> its simulated time; paper/live, or no sim state -> the wall clock."""
    from tradebook.clock import fallback_now

    ctx = make_ctx(root)
    sim_time = ny(EXEC_DAY, 10, 0)
    ctx.broker.advance_to(sim_time)
    state = ctx.params.sim_state_path(root)
    assert fallback_now("sim", state) == (sim_time, "simulated clock of sim.duckdb")
    assert fallback_now(None, state) == (sim_time, "simulated clock of sim.duckdb")
    for mode, path in (("paper", state), ("live", state), ("sim", root / "runs" / "missing.duckdb")):
        now, clock = fallback_now(mode, path)
        assert clock == "wall clock" and abs(now - datetime.now(timezone.utc)) < timedelta(seconds=5)
    assert not (root / "runs" / "missing.duckdb").exists()
