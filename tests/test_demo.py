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


def test_archive_when_fresh_sim_demo_then_paper_live_ledgers_and_kill_switch_stay(tmp_path: Path):
    """OPS-8 / CTL-1: `demo --fresh` moves the simulator's output aside, never the paper or live
    account's ledger (or its WAL), heartbeat or breaker state, a flatten journal, the fake demo's folder,
    backups, or the kill-switch flag."""
    from tradebook.demo import archive_runs

    runs_dir = tmp_path / "runs"
    kept = ["paper-ledger.duckdb", "paper-ledger.duckdb.wal", "live-ledger.duckdb", "KILL_SWITCH", "KILL_SWITCH-ledger",
            "KILL_SWITCH-paper-ledger", "heartbeat-paper-ledger.json", "api_breaker-live.json",
            "flatten-unrecorded-20110823T150000Z.json", "README.md", "demo-alpaca-fake", "backups"]
    moved = ["ledger.duckdb", "sim_state.duckdb", "report.html", "2011-07-05", "heartbeat-ledger.json",
             "api_breaker-sim.json", "flatten-unrecorded-20110701T150000Z.json"]
    journals = {"flatten-unrecorded-20110823T150000Z.json": "paper-ledger.duckdb",
                "flatten-unrecorded-20110701T150000Z.json": "ledger.duckdb"}
    for name in kept + moved:
        (runs_dir / name).parent.mkdir(parents=True, exist_ok=True)
        if name in journals:
            (runs_dir / name).write_text(json.dumps({"ledger": journals[name]}))
        elif "." in name or name.startswith("KILL_SWITCH"):
            (runs_dir / name).write_text(name)
        else:
            (runs_dir / name).mkdir()
    dest = archive_runs(runs_dir)
    assert dest is not None
    assert sorted(p.name for p in runs_dir.iterdir() if p.name != "archive") == sorted(kept)
    assert sorted(p.name for p in dest.iterdir()) == sorted(moved)
