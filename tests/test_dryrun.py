"""A phase notebook opened outside the runner is a dry run (issue 16 item 3): it shows what the phase
would do, gate verdicts included, and sends and writes nothing (no order leaves without an executed
notebook under runs/)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from support import notebook_fixture
from tradebook.context import Context
from support.trading import stored_intents

pytestmark = [pytest.mark.integration]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def _state(root: Path) -> tuple:
    ctx = Context.load("params/sim.yaml", {}, root=root)
    return _digest(ctx.params.ledger_path(root)), _digest(ctx.params.sim_state_path(root))


def test_execute_notebook_when_opened_by_hand_then_dry_run_sends_and_writes_nothing(tmp_path, monkeypatch):
    """Item 3: execute.ipynb run without a run_id (as in JupyterLab) shows DRY_RUN rejections for the
    planned intents; the project's ledger and the simulator's state are byte for byte unchanged."""
    root = notebook_fixture.build(tmp_path)
    (root / "notebooks").mkdir(exist_ok=True)
    from tradebook.demo import direct_phase

    direct_phase("reconcile", Context.load("params/sim.yaml", {}, root=root))  # today's reconcile, for real
    before = _state(root)
    planned = [i for i in stored_intents(Context.load("params/sim.yaml", {}, root=root).ledger) if i.state == "PLANNED"]
    assert planned, "the fixture must leave intents to send"
    monkeypatch.setenv("TRADEBOOK_ROOT", str(root))
    monkeypatch.delenv("TRADEBOOK_PHASE_WRITES", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(notebook_fixture.REPO / "notebooks" / "execute.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(  # read the copy while the kernel still has it
        "from tradebook.ledger import events\n"
        "print('copy events:', len([e for e in ctx.ledger.read(events.find) if 'dry run: the execute' in (e.reason or '')]))"))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(root / "notebooks")}}).execute()
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     + str(o.get("data", {}).get("text/html", "")) for c in nb.cells for o in c.get("outputs", []))
    assert "DRY RUN: execute opened outside the runner" in text
    assert re.search(r"(REJECTED|FAILED) [1-9]", text)   # the broker refused: nothing sent
    copy = Path(re.search(r"copy of the ledger \((\S+?),? ", text).group(1))
    assert re.search(r"copy events: [1-9]", text), "the copy records why nothing was sent"
    assert not copy.exists(), "the kernel removes its copy when it stops"
    assert _state(root) == before
    assert not list((root / "runs").glob("20*"))   # no executed notebook, no run recorded


def test_dry_run_when_runner_or_nbval_then_phases_write(monkeypatch):
    from tradebook.dryrun import is_dry_run

    monkeypatch.delenv("TRADEBOOK_PHASE_WRITES", raising=False)
    assert is_dry_run("execute", None) and is_dry_run("decide", None)
    assert not is_dry_run("execute", "2011-07-27-093500-execute-ab12cd34")
    assert not is_dry_run("backtest", None)
    monkeypatch.setenv("TRADEBOOK_PHASE_WRITES", "1")
    assert not is_dry_run("execute", None)
