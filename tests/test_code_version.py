"""What ran: every runs row records the code version, the kernel pid and stopped-early (SPEC §3, OPS-1).

Real papermill runs of the tiny notebooks in tests/notebooks/, as in test_runner.
"""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tradebook.engine import code_version as cv
from tradebook.engine import kernelpool
from tradebook.engine.kernelpool import KernelPool
from tradebook.engine.runner import run_phase
from tradebook.ledger import runs
from tradebook.ledger.db import Ledger

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
SIM_NOW = datetime(2011, 7, 6, 13, 35, 7, tzinfo=timezone.utc)


def _run(project: Path, pool, name: str):
    return run_phase("reconcile", root=project, pool=pool, notebook=NOTEBOOKS / f"{name}.ipynb", now=SIM_NOW,
                     raise_on_failure=False)


def _row(project: Path, run_id: str) -> tuple:
    with Ledger(project / "runs" / "ledger.duckdb", create=False).connect(read_only=True) as con:
        row = runs.get(con, run_id)
    return row["code_version"], row["kernel_pid"], row["stopped_early"]


def test_code_version_when_sources_outside_git_edited_then_hash_changes(tmp_path):
    """Outside git the version is a hash of the library sources: any edit changes it."""
    copy = tmp_path / "tradebook"
    shutil.copytree(cv.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = cv.code_version(copy)
    (copy / "errors.py").write_text((copy / "errors.py").read_text() + "\n# edited\n")
    after = cv.code_version(copy)
    assert before.startswith("src:") and after.startswith("src:") and before != after


def test_runs_row_when_run_then_code_version_kernel_pid_and_stopped_early_recorded(project, pool):
    """Every runs row says which code ran, in which kernel process, and whether it halted itself."""
    ok, halted = _run(project, pool, "ok"), _run(project, pool, "sysexit0")
    version, pid, early = _row(project, ok.run_id)
    assert version == cv.code_version() and pid == ok.kernel_pid and pid and early is False
    assert _row(project, halted.run_id)[2] is True and halted.stopped_early


def test_run_when_library_edited_between_runs_then_different_code_version_recorded(project, pool, tmp_path,
                                                                                  monkeypatch):
    """A run after a library edit records a different code version than the run before it."""
    copy = tmp_path / "tradebook"
    shutil.copytree(cv.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cv, "PACKAGE_DIR", copy)
    first = _run(project, pool, "ok")
    (copy / "errors.py").write_text((copy / "errors.py").read_text() + "\n# a later edit\n")
    second = _run(project, pool, "ok")
    assert first.ok and second.ok
    assert _row(project, first.run_id)[0] != _row(project, second.run_id)[0]


def test_pool_when_fork_asked_but_unsupported_then_ordinary_kernels_run_the_notebook(project, monkeypatch):
    """The documented fallback: fork=True where forking is unsupported runs ordinary kernels."""
    monkeypatch.setattr(kernelpool, "FORK_SUPPORTED", False)
    with KernelPool(project, fork=True, size=0, warm_modules=()) as plain:
        assert plain.fork is False
        record = _run(project, plain, "ok")
    assert record.ok and _row(project, record.run_id)[1] == record.kernel_pid
