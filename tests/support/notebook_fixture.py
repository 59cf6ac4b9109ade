"""A small deterministic project state for the notebook regression tests (nbval).

``build(root)`` replays a few SimBroker sessions in-process (no papermill) and leaves
the clock at the next session's execution window with intents planned, so each phase
notebook has something real to show. ``python tests/support/notebook_fixture.py --refresh``
re-executes the notebooks against a fresh fixture and stores their outputs, which
nbval then compares on every test run.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# nbval runs them in this order; each one sees the state the previous one left.
NOTEBOOKS = ["reconcile", "execute", "report", "control_panel", "decide", "research/backtest",
             "research/strategy", "research/sweep", "research/model"]
FIXTURE_DAYS = 3


def notebook_paths() -> list[Path]:
    return [REPO / "notebooks" / f"{name}.ipynb" for name in NOTEBOOKS
            if (REPO / "notebooks" / f"{name}.ipynb").exists()]


def build(root: Path) -> Path:
    """Create params/, runs/ and a replayed ledger + sim state under ``root``."""
    from tradebook.context import Context
    from tradebook.demo import _sessions, direct_phase, replay

    shutil.copytree(REPO / "params", root / "params", dirs_exist_ok=True)
    (root / "notebooks").mkdir(exist_ok=True)
    (root / "runs").mkdir(exist_ok=True)
    ctx = Context.load("params/sim.yaml", {}, root=root)
    replay(ctx, ctx.broker, FIXTURE_DAYS, lambda phase: direct_phase(phase, ctx))
    session = next(_sessions(ctx.broker, 1))
    ctx.broker.advance_to(session.open + timedelta(minutes=ctx.params.exit_window_start_min + 1))
    return root


def refresh() -> None:
    """Execute every notebook in order against a fresh fixture and store the outputs in place."""
    import nbformat
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRADEBOOK_ROOT"] = str(build(Path(tmp)))
        os.environ["TRADEBOOK_PHASE_WRITES"] = "1"   # replayed in order: the phases must write (not dry runs)
        for path in notebook_paths():
            nb = nbformat.read(path, as_version=4)
            NotebookClient(nb, timeout=300, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            nbformat.write(nb, path)
            print(f"refreshed {path.relative_to(REPO)}")


if __name__ == "__main__":
    if "--refresh" in sys.argv:
        refresh()
