"""SWP-2: the same sweep on a local 2-CPU Ray instance gives the rows the process pool gives."""
from __future__ import annotations

from datetime import date

import pytest

from tradebook.research import table
from tradebook.research.sweep import sweep

ray = pytest.importorskip("ray")

GRID = {"rsi_entry": [20, 30], "max_hold_days": [10, 15], "trend_sma": [100, 150]}
SHORT = dict(symbols=["AAPL", "MSFT"], start=date(2009, 1, 1), end=date(2012, 12, 31))
_LOG = None  # set by the lost-worker test; shipped to workers with the function (pickled by value)


def start_local_ray(attempts: int = 3) -> None:
    """ray.init for a 2-CPU local instance, retried: on a loaded machine Ray's raylet can die at start-up
    when its metrics agent takes over a hard-coded 15 s to write its port file (ray-project/ray#65983)."""
    for attempt in range(attempts):
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            return
        except Exception:  # "The current node timed out during startup" is a bare Exception
            ray.shutdown()
            if attempt == attempts - 1:
                raise


@pytest.fixture(scope="module")
def local_ray():
    """One local 2-CPU Ray instance for this module (starting one costs seconds)."""
    start_local_ray()
    yield ray
    ray.shutdown()


@pytest.mark.integration
def test_swp2_when_sweep_runs_on_local_ray_then_rows_identical_to_process_pool(tmp_path, make_params, local_ray):
    """SWP-2: bars via the object store, sets batched per task, rows streamed back: same as the pool."""
    db = tmp_path / "s.duckdb"
    common = dict(params=make_params(), db=db, progress=False, **SHORT)
    pooled = sweep("swing", GRID, name="pool", workers=2, **common)
    on_ray = sweep("swing", GRID, name="ray", ray="local", ray_cpus=2, **common)
    assert (pooled.ran, on_ray.total, on_ray.ran) == (8, 8, 8)
    a, b = table.results(db, "pool"), table.results(db, "ray")
    same = list(table.RESULT_COLUMNS)
    assert a[same].equals(b[same])
    assert ray.is_initialized()  # a sweep leaves an instance it did not start alone
    again = sweep("swing", GRID, name="ray", ray="local", ray_cpus=2, **common)
    assert (again.skipped, again.ran) == (8, 0)  # resumable on Ray too, without starting Ray at all


def _crash_once(job, batch, bars):
    """run_batch, except that the worker running the batch holding set 0 dies the first time."""
    import os
    from pathlib import Path

    from tradebook.research.runners import run_batch

    log = Path(_LOG)
    first = batch[0][0]
    with log.open("a") as f:
        f.write(f"{first}\n")
    if first == 0 and log.read_text().split().count("0") == 1:
        os._exit(1)  # the worker process is gone, as if its machine died
    return run_batch(job, batch, bars)


@pytest.mark.integration
def test_swp2_when_ray_worker_dies_mid_sweep_then_only_its_batch_runs_again(tmp_path, local_ray):
    """SWP-2: a lost worker costs one batch: Ray retries that task; every other batch runs once."""
    import sys

    from tradebook.marketdata import load_bars
    from tradebook.research import runners, space
    from tradebook.research.evaluate import Job

    global _LOG
    log = tmp_path / "runs.log"
    _LOG = str(log)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test file
    job = Job("sma_reference", ("IBM",))
    sets = [(i, space.set_key(p, job.scope()), p) for i, p in enumerate(space.grid_sets({"fast": [5, 10, 15],
                                                                                      "slow": [30, 60]}))]
    work = runners.batches(sets, 1)
    assert len(work) == 3
    bars = load_bars(["IBM"])
    rows = [r for batch in runners.run_ray(job, work, bars, "local", 2, task_fn=_crash_once) for r in batch]
    counts = {int(x): log.read_text().split().count(x) for x in set(log.read_text().split())}
    assert counts == {0: 2, 2: 1, 4: 1}  # batches start at sets 0, 2, 4; only the lost one ran twice
    expected = [r for batch in runners.run_serial(job, work, bars) for r in batch]
    assert _without_timing(rows) == _without_timing(expected)


def _without_timing(rows: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in rows), key=lambda r: r["seq"])
