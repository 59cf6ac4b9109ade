"""CTL-1 end to end: `KILL_SWITCH=1 tradebook run execute` places no order, ledger free or locked."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support import notebook_fixture
from test_cli import tradebook
from tradebook.broker.sim.broker import SimBroker
from tradebook.context import Context
from support.trading import stored_intents, stored_orders

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("killswitch")]


@pytest.fixture(scope="module")
def traded_root(tmp_path_factory) -> Path:
    """A replayed project whose clock sits in an execution window with positions held."""
    root = notebook_fixture.build(tmp_path_factory.mktemp("ks"))
    (root / "notebooks").rmdir()
    import shutil

    shutil.copytree(notebook_fixture.REPO / "notebooks", root / "notebooks")
    return root


def _broker_orders(root: Path) -> int:
    ctx = Context.load(None, {}, root=root)
    sim: SimBroker = ctx.broker
    return len(sim.fills()) + len(sim.open_orders())


def test_ctl1_when_env_kill_switch_then_execute_run_sends_nothing(traded_root: Path):
    """CTL-1/GATE-1: with KILL_SWITCH=1 the execute notebook runs and every intent is refused."""
    ctx = Context.load(None, {}, root=traded_root)
    planned = [i for i in stored_intents(ctx.ledger) if i.state == "PLANNED"]
    assert planned  # the fixture leaves the clock in a window with an entry planned by decide
    before = _broker_orders(traded_root)
    out = tradebook(traded_root, "run", "execute", env={"KILL_SWITCH": "1"})
    assert out.returncode == 0, out.stderr
    assert _broker_orders(traded_root) == before
    assert [i for i in stored_intents(ctx.ledger) if i.gate_reason == "HALTED"]
    assert [o.client_order_id for o in stored_orders(ctx.ledger) if not o.submitted_at < ctx.now()] == []


def test_ctl1_when_env_kill_switch_and_ledger_locked_by_another_process_then_no_order(traded_root: Path):
    """CTL-1 + OPS-1: the ledger held by a real second process; still no order, and a clear error."""
    ledger = traded_root / "runs" / "ledger.duckdb"
    before = _broker_orders(traded_root)
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({str(ledger)!r}); "
                               "print('locked', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        out = tradebook(traded_root, "run", "execute",
                        env={"KILL_SWITCH": "1", "TRADEBOOK_LEDGER_LOCK_TIMEOUT_S": "1"})
        assert out.returncode != 0 and "locked" in out.stderr and "Traceback" not in out.stderr
        status = tradebook(traded_root, "status", env={"KILL_SWITCH": "1", "TRADEBOOK_LEDGER_LOCK_TIMEOUT_S": "1"})
        assert "HALTED" in status.stdout
    finally:
        holder.kill()
        holder.wait()
    assert _broker_orders(traded_root) == before
