"""OPS-8: a ledger belongs to one broker identity (mode + account); another is refused, touching no row.

The paper side runs against the loopback Alpaca fake (account number PA3FAKE00001)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from tradebook.ledger import meta as ledger_meta
from tradebook.ledger import runs
from tradebook.testing.alpaca_fake.server import FakeAlpacaServer
from tradebook.context import Context
from tradebook.ledger.identity import KEY, LedgerMismatch
from tradebook.ledger.db import Ledger
from tradebook.params import load_params
from tradebook.phases.reconcile import run_reconcile
from tradebook.engine.runner import run_phase
from support.trading import DECIDE_DAY, hold, make_ctx, ny

KEYS = {"APCA_API_KEY_ID": "PKIDENTITYTEST000001", "APCA_API_SECRET_KEY": "SKIDENTITYTESTSECRET000001"}


@pytest.fixture
def fake(monkeypatch):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    with FakeAlpacaServer(start=ny(DECIDE_DAY, 9, 0), key_id=KEYS["APCA_API_KEY_ID"],
                          secret_key=KEYS["APCA_API_SECRET_KEY"]) as server:
        yield server


@pytest.fixture
def sim_ledger(root):
    """What `make demo` leaves behind: a sim ledger with a position, a reconcile and its identity."""
    ctx = make_ctx(root)
    ctx.broker.advance_to(ny(DECIDE_DAY, 9, 15))
    hold(ctx, "MSFT", 100, 25.0)
    run_reconcile(ctx)
    return ctx


def _paper(root, fake, **overrides) -> Context:
    merged = {**fake.overrides(), "runs_dir": str(root / "runs"), "alpaca.retries": 0, **overrides}
    return Context(load_params(root / "params" / "alpaca-paper.yaml", merged), root)


def _snapshot(path) -> dict[str, int]:
    return Ledger(path).check()


def test_ops8_when_sim_and_paper_use_default_paths_then_each_has_its_own_ledger(root, fake, sim_ledger):
    """OPS-8: the default ledger of paper is not the simulation's; both record their identity."""
    paper = _paper(root, fake)
    assert paper.params.ledger_path(root) != sim_ledger.params.ledger_path(root)
    before = _snapshot(sim_ledger.params.ledger_path(root))
    run_reconcile(paper)
    assert _snapshot(sim_ledger.params.ledger_path(root)) == before
    with paper.ledger.connect() as con:
        assert ledger_meta.get(con, KEY) == {"mode": "paper", "account": "PA3FAKE00001"}
    with sim_ledger.ledger.connect() as con:
        assert ledger_meta.get(con, KEY) == {"mode": "sim", "account": "sim"}


def test_ops8_when_paper_run_points_at_the_sim_ledger_then_refused_and_no_row_touched(root, fake, sim_ledger):
    """OPS-8: an explicit ledger_file of another identity is refused with a clear message."""
    path = sim_ledger.params.ledger_path(root)
    before = _snapshot(path)
    paper = _paper(root, fake, ledger_file="ledger.duckdb")
    with pytest.raises(LedgerMismatch) as err:
        run_reconcile(paper)
    text = str(err.value)
    assert "belongs to sim (SimBroker)" in text and "paper account PA3FAKE00001" in text
    assert "no row was written" in text and "remove `ledger_file`" in text
    assert _snapshot(path) == before


def test_ops8_when_phase_run_against_another_accounts_ledger_then_no_run_row_and_no_notebook(root, fake,
                                                                                             sim_ledger):
    """OPS-8 through the runner: refused before the runs row and before a notebook file is reserved."""
    path = sim_ledger.params.ledger_path(root)
    before = _snapshot(path)
    overrides = {**fake.overrides(), "ledger_file": "ledger.duckdb", "alpaca.retries": 0}
    with pytest.raises(LedgerMismatch):
        run_phase("reconcile", params_file="params/alpaca-paper.yaml", overrides=overrides, root=root)
    assert _snapshot(path) == before
    assert not list((root / "runs").rglob("*-reconcile.ipynb"))


def test_ops8_when_another_paper_account_then_refused(root, fake):
    """OPS-8: the account number counts, not only the mode."""
    paper = _paper(root, fake)
    run_reconcile(paper)
    with paper.ledger.transaction() as con:
        ledger_meta.put(con, KEY, {"mode": "paper", "account": "PA9OTHER0001"}, paper.now())
    with pytest.raises(LedgerMismatch, match="paper account PA9OTHER0001"):
        run_reconcile(_paper(root, fake))


def test_ops8_when_ledger_predates_identities_then_judged_by_the_modes_of_its_runs(root, fake):
    """OPS-8: a ledger without a recorded identity but with sim runs is not adopted by paper."""
    path = make_ctx(root).params.ledger_path(root)
    with Ledger(path).transaction() as con:  # written before identities were recorded: a run, no identity
        runs.start(con, "r1", "reconcile", params_json=json.dumps({"mode": "sim"}), started_at=datetime.now(timezone.utc))
        runs.finish(con, "r1", "OK", datetime.now(timezone.utc), None)
        assert ledger_meta.get(con, KEY) is None
    with pytest.raises(LedgerMismatch, match="was used by sim runs"):
        _ = _paper(root, fake, ledger_file="ledger.duckdb").ledger


@pytest.mark.integration
def test_ops8_when_cli_reconcile_paper_against_sim_ledger_then_exit_2_says_why(root, fake, sim_ledger):
    """The issue's done-when: `tradebook run reconcile --params params/alpaca-paper.yaml` touches no row."""
    path = sim_ledger.params.ledger_path(root)
    before = _snapshot(path)
    args = ["--params", "params/alpaca-paper.yaml", "-p", "ledger_file=ledger.duckdb",
            "-p", f"alpaca.url_override={fake.url}", "-p", f"alpaca.data_url_override={fake.url}",
            "-p", "alpaca.retries=0"]
    env = {**os.environ, **KEYS, "TRADEBOOK_ROOT": str(root)}
    proc = subprocess.run([sys.executable, "-m", "tradebook.cli", "run", "reconcile", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=root)
    assert proc.returncode == 2, proc.stderr
    assert "belongs to sim (SimBroker)" in proc.stderr and "Traceback" not in proc.stderr
    assert _snapshot(path) == before


def test_ops8_when_resume_with_paper_params_against_halted_sim_ledger_then_refused_and_still_halted(
        root, fake, sim_ledger):
    """CTL-2 + OPS-8: clearing a halt is a write like any other: another account's params are refused."""
    from tradebook.safety import controls

    controls.halt(sim_ledger.params, root, "operator drill", "tester", "cli")
    args = ["--params", "params/alpaca-paper.yaml", "-p", "ledger_file=ledger.duckdb",
            "-p", f"alpaca.url_override={fake.url}", "-p", f"alpaca.data_url_override={fake.url}",
            "-p", "alpaca.retries=0"]
    env = {**os.environ, **KEYS, "TRADEBOOK_ROOT": str(root)}
    proc = subprocess.run([sys.executable, "-m", "tradebook.cli", "resume", "--reason", "wrong book", "--yes",
                           *args], env=env, capture_output=True, text=True, timeout=120, cwd=root)
    assert proc.returncode == 2, proc.stderr
    assert "belongs to sim (SimBroker)" in proc.stderr and "Traceback" not in proc.stderr
    assert controls.effective_state(sim_ledger.params, root, sim_ledger.ledger).state == "HALTED"
