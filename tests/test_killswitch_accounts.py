"""CTL-1/CTL-2/CTL-6/OPS-4: one kill-switch flag and one heartbeat per account (ledger).

sim, paper and live ledgers may share one ``runs/`` folder: a halt of one account must
never be cleared by another account's ``resume``, nor show in its status, and `health`
must read the heartbeat of the daemon that drives its own ledger. Real CLI subprocesses,
output captured (as through a pipe).
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb

from test_cli import tradebook

PAPER = ["--params", "params/alpaca-paper.yaml", "-p", "alpaca.url_override=http://127.0.0.1:9",
         "-p", "alpaca.data_url_override=http://127.0.0.1:9", "-p", "alpaca.retries=0", "-p", "alpaca.timeout_s=1"]
KEYS = {"APCA_API_KEY_ID": "PKTEST", "APCA_API_SECRET_KEY": "secret-test"}


def _cli(root: Path, *args: str) -> tuple[int, str]:
    out = tradebook(root, *args, env={**KEYS, "TRADEBOOK_LEDGER_LOCK_TIMEOUT_S": "1"})
    return out.returncode, out.stdout + out.stderr


def _paper_ledger(root: Path) -> Path:
    from tradebook.ledger.db import Ledger

    path = root / "runs" / "paper-ledger.duckdb"
    with Ledger(path).connect():
        pass
    return path


def test_resume_when_another_account_halted_with_its_ledger_locked_then_that_halt_stays(root: Path):
    """CTL-2 (reviewer's repro): the paper ledger is locked, so its halt is only a flag; a sim `resume`
    must not remove it: paper stays HALTED with its reason, and the sim resume does not claim the flag."""
    ledger = _paper_ledger(root)
    holder = duckdb.connect(str(ledger))
    try:
        code, text = _cli(root, "halt", "-r", "live problem", *PAPER)
        assert code == 0 and "not recorded in the ledger" in text, text
    finally:
        holder.close()
    code, text = _cli(root, "resume", "-r", "continue demo", "--yes")
    assert code == 0, text
    assert "removed the kill-switch flag" not in text and "paper" not in text, text
    code, text = _cli(root, "status", *PAPER)
    assert "HALTED" in text and "live problem" in text, text
    assert (root / "runs" / "KILL_SWITCH-paper-ledger").exists()


def test_status_when_another_account_halted_then_own_state_shown(root: Path):
    """CTL-1: a paper halt does not make sim status HALTED, and a sim halt does not halt paper."""
    code, text = _cli(root, "halt", "-r", "paper only", *PAPER)
    assert code == 0, text
    code, text = _cli(root, "status")
    assert code == 0 and "RUNNING" in text and "paper only" not in text, text
    code, text = _cli(root, "halt", "-r", "sim only", "--params", "params/sim.yaml")
    code, text = _cli(root, "status", *PAPER)
    assert "HALTED" in text and "paper only" in text and "sim only" not in text, text


def test_health_when_only_another_accounts_daemon_beats_then_no_heartbeat_for_this_one(root: Path, make_params):
    """OPS-4: the sim daemon's heartbeat is not the paper account's: `health --params paper` says none."""
    from tradebook.ops.health import Heartbeat, heartbeat_path, write_heartbeat

    now = datetime.now(timezone.utc)
    sim = make_params()
    write_heartbeat(heartbeat_path(sim, root), Heartbeat(1, "elsewhere", now, now, "sim", "running", 600.0))
    code, text = _cli(root, "health")
    assert "no heartbeat file" not in text, text
    code, text = _cli(root, "health", *PAPER)
    assert code != 0 and "no heartbeat file" in text, text


def test_resume_when_halted_without_valid_params_then_every_account_halted_until_all_accounts(root: Path):
    """CTL-6 + CTL-2: a halt with invalid params cannot know the account, so it halts every account;
    a plain `resume` says it stays HALTED and how to clear it; `resume --all-accounts` clears it, saying so."""
    code, text = _cli(root, "halt", "-r", "broken params drill", "--params", "params/nope.yaml")
    assert code == 0 and "EVERY account" in text, text
    assert (root / "runs" / "KILL_SWITCH").exists()
    for args in ((), tuple(PAPER)):
        code, text = _cli(root, "status", *args)
        assert "HALTED" in text and "broken params drill" in text, text
    code, text = _cli(root, "resume", "-r", "sim checked", "--yes")
    assert code == 0 and "--all-accounts" in text and "still HALTED" in text, text
    assert (root / "runs" / "KILL_SWITCH").exists()
    code, text = _cli(root, "resume", "-r", "all checked", "--yes", "--all-accounts")
    assert code == 0 and "removed the all-accounts kill-switch flag" in text and "RUNNING" in text, text
    assert not (root / "runs" / "KILL_SWITCH").exists()
    code, text = _cli(root, "status")
    assert code == 0 and "RUNNING" in text, text
