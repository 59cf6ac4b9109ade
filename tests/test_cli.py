"""The CLI: bad input gets one clear line and exit code 2, never a traceback or a new ledger."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def tradebook(root: Path, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradebook.cli", *args], cwd=root, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "TRADEBOOK_ROOT": str(root), **(env or {})})


def test_run_when_params_file_has_unknown_key_then_clear_error_naming_key_and_file(root: Path):
    """CFG-1 through the CLI: nothing runs, no notebook, exit 2."""
    bad = root / "params" / "bad.yaml"
    bad.write_text("mode: sim\nmax_positon_pct: 0.03\n")
    out = tradebook(root, "run", "reconcile", "--params", str(bad))
    assert out.returncode == 2
    assert "max_positon_pct" in out.stderr and "bad.yaml" in out.stderr
    assert "Traceback" not in out.stderr
    assert not list((root / "runs").glob("20*"))


def test_run_when_error_names_a_long_path_and_terminal_is_narrow_then_message_printed_whole(root: Path):
    """Errors are plain text (issue 12 item 13, CFG-1): a long path in the unknown-key message comes
    out whole on one line, piped and with COLUMNS=20 -- never wrapped or shortened to `...`."""
    folder = root / "params" / ("a-rather-long-folder-name-" * 4).rstrip("-")
    folder.mkdir()
    bad = folder / "bad-params-with-a-long-file-name.yaml"
    bad.write_text("mode: sim\nmax_positon_pct: 0.03\n")
    out = tradebook(root, "run", "reconcile", "--params", str(bad), env={"COLUMNS": "20", "TERM": "xterm"})
    assert out.returncode == 2
    line = next(ln for ln in out.stderr.splitlines() if ln.startswith("error: "))
    assert str(bad) in line and "max_positon_pct" in out.stderr and "..." not in out.stderr
    assert "\x1b[" not in out.stderr   # no colour codes in a pipe


def test_run_when_override_is_invalid_then_clear_error(root: Path):
    out = tradebook(root, "run", "execute", "-p", "orders_per_run=-3")
    assert out.returncode == 2 and "orders_per_run" in out.stderr and "Traceback" not in out.stderr


def test_run_when_phase_unknown_then_clear_error(root: Path):
    out = tradebook(root, "run", "trade-everything")
    assert out.returncode == 2 and "unknown phase" in out.stderr


def test_run_when_ledger_corrupt_then_clear_error_and_file_kept(root: Path):
    """OPS-3: a corrupt ledger is reported, never replaced by an empty one."""
    ledger = root / "runs" / "ledger.duckdb"
    ledger.write_bytes(b"not a database" * 200)
    out = tradebook(root, "run", "reconcile")
    assert out.returncode == 2
    assert "corrupt" in out.stderr and str(ledger) in out.stderr.replace("\n", "")
    assert ledger.read_bytes() == b"not a database" * 200


def test_run_when_ledger_locked_by_another_process_then_clear_error(root: Path):
    """OPS-1: a held lock is named, with what to do, after the retry budget."""
    from tradebook.ledger.db import Ledger

    ledger = root / "runs" / "ledger.duckdb"
    Ledger(ledger).check()
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({str(ledger)!r}); "
                               "print('locked', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        out = tradebook(root, "run", "reconcile", env={"TRADEBOOK_LEDGER_LOCK_TIMEOUT_S": "1"})
        assert out.returncode == 2
        assert "locked" in out.stderr and "Traceback" not in out.stderr
    finally:
        holder.kill()
        holder.wait()


def test_resume_when_reset_peak_after_drawdown_freeze_then_running_with_new_peak(root: Path):
    """BRK-2 / CTL-2: after a drawdown freeze, `resume --reset-peak` restarts the high-water mark."""
    from tradebook.safety import controls
    from tradebook.safety.breakers import current_peak
    from tradebook.context import Context
    from tradebook.ledger import equity as equity_store

    from datetime import timedelta

    ctx = Context.load(None, {}, root=root)
    earlier = ctx.now() - timedelta(days=3)
    with ctx.ledger.transaction() as con:
        equity_store.append_snapshot(con, earlier, earlier.date(), "PEAK", 150000, 150000)
    controls.freeze(ctx.ledger, "BRK-2 max drawdown", actor="breaker", source="BRK-2")
    out = tradebook(root, "resume", "--reason", "drawdown reviewed", "--yes", "--reset-peak")
    assert out.returncode == 0, out.stderr
    assert controls.effective_state(ctx.params, root).state == "RUNNING"
    with ctx.ledger.connect() as con:
        assert current_peak(con) == ctx.broker.account().equity


def test_run_when_option_unknown_then_usage_error_plain_without_traceback(root: Path):
    """Errors printed whole (issue 12 item 13): a usage error from typer's own click is one plain
    message with exit code 2, never a traceback."""
    out = tradebook(root, "run", "execute", "--no-such-option", env={"COLUMNS": "20"})
    assert out.returncode == 2 and "No such option" in out.stderr and "Traceback" not in out.stderr


def test_status_when_params_path_long_and_terminal_narrow_then_message_lines_not_broken(root: Path):
    """Errors printed whole (issue 12 item 13): status' explanation names a long params path on one
    line, piped with COLUMNS=20 (rich would break it at the terminal width)."""
    missing = root / ("a-very-long-folder-name-for-the-params-file-" * 3) / "params.yaml"
    out = tradebook(root, "status", "--params", str(missing), env={"COLUMNS": "20"})
    assert any(str(missing) in line for line in (out.stdout + out.stderr).splitlines()), out.stdout + out.stderr


@pytest.mark.parametrize("command,word", [("flatten", "FLATTEN"), ("resume", "RESUME")])
def test_confirm_when_stdin_closed_then_plain_refusal_no_traceback_nothing_changed(root: Path, command, word):
    """CTL-4/CTL-5: `flatten`/`resume` with no answer on stdin (cron, </dev/null) refuse in one plain
    message that says to use --yes; no traceback, nothing halted or frozen."""
    out = subprocess.run([sys.executable, "-m", "tradebook.cli", command, "--reason", "qa"], cwd=root,
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
                         env={**os.environ, "TRADEBOOK_ROOT": str(root)})
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert "not confirmed" in out.stderr and "--yes" in out.stderr and word in out.stderr
    assert not list((root / "runs").glob("KILL_SWITCH*"))


def test_status_when_terminal_narrow_then_last_runs_notebook_path_relative_and_never_cut(root: Path):
    """CTL-4 status: the last runs' notebook paths are shown relative to the project and whole,
    never cut to "…" or broken in a narrow or piped terminal (an operator must be able to open it)."""
    ran = tradebook(root, "run", "reconcile")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    notebook = Path(ran.stdout.split(" · ", 1)[1].splitlines()[0]).relative_to(root)
    out = tradebook(root, "status", env={"COLUMNS": "60"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "…" not in out.stdout and str(root) not in out.stdout
    row = next(line for line in out.stdout.splitlines() if " reconcile " in line)
    assert str(notebook) in row.split(), out.stdout


def _seed_runs(root: Path, runs: list[tuple[str, str, str, str | None]]) -> None:
    """Runs in the ledger through its store: (phase, status, notebook path under root, error)."""
    from datetime import datetime, timedelta, timezone

    from tradebook.ledger import runs as run_store
    from tradebook.ledger.db import Ledger
    from tradebook.params import load_params

    params = load_params(root / "params" / "sim.yaml", {"runs_dir": str(root / "runs")})
    wall = datetime(2026, 11, 29, 1, 0, tzinfo=timezone.utc)        # when the process ran
    sim = datetime(2011, 7, 5, 13, 25, tzinfo=timezone.utc)          # the simulated clock: 09:25 EDT
    with Ledger(params.ledger_path(root)).transaction() as con:
        for i, (phase, status, notebook, error) in enumerate(runs):
            run_store.start(con, f"run-{i}", phase, started_at=wall + timedelta(minutes=i),
                            notebook_path=str(root / notebook), sim_time=sim + timedelta(days=i))
            run_store.finish(con, f"run-{i}", status, wall + timedelta(minutes=i, seconds=7.5), error)


def test_status_when_piped_at_80_columns_then_each_run_is_one_line_with_its_path_whole(root: Path):
    """CTL-4 status in a pipe (`tradebook status | cat`, COLUMNS=80): every run is one line, found by
    grep, its notebook path whole even when long and when the run failed with a long error (the old
    table wrapped each run over 3-5 lines and broke paths mid-word)."""
    long_dir = "runs/" + "a-notebook-folder-with-a-rather-long-name/" * 2
    seeded = [("reconcile", "OK", "runs/2011-07-05/092500-reconcile.ipynb", None),
              ("decide", "FAILED", long_dir + "092500-decide.ipynb",
               "StrategyError: the strategy raised KeyError('close') while scoring AAPL, MSFT and 40 more"),
              ("execute", "OK", long_dir + "093000-execute-with-a-long-name.ipynb", None)]
    _seed_runs(root, seeded)
    out = tradebook(root, "status", env={"COLUMNS": "80", "TERM": "dumb"})
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    for phase, state, notebook, _ in seeded:
        rows = [line for line in lines if f" {phase} " in line]
        assert len(rows) == 1, out.stdout                       # one line per run: grep finds all of it
        assert state in rows[0].split() and notebook in rows[0].split(), out.stdout
    failed = next(line for line in lines if " FAILED " in line)
    assert "StrategyError: the strategy raised" in failed and "│" not in out.stdout and "…" not in out.stdout


def test_status_when_sim_mode_then_runs_started_on_the_simulated_clock_labelled_and_took_on_wall(root: Path):
    """OPS-1/README (sim clock): in sim mode a run's "started" is the simulated time, labelled, in
    exchange time; the wall clock only measures how long it took (the old column showed the wall
    start, 2026, for a 2011 session)."""
    _seed_runs(root, [("reconcile", "OK", "runs/2011-07-05/092500-reconcile.ipynb", None)])
    out = tradebook(root, "status", env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stdout + out.stderr
    header = next(line for line in out.stdout.splitlines() if line.startswith("started"))
    assert header.startswith("started (sim)") and "took" in header, out.stdout
    row = next(line for line in out.stdout.splitlines() if " reconcile " in line)
    assert row.startswith("2011-07-05 09:25:00 EDT") and " 7.5s " in row and "2026" not in row, out.stdout
    assert "simulated clock" in out.stdout


def test_demo_when_broker_unknown_then_clear_error_before_any_progress_bar(root: Path):
    """Bad input is refused first: `demo --broker ibkr` names the choices, exit 2, no progress bar
    drawn and nothing under runs/ (the old code drew the bar, then failed)."""
    out = tradebook(root, "demo", "--broker", "ibkr", "--days", "1")
    assert out.returncode == 2 and "ibkr" in out.stderr and "alpaca-fake" in out.stderr
    assert "demo" not in out.stdout and "0/4" not in out.stdout + out.stderr, out.stdout
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in (root / "runs").iterdir()) == []
