"""CTL-1/CTL-2/CTL-6: what a halt halts, and that nothing about the params file can stop it.

- a params file that cannot be read (not UTF-8, a directory, no permission, binary garbage)
  is a plain "params invalid": halt still writes the all-accounts flag, status/health exit 2;
- a bare `tradebook halt` (no --params) halts EVERY account of the runs folder (the panic
  button); `halt --params X` halts that account only; `halt --all-accounts` says it explicitly;
- the all-accounts flag carries the wall clock, never a simulation's.

Real CLI (``tradebook.cli.main``), output captured, no terminal.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tradebook.safety.killswitch import read_flag


@pytest.fixture(autouse=True)
def _no_env_kill_switch(monkeypatch):
    monkeypatch.delenv("KILL_SWITCH", raising=False)


def _latin1(root: Path) -> str:
    path = root / "params" / "latin1.yaml"
    path.write_bytes((root / "params" / "sim.yaml").read_bytes() + "# stratégie révisée\n".encode("latin-1"))
    return "params/latin1.yaml"


def _directory(root: Path) -> str:
    return "params"


def _unreadable(root: Path) -> str:
    path = root / "params" / "locked.yaml"
    path.write_bytes((root / "params" / "sim.yaml").read_bytes())
    path.chmod(0)
    return "params/locked.yaml"


def _garbage(root: Path) -> str:
    (root / "params" / "garbage.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00")
    return "params/garbage.yaml"


def _control_chars(root: Path) -> str:
    (root / "params" / "ctrl.yaml").write_bytes(b"mode: sim\n\x00\x01\x02 runs_dir: [\n")
    return "params/ctrl.yaml"


BROKEN = {"latin-1": (_latin1, "not UTF-8"), "a directory": (_directory, "is a directory"),
          "no permission": (_unreadable, "cannot be read"), "binary garbage": (_garbage, "not UTF-8"),
          "control characters": (_control_chars, "not valid YAML")}


@pytest.fixture
def deny_unreadable(monkeypatch):
    """Root reads a chmod-0 file anyway: make the refusal real for the test's locked file."""
    if os.geteuid() != 0:
        return
    original = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "locked.yaml":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)


@pytest.mark.parametrize("case", list(BROKEN))
def test_halt_when_params_file_unreadable_then_all_accounts_flag_and_status_health_exit_2(
        root: Path, cli, deny_unreadable, case: str):
    """CTL-6: a params file that cannot be read at all never stops a halt; status/health fail closed."""
    make, problem = BROKEN[case]
    params = make(root)
    code, text = cli("halt", "-r", "panic", "--params", params)
    assert code == 0 and "Traceback" not in text, text
    assert json.loads((root / "runs" / "KILL_SWITCH").read_text())["reason"] == "panic"
    assert "params invalid" in text and problem in text and str(root / params) in text, text
    code, text = cli("status", "--params", params)
    assert code == 2 and "HALTED" in text and "panic" in text and problem in text, text
    code, text = cli("health", "--params", params)
    assert code == 2 and "trading is HALTED" in text and problem in text, text


def test_halt_when_params_file_empty_then_defaults_halt_that_account(root: Path, cli):
    """CTL-6: an empty file is valid (every default): the named account (sim) is halted."""
    (root / "params" / "empty.yaml").write_text("")
    code, text = cli("halt", "-r", "panic", "--params", "params/empty.yaml")
    assert code == 0 and read_flag(root / "runs" / "KILL_SWITCH-ledger") is not None, text


def test_halt_when_loading_params_raises_anything_then_flag_still_written(root: Path, cli, monkeypatch):
    """CTL-6: halting never fails because of the params, whatever the loader raises."""
    def boom(*_args, **_kwargs):
        raise RuntimeError("unexpected failure in the params loader")

    monkeypatch.setattr("tradebook.context.load_params", boom)
    code, text = cli("halt", "-r", "panic")
    assert code == 0 and (root / "runs" / "KILL_SWITCH").exists(), text
    assert "RuntimeError: unexpected failure in the params loader" in text
    code, text = cli("status")
    assert code == 2 and "HALTED" in text, text


def test_halt_when_no_params_given_then_every_account_halted_until_resume_all_accounts(root: Path, cli):
    """CTL-1/CTL-2: a bare `tradebook halt` halts paper as well as sim (the all-accounts flag); a plain
    resume clears only its own account and says the all-accounts flag still halts; --all-accounts clears it."""
    from tradebook.context import Context
    from tradebook.safety.controls import effective_state

    paper = Context.load("params/alpaca-paper.yaml", {}, root=root)
    code, text = cli("halt", "-r", "panic")
    assert code == 0 and "halted EVERY account" in text, text
    assert read_flag(root / "runs" / "KILL_SWITCH") is not None
    assert effective_state(paper.params, root).state == "HALTED"
    code, text = cli("resume", "-r", "sim checked", "--yes")
    assert "still HALTED by the all-accounts kill-switch flag" in text, text
    assert effective_state(paper.params, root).state == "HALTED"
    code, text = cli("resume", "-r", "all checked", "--yes", "--all-accounts")
    assert code == 0 and not (root / "runs" / "KILL_SWITCH").exists(), text
    assert effective_state(paper.params, root).state == "RUNNING"


def test_halt_when_params_given_then_that_account_only_and_all_accounts_flag_explicit(root: Path, cli):
    """CTL-1: `halt --params X` halts X only; `halt --params X --all-accounts` halts every account."""
    code, text = cli("halt", "-r", "sim only", "--params", "params/sim.yaml")
    assert code == 0 and "this account only" in text, text
    assert (root / "runs" / "KILL_SWITCH-ledger").exists() and not (root / "runs" / "KILL_SWITCH").exists()
    code, text = cli("halt", "-r", "everyone", "--params", "params/sim.yaml", "--all-accounts")
    assert code == 0 and "halted EVERY account" in text, text
    assert json.loads((root / "runs" / "KILL_SWITCH").read_text())["reason"] == "everyone"


def test_halt_all_when_sim_clock_in_the_past_then_flag_on_wall_clock_row_on_sim_clock(root: Path, cli):
    """CTL-1 + one clock: the all-accounts flag halts paper/live, so it carries the real time; the sim
    ledger row keeps the simulated time."""
    from support.trading import EXEC_DAY, control_rows, make_ctx, ny

    ctx = make_ctx(root)
    sim_time = ny(EXEC_DAY, 10, 0)
    ctx.broker.advance_to(sim_time)
    control_rows(ctx)                                           # the ledger exists
    code, text = cli("halt", "-r", "panic")
    assert code == 0, text
    flag_ts = datetime.fromisoformat(json.loads((root / "runs" / "KILL_SWITCH").read_text())["ts"])
    assert abs(flag_ts - datetime.now(timezone.utc)) < timedelta(minutes=5), flag_ts
    assert [c["ts"] for c in control_rows(ctx) if c["state"] == "HALTED"] == [sim_time]
