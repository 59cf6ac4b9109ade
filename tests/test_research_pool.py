"""SWP-1 / SWP-2: a sweep's process pool survives a worker process killed mid-batch.

The worker really dies (SIGKILL sent to itself from inside the evaluation of one set): the
test patches ``tradebook.research.runners.evaluate`` before the pool forks, so the workers
inherit the patched function. Every evaluation appends the set's seq to a log file, which
tells how often each set ran.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tradebook.research import pool, runners, space
from tradebook.research.evaluate import Job, evaluate
from tradebook.research.sweep import sweep

pytestmark = pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                                reason="the workers inherit the patched evaluate through fork")
GRID = {"fast": [5, 10, 15, 20, 25, 30], "slow": [40, 60]}   # 12 sets; (10, 40) is seq 2
VICTIM = {"fast": 10, "slow": 40}


def _killing(log: Path, always: bool):
    """evaluate, except that the process evaluating VICTIM kills itself (every time, or only the first)."""
    def run(job, params, bars):
        with log.open("a") as f:
            f.write(f"{params['fast']}/{params['slow']}\n")
        first = log.read_text().split().count("10/40") == 1
        if dict(params) == VICTIM and (always or first):
            os.kill(os.getpid(), signal.SIGKILL)
        return evaluate(job, params, bars)
    return run


def _runs(log: Path) -> dict[str, int]:
    words = log.read_text().split()
    return {w: words.count(w) for w in set(words)}


def _without_timing(rows: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in rows), key=lambda r: r["seq"])


def test_swp2_when_pool_worker_killed_mid_batch_then_only_lost_batches_run_again(tmp_path, monkeypatch):
    """SWP-2: a worker SIGKILLed mid-sweep costs only the batches in flight; every row arrives once,
    identical to a serial run."""
    from tradebook.marketdata import load_bars

    log = tmp_path / "runs.log"
    monkeypatch.setattr(runners, "evaluate", _killing(log, always=False))
    job, bars = Job("sma_reference", ("IBM",)), load_bars(["IBM"])
    sets = [(i, space.set_key(p, job.scope()), p) for i, p in enumerate(space.grid_sets(GRID))]
    work = [sets[i:i + 2] for i in range(0, len(sets), 2)]   # 6 batches of 2; VICTIM starts batch 1
    rows = [r for batch in runners.run_pool(job, work, bars, 2) for r in batch]
    runs = _runs(log)
    assert runs["10/40"] == 2                   # killed once, then ran alone
    assert all(n <= 2 for n in runs.values())   # nothing ran a third time
    assert sum(runs.values()) <= len(sets) + 2 * 2   # at most the two batches in flight ran again
    assert sorted(r["seq"] for r in rows) == list(range(len(sets)))
    assert _without_timing(rows) == _without_timing([r for b in runners.run_serial(job, work, bars) for r in b])


def test_swp1_when_set_always_kills_its_worker_then_error_names_it_and_other_rows_kept(tmp_path, monkeypatch,
                                                                                        make_params):
    """SWP-1/SWP-2: a strategy that kills its process for one set is given up after ALONE_TRIES runs
    alone: the sweep finishes every other set into the table and ends with an error naming the set;
    the rerun (once it no longer kills) runs only that set."""
    from tradebook.marketdata import load_bars

    log, db = tmp_path / "runs.log", tmp_path / "s.duckdb"
    monkeypatch.setattr(runners, "evaluate", _killing(log, always=True))
    common = dict(params=make_params(), symbols=["IBM"], db=db, name="crash", workers=2, progress=False,
                  bars=load_bars(["IBM"]))
    with pytest.raises(pool.WorkerCrashed, match=r"set\(s\) \{'fast': 10, 'slow': 40\} \(key \w+, killed by SIGKILL\): "
                                                 r"the process running it died each of the 2 times it ran alone"):
        sweep("sma_reference", GRID, **common)
    assert _runs(log)["10/40"] == 1 + pool.ALONE_TRIES   # in the pool, then alone: bounded, no endless loop
    from tradebook.research import table

    kept = table.results(db, "crash")
    assert len(kept) == 11 and not ((kept["fast"] == 10) & (kept["slow"] == 40)).any()
    monkeypatch.setattr(runners, "evaluate", evaluate)   # the strategy fixed
    again = sweep("sma_reference", GRID, **common)
    assert (again.skipped, again.ran) == (11, 1)


EXITS = '''
import os
from tradebook.research import Signals, Strategy, StrategyParams

class ExitsOn(Strategy):
    """Ends its process (os._exit, as a crashing native library would) when ``level`` is 3."""
    class Params(StrategyParams):
        level: int = 1

    def history_days(self):
        return 5

    def generate(self, bars, held):
        if self.params.level == 3:
            os._exit(7)
        return Signals([], [])
'''


@pytest.mark.integration
def test_swp1_when_cli_strategy_calls_os_exit_for_one_set_then_plain_error_naming_it_and_rows_kept(root):
    """SWP-1/SWP-2 through `tradebook sweep`: a user strategy that calls os._exit for one set: the
    command ends non-zero with one plain message naming the set and how its process ended; the
    other sets are in the table."""
    import subprocess
    import sys

    import duckdb

    (root / "strategies").mkdir()
    (root / "strategies" / "__init__.py").write_text("")
    (root / "strategies" / "exits.py").write_text(EXITS)
    args = [sys.executable, "-m", "tradebook.cli", "sweep", "strategies.exits:ExitsOn", "--grid", "level=1:4:1",
            "--symbols", "IBM", "--start", "2011-01-01", "--end", "2011-03-31", "--workers", "2", "--top", "0"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "lib"), "COLUMNS": "40"}
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "sweep set(s) {'level': 3} (key " in done.stderr and "exited with code 7)" in done.stderr
    con = duckdb.connect(str(root / "runs" / "sweeps.duckdb"), read_only=True)
    try:
        kept = sorted(r[0] for r in con.execute("SELECT params FROM sweep_results WHERE error IS NULL").fetchall())
    finally:
        con.close()
    assert kept == ['{"level": 1}', '{"level": 2}', '{"level": 4}']


def test_swp2_when_sweeping_process_has_duckdb_instances_then_workers_make_their_own(tmp_path, monkeypatch):
    """OPS-1 (fork safety): the pool's workers are forked from a process that may have used the ledger (a
    lab kernel): no worker ever sees its parent's DuckDB instance as its own (it is abandoned at the fork),
    and each opens a ledger with an instance of its own. The old workers found the parent's instance."""
    from tradebook.ledger import attach
    from tradebook.ledger.db import Ledger
    from tradebook.marketdata import load_bars

    Ledger(tmp_path / "parent.duckdb").check()   # this process's instance exists from here on
    assert attach._instance is not None
    log = tmp_path / "workers.log"

    def run(job, params, bars):
        own = attach._instance is None or attach._instance_pid == os.getpid()
        Ledger(tmp_path / f"worker-{os.getpid()}.duckdb").check()
        with log.open("a") as f:
            f.write(f"{'own' if own and attach._instance_pid == os.getpid() else 'parent'}\n")
        return evaluate(job, params, bars)

    monkeypatch.setattr(runners, "evaluate", run)
    job, bars = Job("sma_reference", ("IBM",)), load_bars(["IBM"])
    sets = [(i, space.set_key(p, job.scope()), p) for i, p in enumerate(space.grid_sets(GRID))][:4]
    rows = [r for batch in runners.run_pool(job, [sets[:2], sets[2:]], bars, 2) for r in batch]
    assert len(rows) == 4
    assert log.read_text().split() == ["own"] * 4
