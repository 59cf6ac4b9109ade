"""CFG-1 / REC-8: `tradebook run` refuses params that cannot start a broker before anything is written.

Live without TRADEBOOK_LIVE=1, or paper/live without keys, used to be caught inside the
notebook: after the mode's ledger, a FAILED run row and a notebook were created, and a paper
reconcile then tripped REDUCE_ONLY (RECONCILE_FAILED) for a configuration mistake. Real CLI
subprocesses, output captured. Also: the execute summary states the real trading state.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from test_cli import tradebook

NO_KEYS = {"APCA_API_KEY_ID": "", "APCA_API_SECRET_KEY": "", "TRADEBOOK_LIVE": ""}


def _written(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "runs").rglob("*"))


def test_run_when_mode_live_without_opt_in_then_refused_and_nothing_written(root: Path):
    """CFG-1: `run decide -p mode=live` without TRADEBOOK_LIVE=1: plain error, no live ledger, no run, no notebook."""
    out = tradebook(root, "run", "decide", "-p", "mode=live",
                    env={"APCA_API_KEY_ID": "PKTEST", "APCA_API_SECRET_KEY": "secret-test", "TRADEBOOK_LIVE": ""})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "TRADEBOOK_LIVE=1" in out.stderr and "nothing written" in out.stderr and "Traceback" not in out.stderr
    assert _written(root) == []


@pytest.mark.parametrize("phase", ["reconcile", "execute"])
def test_run_when_paper_keys_missing_then_refused_and_no_ledger_no_reduce_only(root: Path, phase: str):
    """REC-8 is for outages, not config: a paper phase without keys is refused before the paper ledger
    exists, so no REDUCE_ONLY trip rejects the next day's entries."""
    out = tradebook(root, "run", phase, "--params", "params/alpaca-paper.yaml", env=NO_KEYS)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "APCA_API_KEY_ID" in out.stderr and "nothing written" in out.stderr and "Traceback" not in out.stderr
    assert _written(root) == []


def test_run_execute_when_halted_and_nothing_due_then_summary_says_halted(root: Path):
    """GATE-1 (CLI, piped): `run execute` with nothing due while HALTED prints "state HALTED", not RUNNING."""
    assert tradebook(root, "halt", "-r", "drill").returncode == 0
    out = tradebook(root, "run", "execute")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "state HALTED" in out.stdout and "state RUNNING" not in out.stdout, out.stdout
