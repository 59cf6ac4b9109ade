"""SWP-1 / SWP-2: sweeps write one row per set to their own table, resume, and agree across runners."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tradebook.errors import ConfigError, TradebookError
from tradebook.research import space, table
from tradebook.research.evaluate import Job, backtest, evaluate
from tradebook.research.sweep import make_job, sweep

SWING_GRID = {"rsi_entry": [20, 30], "max_hold_days": [10, 15]}
SHORT = dict(symbols=["AAPL", "MSFT"], start=date(2009, 1, 1), end=date(2012, 12, 31))
SAME = [c for c in table.RESULT_COLUMNS]


def test_swp1_when_swing_sweep_then_one_row_per_set_with_its_backtest_figures(tmp_path, make_params):
    """SWP-1: each row holds the figures of the same backtest (and live gate) run on its own."""
    params = make_params()
    run = sweep("swing", SWING_GRID, params=params, db=tmp_path / "s.duckdb", workers=1, progress=False, **SHORT)
    rows = run.results()
    assert (run.total, run.ran, run.skipped) == (4, 4, 0)
    assert sorted(zip(rows["rsi_entry"], rows["max_hold_days"])) == [(20, 10), (20, 15), (30, 10), (30, 15)]
    job = make_job("swing", params=params, **SHORT)
    from tradebook.marketdata import load_bars

    one = rows.iloc[3]
    alone = backtest(job, {"max_hold_days": int(one["max_hold_days"]), "rsi_entry": int(one["rsi_entry"])},
                     load_bars(["AAPL", "MSFT"])).stats
    assert one["final_equity"] == alone["end_equity"] and one["rejections"] == alone["rejections"]
    assert one["trades"] == alone["round_trips"] and one["sharpe"] == alone["sharpe"]
    assert rows["rejections"].sum() > 0 and (rows["costs"] > 0).all()  # the gate and the costs really ran
    assert rows["final_equity"].nunique() == 4


def test_swp2_when_serial_and_process_pool_then_rows_identical(tmp_path, make_params):
    """SWP-2: the same sweep on 1 process and on a 2-process pool gives identical rows."""
    db = tmp_path / "s.duckdb"
    common = dict(params=make_params(), db=db, progress=False, **SHORT)
    serial = sweep("swing", SWING_GRID, name="serial", workers=1, **common).results()
    pooled = sweep("swing", SWING_GRID, name="pool", workers=2, **common).results()
    assert serial[SAME].equals(pooled[SAME])


def test_swp1_when_rerun_with_more_sets_then_done_sets_not_run_again(tmp_path, make_params):
    """SWP-1: a rerun skips finished sets (same key) and keeps their rows as they were."""
    db = tmp_path / "s.duckdb"
    common = dict(params=make_params(), db=db, name="grow", workers=1, progress=False, **SHORT)
    sweep("sma_reference", {"fast": [10, 20], "slow": [50]}, **common)
    first = table.results(db, "grow").set_index("key")["finished_at"]
    again = sweep("sma_reference", {"fast": [10, 20, 30], "slow": [50]}, **common)
    assert (again.total, again.skipped, again.ran) == (3, 2, 1)
    after = table.results(db, "grow").set_index("key")["finished_at"]
    assert len(after) == 3 and (after[first.index] == first).all()


def test_swp1_when_sweep_table_would_be_the_ledger_then_refused(make_params):
    """SWP-1: results live outside the ledger."""
    params = make_params()
    with pytest.raises(ConfigError, match="trading ledger"):
        sweep("sma_reference", {"fast": [10]}, params=params, db=params.ledger_path(), progress=False)


def test_swp1_when_unknown_parameter_or_strategy_then_clear_error_before_running(make_params, tmp_path):
    with pytest.raises(ConfigError, match="no parameter fst"):
        sweep("sma_reference", {"fst": [10]}, db=tmp_path / "s.duckdb", progress=False)
    with pytest.raises(TradebookError, match="momentum.*neither a built-in"):
        sweep("momentum", {"x": [1]}, db=tmp_path / "s.duckdb", progress=False)
    assert not (tmp_path / "s.duckdb").exists()


def test_swp1_when_set_is_invalid_then_its_row_holds_the_reason(tmp_path, make_params):
    """SWP-1: a set the params model refuses is recorded with the reason, the others still run."""
    run = sweep("swing", {"rsi_entry": [30, 500]}, params=make_params(), db=tmp_path / "s.duckdb", workers=1,
                progress=False, **SHORT)
    rows = run.results().set_index("rsi_entry")
    assert rows.loc[500, "error"].startswith("invalid params") and "rsi_entry" in rows.loc[500, "error"]
    assert pd.isna(rows.loc[30, "error"]) and rows.loc[30, "final_equity"] > 0


def test_swp1_when_random_search_then_seeded_distinct_sets_from_the_grid():
    grid = {"a": [1, 2, 3, 4], "b": [10, 20, 30]}
    picks = space.random_sets(grid, 5, seed=3)
    assert picks == space.random_sets(grid, 5, seed=3) and len(picks) == 5
    assert len({tuple(p.items()) for p in picks}) == 5 and all(p in space.grid_sets(grid) for p in picks)
    assert space.random_sets(grid, 50, seed=1) == space.grid_sets(grid)


def test_swp1_when_ranges_parsed_then_inclusive_and_bad_ranges_refused():
    assert space.parse_values("20:200:10") == list(range(20, 201, 10))
    assert space.parse_values("0.5:1.0:0.25") == [0.5, 0.75, 1.0]
    assert space.parse_values("5, 10,20") == [5, 10, 20]
    for bad in ("5:1:1", "a,b", "", "1:5:0"):
        with pytest.raises(ConfigError):
            space.parse_values(bad)


def test_swp1_when_sets_differ_in_scope_then_keys_differ():
    job = Job("sma_reference", ("AAPL",))
    assert space.set_key({"fast": 5}, job.scope()) != space.set_key({"fast": 5}, Job("sma_reference", ("IBM",)).scope())
    assert space.set_key({"fast": 5, "slow": 9}, job.scope()) == space.set_key({"slow": 9, "fast": 5}, job.scope())


def test_swp1_when_evaluated_twice_then_same_figures():
    from tradebook.marketdata import load_bars

    job, bars = Job("sma_reference", ("IBM",)), load_bars(["IBM"])
    a, b = evaluate(job, {"fast": 10, "slow": 30}, bars), evaluate(job, {"fast": 10, "slow": 30}, bars)
    assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


# --- the command, interrupted for real ---------------------------------------------------------
@pytest.mark.integration
def test_swp1_when_cli_sweep_interrupted_by_ctrl_c_then_rerun_resumes_without_rerunning(root):
    """SWP-1: SIGINT mid-sweep keeps finished sets; the same command then runs only the rest."""
    db = root / "runs" / "sweeps.duckdb"
    # 108 sets: the sweep is still running when SIGINT lands, on an idle machine too.
    args = [sys.executable, "-m", "tradebook.cli", "sweep", "swing", "--grid", "rsi_entry=10:45:1",
            "--grid", "max_hold_days=5,10,15", "--symbols", "AAPL,IBM", "--start", "2004-01-01",
            "--workers", "2", "--top", "0"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "lib")}
    # Ctrl-C at a terminal: the sweep must see SIGINT's default disposition. A CI job started in the
    # background by a non-interactive shell inherits SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler at all (the sweep would simply finish).
    proc = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_progress(proc, at_least=3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "interrupted:" in err and "run the same command again to resume" in err
    kept = _rows(db)
    assert 3 <= len(kept) < 108
    resumed = time.time()
    second = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr
    assert f"108 sets ({108 - len(kept)} run now, {len(kept)} already done)" in second.stdout
    final = _rows(db)
    assert len(final) == 108 and final["key"].is_unique
    earlier = final.set_index("key").loc[kept["key"], "finished_at"]
    assert (earlier == kept.set_index("key")["finished_at"]).all()
    assert all(ts.timestamp() < resumed for ts in earlier)


def _wait_for_progress(proc: subprocess.Popen, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if " sets done" in line and int(line.rsplit(":", 1)[1].split("/")[0]) >= at_least:
            return
    proc.kill()
    pytest.fail(f"the sweep never reported {at_least} finished sets")


def _rows(db: Path):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT key, finished_at FROM sweep_results").df()
    finally:
        con.close()


@pytest.mark.integration
def test_swp1_when_cli_walk_forward_then_prints_in_and_out_of_sample_figures(root):
    """SWP-1: the walk-forward report names each window's winner and both figures."""
    args = [sys.executable, "-m", "tradebook.cli", "sweep", "sma_reference", "--grid", "fast=5,20", "--grid", "slow=50,100",
            "--symbols", "IBM", "--walk-forward", "rolling", "--in-sample", "4y", "--out-of-sample", "3y",
            "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "lib")}
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "is_sharpe" in done.stdout and "oos_sharpe" in done.stdout and "gap" in done.stdout
    assert "2004-03-01" in done.stdout  # the first out-of-sample window starts after 4 years
    assert "mean sharpe: in-sample" in done.stdout


@pytest.mark.integration
def test_swp1_when_cli_grid_names_an_unknown_parameter_then_plain_error_and_exit_2(root):
    """SWP-1: bad input is one plain line naming the parameter and what to use; nothing is written."""
    args = [sys.executable, "-m", "tradebook.cli", "sweep", "swing", "--grid", "rsi_entryy=20,30"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "lib"), "COLUMNS": "40"}
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "strategy swing has no parameter rsi_entryy; use one of its params (" in done.stderr
    assert not (root / "runs" / "sweeps.duckdb").exists()


def test_swp1_when_name_reused_with_another_grid_then_results_are_only_this_calls_sets(tmp_path):
    """SWP-1: a run's results are its own sets, in order; a set listed twice runs once."""
    db = tmp_path / "s.duckdb"
    common = dict(db=db, name="shared", workers=1, progress=False, symbols=["IBM"])
    sweep("sma_reference", {"fast": [10, 20], "slow": [50]}, **common)
    other = sweep("sma_reference", {"fast": [30, 5, 30], "slow": [60]}, **common)
    assert (other.total, other.ran) == (2, 2)
    assert list(zip(other.results()["fast"], other.results()["slow"])) == [(30, 60), (5, 60)]
    assert len(table.results(db, "shared")) == 4


RAISES_EVERYWHERE = '''
from tradebook.research import Signals, Strategy, StrategyParams

class Raises(Strategy):
    class Params(StrategyParams):
        x: int = 1

    def generate(self, bars, held):
        return 1 / 0
'''


@pytest.mark.integration
def test_swp1_when_every_set_fails_then_error_first_no_empty_table_and_exit_1(root):
    """SWP-1: a sweep where no set could run says so first and exits 1 (old code: "2 of 2 sets could
    not run", then a raw `Empty DataFrame`, exit 0); the reason says the strategy raised for the
    whole call, not "symbol AAPL"."""
    (root / "strategies").mkdir()
    (root / "strategies" / "buggy.py").write_text(RAISES_EVERYWHERE)
    args = [sys.executable, "-m", "tradebook.cli", "sweep", "strategies.buggy:Raises", "--grid", "x=1,2",
            "--start", "2011-01-01", "--end", "2011-02-28", "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "lib"), "TRADEBOOK_ROOT": str(root)}
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    error = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert error.startswith("error: none of the 2 sets could run")
    assert "raised ZeroDivisionError for the whole call" in error and "symbol AAPL" not in error
    assert "Empty DataFrame" not in done.stdout and "best 10" not in done.stdout


def test_swp1_when_top_sets_printed_then_figures_formatted_like_the_backtest_and_round_trips_named():
    """SWP-1 readability: equity with separators, signed percentages, two-decimal Sharpe, and the
    round-trip count named `round_trips` (old: raw floats `0.0997548`, `101302`, and `trades`)."""
    from tradebook.research import views

    rows = pd.DataFrame([{"sweep": "s", "key": "k1", "params": '{"fast": 5}', "fast": 5, "final_equity": 101302.37,
                          "cagr_pct": 0.0997548, "max_drawdown_pct": -1.53184, "sharpe": 0.136701, "trades": 294,
                          "fills": 472, "rejections": 13, "costs": 419.089, "error": None}])
    top = views.top_sets(rows, "sharpe", 5)
    assert "trades" not in top.columns and top.loc[0, "round_trips"] == 294 and top.loc[0, "fills"] == 472
    text = views.readable(top).iloc[0]
    assert (text["final_equity"], text["cagr_pct"], text["max_drawdown_pct"], text["sharpe"], text["costs"],
            text["round_trips"], text["fast"]) == ("101,302", "+0.10%", "-1.53%", "0.14", "419.09", "294", "5")
