"""The ``runs`` store (tradebook.ledger.runs): what its counts and listings return, as the daemon's plan
(OPS-4), the abandoned-run check and the status views rely on."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tradebook.ledger import runs

T0 = datetime(2011, 11, 23, 21, 0, tzinfo=timezone.utc)


def test_run_count_when_sim_time_set_then_it_counts_else_the_wall_clock_and_until_is_exclusive(ledger):
    """OPS-4: a run's time is its simulated time in sim mode, else when it started; [since, until)."""
    with ledger.transaction() as con:
        runs.start(con, "sim", "decide", started_at=T0 + timedelta(days=300), sim_time=T0)
        runs.start(con, "wall", "decide", started_at=T0 + timedelta(minutes=5))
        runs.start(con, "edge", "decide", started_at=T0 + timedelta(minutes=10))
        runs.finish(con, "wall", "FAILED", T0 + timedelta(minutes=6), "boom", kernel_pid=7, stopped_early=False)
        assert runs.count(con, phase="decide", since=T0, until=T0 + timedelta(minutes=10)) == 2
        assert runs.count(con, status="FAILED") == 1 and sorted(runs.running(con)) == ["edge", "sim"]
        runs.end_if_running(con, "wall", "ABANDONED", T0, "gone")   # already ended: unchanged
        assert runs.get(con, "wall")["status"] == "FAILED" and runs.get(con, "wall")["kernel_pid"] == 7
        assert [r.run_id for r in runs.latest(con, 2)] == ["sim", "edge"]
        assert runs.latest(con, None)[0].at == T0
