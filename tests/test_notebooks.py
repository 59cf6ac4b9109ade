"""nbval over every notebook in notebooks/, against the deterministic fixture state.

Each notebook stores the outputs of a run against ``tests/support/notebook_fixture.py``;
nbval re-executes it and fails when a checked output changes. Refresh the stored
outputs deliberately with ``python tests/support/notebook_fixture.py --refresh``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import notebook_fixture

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("notebooks")]


def test_every_notebook_is_covered_by_the_nbval_run():
    """A new notebook must be added to the fixture's run order, or it would go unchecked."""
    found = {p.relative_to(notebook_fixture.REPO / "notebooks").with_suffix("").as_posix()
             for p in (notebook_fixture.REPO / "notebooks").rglob("*.ipynb")
             if ".ipynb_checkpoints" not in p.parts}
    assert found <= set(notebook_fixture.NOTEBOOKS), f"not in the nbval order: {found - set(notebook_fixture.NOTEBOOKS)}"


def test_notebooks_when_rerun_against_fixture_then_checked_outputs_match(tmp_path: Path):
    """Foundation item 9: nbval checks every phase notebook; a regression breaks a checked cell."""
    root = notebook_fixture.build(tmp_path)
    # The phases replay in order on a throw-away fixture: let them write (opened by hand they are dry runs).
    env = {**os.environ, "TRADEBOOK_ROOT": str(root), "MPLBACKEND": "Agg", "TRADEBOOK_PHASE_WRITES": "1"}
    paths = [str(p) for p in notebook_fixture.notebook_paths()]
    assert len(paths) >= 4
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "-o", "addopts=", "-q", *paths],
                          cwd=notebook_fixture.REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_research_backtest_notebook_when_user_strategy_then_every_cell_runs(tmp_path: Path):
    """RES-1 / STR-1, the README's path: papermill on notebooks/research/backtest.ipynb with
    `strategy.use` set to the shipped example strategies/breakout.py runs to the end, the signals
    cell included (old code: ValueError "this result has no indicator table")."""
    import shutil

    import nbformat

    for folder in ("params", "notebooks", "strategies"):
        shutil.copytree(notebook_fixture.REPO / folder, tmp_path / folder)
    (tmp_path / "runs").mkdir()
    out = tmp_path / "out.ipynb"
    env = {**os.environ, "TRADEBOOK_ROOT": str(tmp_path), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "papermill", "notebooks/research/backtest.ipynb", str(out),
                           "-y", '{"overrides": {"strategy.use": "strategies.breakout:Breakout"}}',
                           "--cwd", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cells = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    signals = next(c for c in cells if 'show("signals"' in c.source)
    assert any("image/png" in o.get("data", {}) for o in signals.outputs), signals.outputs
    assert "Breakout" in str(nbformat.read(out, as_version=4).metadata["papermill"]["parameters"])
