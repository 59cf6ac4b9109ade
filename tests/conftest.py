"""Shared fixtures: a throw-away project root with its own runs/ and params (helpers: ``tests/support/``)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from support import REPO
from tradebook.context import Context
from tradebook.ledger.db import Ledger
from tradebook.params import Params, load_params


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project root with params/ and notebooks/ copied in and an empty runs/."""
    shutil.copytree(REPO / "params", tmp_path / "params")
    if (REPO / "notebooks").is_dir():
        shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    (tmp_path / "runs").mkdir()
    return tmp_path


@pytest.fixture
def make_params(root: Path):
    """Params from params/sim.yaml with overrides; runs_dir points at the temp root."""
    def factory(**overrides) -> Params:
        overrides.setdefault("runs_dir", str(root / "runs"))
        return load_params(root / "params" / "sim.yaml", overrides)
    return factory


@pytest.fixture
def cli(root: Path, monkeypatch, capsys):
    """Run `tradebook <args>` in-process; returns (exit code, stdout + stderr with line breaks removed)."""
    from tradebook.cli import main

    monkeypatch.setenv("TRADEBOOK_ROOT", str(root))
    monkeypatch.setenv("TRADEBOOK_LEDGER_LOCK_TIMEOUT_S", "2")

    def run(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["tradebook", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out = capsys.readouterr()
        return code, (out.out + out.err).replace("\n", "")
    return run


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """An empty ledger file of its own (the store tests)."""
    return Ledger(tmp_path / "ledger.duckdb")


@pytest.fixture
def ctx(root: Path, make_params) -> Context:
    return Context(make_params(), root)


@pytest.fixture(autouse=True)
def _logging_left_as_found():
    """A command run in-process (demo, daemon) installs tradebook's log handlers for the process; a later
    test in the same worker must not inherit them (their redaction rewrites every record it sees)."""
    yield
    logs = sys.modules.get("tradebook.logs")
    if logs is not None and logs._state:
        logs.reset_logging()


@pytest.fixture(autouse=True)
def alpaca_contract():
    """VEN-1/VEN-2: every answer the loopback Alpaca fake gives in a test is checked against
    Alpaca's published contract (tests/support/alpaca_contract.py); a violation fails the test.
    Tests that break it on purpose call ``alpaca_contract.take()``."""
    from support.alpaca_contract import ContractLog

    from tradebook.testing.alpaca_fake.server import FakeAlpacaServer

    log = ContractLog()
    FakeAlpacaServer.observers.append(log)
    try:
        yield log
    finally:
        FakeAlpacaServer.observers.remove(log)
    if log.violations:
        shown = "\n  ".join(log.violations[:20])
        pytest.fail(f"the Alpaca fake broke Alpaca's contract {len(log.violations)} time(s):\n  {shown}",
                    pytrace=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project root shared by one test module's notebook runs (params copied, empty runs/)."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(REPO / "params", root / "params")
    (root / "runs").mkdir()
    return root


@pytest.fixture(scope="module")
def pool(project: Path):
    """A forking kernel pool on ``project``, warm for the whole module."""
    from tradebook.engine.kernelpool import KernelPool

    with KernelPool(project, fork=True) as warm:
        yield warm
