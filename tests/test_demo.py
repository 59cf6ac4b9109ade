"""Integration: a few demo days through real papermill runs on SimBroker (foundation done-when)."""
from __future__ import annotations

from pathlib import Path

import json
import nbformat
import pytest

from tradebook.demo import PHASES, run_demo
from tradebook.ledger import fills as fill_store
from tradebook.ledger import runs
from tradebook.ledger.db import Ledger
from support.trading import stored_intents, stored_orders, stored_verdicts

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo")]
DAYS = 3


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    import shutil

    from support import REPO

    root = tmp_path_factory.mktemp("demo")
    shutil.copytree(REPO / "params", root / "params")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    (root / "runs").mkdir()
    summary = run_demo(DAYS, root=root)
    assert summary.failures == []
    (root / "summary.txt").write_text("\n".join(summary.lines()))
    return root


def test_demo_when_run_then_every_phase_of_every_day_has_an_executed_notebook(demo_root: Path):
    days = sorted(p for p in (demo_root / "runs").glob("20*") if p.is_dir())
    assert len(days) == DAYS
    for day in days:
        phases = sorted(p.stem.split("-", 1)[1] for p in day.glob("*.ipynb"))
        assert phases == sorted(PHASES), (day, phases)
        for path in day.glob("*.ipynb"):
            nb = nbformat.read(path, as_version=4)
            assert nb.metadata["papermill"]["exception"] in (None, False), path
            assert any(c.get("metadata", {}).get("tags") == ["injected-parameters"] for c in nb.cells)


def test_demo_when_run_then_ledger_has_runs_intents_with_verdicts_orders_and_fills(demo_root: Path):
    ledger = Ledger(demo_root / "runs" / "ledger.duckdb")
    assert ledger.read(runs.count, status="OK") == DAYS * len(PHASES)
    assert all(r.params_hash for r in ledger.read(runs.latest, None))
    intents, orders = stored_intents(ledger), stored_orders(ledger)
    assert intents
    # every intent that reached the broker has its verdicts stored, and a passing one
    passed = {i.intent_id for i in intents if i.gate_status == "pass"}
    assert [o.client_order_id for o in orders if o.intent_id not in passed] == []
    assert {v.intent_id for v in stored_verdicts(ledger)}
    assert orders
    assert ledger.read(fill_store.count) > 0


def test_demo_when_run_then_report_html_is_written(demo_root: Path):
    html = (demo_root / "runs" / "report.html").read_text()
    assert "<html" in html.lower() and "import tradebook" not in html


def test_demo_when_rerun_then_continues_from_broker_clock_without_duplicates(demo_root: Path):
    """A second demo continues after the first one's sessions (the sim state persists)."""
    ledger = Ledger(demo_root / "runs" / "ledger.duckdb")
    before = max(r.sim_time for r in ledger.read(runs.latest, None) if r.sim_time)
    summary = run_demo(1, root=demo_root)
    assert any(r.sim_time and r.sim_time > before for r in ledger.read(runs.latest, None))
    cids = [o.client_order_id for o in stored_orders(ledger)]
    assert len(cids) == len(set(cids))
    # Issue 13 item 5: the summary counts this demo's own sessions, not the whole ledger's history.
    assert summary.fills == ledger.read(fill_store.count_since, before)
    assert summary.fills < ledger.read(fill_store.count)
    own_rejects = sum(i.gate_status == "reject" and i.updated_at > before for i in stored_intents(ledger))
    assert sum(summary.rejects_by_reason.values()) == own_rejects


def test_demo_when_run_on_a_fresh_clone_then_it_logs_to_runs_logs_as_the_daemon_does(demo_root: Path):
    """OPS-6 (README "Logs"): the demo writes JSON lines to runs/logs/tradebook-<UTC date>.jsonl as the
    daemon does: its start, one line per phase notebook (run id, phase, notebook) and its end. The old
    demo left no runs/logs/ at all; logs appeared only once the daemon ran."""
    files = sorted((demo_root / "runs" / "logs").glob("tradebook-*.jsonl"))
    assert files, "no runs/logs/tradebook-*.jsonl"
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    demo = [line for line in lines if line["logger"] == "tradebook.demo"]
    assert demo[0]["message"] == f"demo started: {DAYS} sessions on sim"
    finished = next(line for line in demo if line["message"].startswith("demo finished"))
    assert finished["message"].startswith(f"demo finished: {DAYS} sessions") and finished["level"] == "INFO"
    with Ledger(demo_root / "runs" / "ledger.duckdb").connect() as con:
        run_ids = {run.run_id for run in runs.latest(con, None)}
    phases = [line for line in demo if line["fields"].get("phase")]   # every demo on this root (reruns too)
    assert {line["run_id"] for line in phases} == run_ids and len(phases) == len(run_ids)
    assert all(line["message"] == f"{line['fields']['phase']} OK" and line["fields"]["notebook"].endswith(".ipynb")
               for line in phases)


def test_demo_when_trading_halted_at_start_then_first_lines_say_so(root: Path):
    """CTL-1: a demo that starts HALTED says so before its first session (and at the head of the
    summary), with the reason; the old summary only showed `gate rejections: HALTED=n`."""
    from datetime import datetime, timezone

    from tradebook.safety import killswitch

    killswitch.write_flag(root / "runs" / killswitch.FLAG_FILE, "HALTED", "news at 9am", "op", "cli",
                          datetime.now(timezone.utc))
    told: list[str] = []
    summary = run_demo(1, root=root, on_start=lambda lines: told.extend(lines),
                       on_step=lambda day, step: told.append(f"step {step}"))
    assert told[0].startswith("trading is HALTED at the start of this demo"), told
    assert any("news at 9am" in line for line in told[:3])
    assert summary.lines()[0] == told[0] and "tradebook resume" in " ".join(summary.lines()[:4])


HOLD_DAEMON_LOCK = """
import sys, time
from pathlib import Path
from tradebook.ops.health import DaemonLock
with DaemonLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def _other_accounts_files(runs_dir: Path) -> dict[str, str]:
    """What the reviewer found archived: a custom-named live ledger, paper's unapplied flatten journal,
    API breaker state, the daemon's lock, heartbeats, kill-switch flags, backups, logs, another account's
    notebook."""
    files = {"my-live.duckdb": "live ledger", "my-live.duckdb.wal": "wal", "paper-ledger.duckdb": "paper ledger",
             "flatten-unrecorded-20260101T150000000000Z.json": json.dumps({"ledger": "paper-ledger.duckdb"}),
             "flatten-unrecorded-20260102T150000000000Z.json": "{not json",
             "api_breaker-paper.json": "{}", "api_breaker-live.json": "{}", "heartbeat-paper-ledger.json": "{}",
             "heartbeat-my-live.json": "{}", "KILL_SWITCH-ledger": "HALTED", "KILL_SWITCH-my-live": "HALTED",
             "README.md": "readme", "backups/ledger-20110101T000000Z.duckdb": "backup",
             "2011-07-26/093000-reconcile.ipynb": "the live account's notebook, same day folder"}
    for name, text in files.items():
        (runs_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (runs_dir / name).write_text(text)
    return files


def test_demo_fresh_when_runs_folder_is_shared_then_only_the_sim_accounts_own_output_moves(root: Path):
    """OPS-8 / CTL-1: `demo --fresh` moves only what the sim account wrote (its ledger and state, its
    notebooks, report.html, its heartbeat and its own flatten journal); every other account's file stays
    where its owner looks for it: the old rule moved a custom-named live ledger, paper's unapplied flatten
    journal, breaker state, daemon.lock and heartbeats."""
    runs_dir = root / "runs"
    first = run_demo(1, root=root)
    assert first.failures == []
    ours = sorted(p.relative_to(runs_dir).as_posix() for p in runs_dir.rglob("*")
                  if p.is_file() and "logs" not in p.parts)
    others = _other_accounts_files(runs_dir)
    (runs_dir / "daemon.lock").write_text("pid 1 on nowhere\n")   # not held: the daemon stopped
    own_extra = {"heartbeat-ledger.json": "{}",
                 "flatten-unrecorded-20110726T150000000000Z.json": json.dumps({"ledger": "ledger.duckdb"})}
    for name, text in own_extra.items():
        (runs_dir / name).write_text(text)
    run_demo(1, root=root, fresh=True)
    archived = sorted(p.relative_to(next((runs_dir / "archive").iterdir())).as_posix()
                      for p in (runs_dir / "archive").rglob("*") if p.is_file())
    assert archived == sorted([*ours, *own_extra])
    for name, text in others.items():
        assert (runs_dir / name).read_text() == text, name
    assert (runs_dir / "daemon.lock").exists() and (runs_dir / "logs").is_dir()


def test_demo_fresh_when_a_daemon_holds_the_runs_lock_then_refused_and_nothing_moved(root: Path, cli):
    """OPS-4 / OPS-8: while a running daemon holds runs/daemon.lock, `demo --fresh` refuses with a plain
    error naming it and moves nothing (the old one moved the lock from under the daemon, letting a second
    daemon start); once the daemon stopped, --fresh works."""
    import subprocess
    import sys

    from tradebook.errors import TradebookError

    runs_dir = root / "runs"
    assert run_demo(1, root=root).failures == []
    daemon = subprocess.Popen([sys.executable, "-c", HOLD_DAEMON_LOCK, str(runs_dir / "daemon.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert daemon.stdout.readline().strip() == "held"
        before = sorted(p.relative_to(runs_dir) for p in runs_dir.rglob("*"))
        with pytest.raises(TradebookError, match=r"daemon is running .*pid \d+.*stop it first"):
            run_demo(1, root=root, fresh=True)
        code, out = cli("demo", "--days", "1", "--fresh")   # the command line: one plain line, exit 2
        assert code == 2 and "a tradebook daemon is running on" in out and "Traceback" not in out, out
        assert sorted(p.relative_to(runs_dir) for p in runs_dir.rglob("*")) == before
    finally:
        daemon.kill()
        daemon.wait(30)
    run_demo(1, root=root, fresh=True)
    assert (runs_dir / "daemon.lock").exists()
    assert [p.name for p in (runs_dir / "archive").glob("*/ledger.duckdb")] == ["ledger.duckdb"]


def test_replay_when_broker_is_not_the_simulator_then_monitor_never_holds_the_ledger(ctx, monkeypatch):
    """OPS-1: the demo's monitor tick holds the ledger for its burst of calls only on SimBroker (in-process,
    no waiting). With the loopback Alpaca fake (mode paper) the tick's broker calls go over HTTP with retries
    and 429 back-off: the ledger is not held across them, so another process can open it meanwhile. The
    old replay held it for every broker."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from tradebook.demo import replay
    from tradebook.ledger import attach
    from tradebook.phases import monitor

    def other_process_opens(path: Path) -> bool:
        code = f"import duckdb; duckdb.connect({str(path)!r}).close()"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode == 0

    seen: dict[str, tuple[bool, bool]] = {}

    def tick(c) -> None:   # stands in for run_monitor: where its broker calls would wait
        if c.params.mode not in seen:
            seen[c.params.mode] = (attach.is_attached(c.ledger.path), other_process_opens(c.ledger.path))

    monkeypatch.setattr(monitor, "run_monitor", tick)
    ctx.ledger.check()
    fake_account = SimpleNamespace(params=ctx.params.model_copy(update={"mode": "paper"}), ledger=ctx.ledger)
    replay(fake_account, ctx.broker, 1, lambda step: None)
    replay(ctx, ctx.broker, 1, lambda step: None)
    assert seen == {"paper": (False, True), "sim": (True, False)}
