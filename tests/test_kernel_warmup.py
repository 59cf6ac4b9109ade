"""§7 speed: per-kernel warm-up runs in each forked kernel before its notebook, never in the fork server."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest

from support import REPO
from tradebook.engine.kernelfork import FORK_SUPPORTED
from tradebook.engine.runner import run_phase

PROBE = """
import json, os
from tradebook.ledger import attach
from tradebook.broker.sim import store
print(json.dumps({"ledger_instance_ready": attach._instance is not None and attach._instance_pid == os.getpid(),
                  "sim_instance_ready": store._memory is not None and store._memory_pid == os.getpid(),
                  "inherited": len(attach._inherited) + len(store._inherited)}))
"""


def _probe_notebook(tmp_path: Path) -> Path:
    nb = nbformat.read(REPO / "tests" / "notebooks" / "import_only.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    return path


def _printed(notebook: Path) -> dict:
    for cell in json.loads(notebook.read_text())["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and "ledger_instance_ready" in "".join(out["text"]):
                return json.loads("".join(out["text"]))
    raise AssertionError("the probe printed nothing")


@pytest.mark.skipif(not FORK_SUPPORTED, reason="fork server is Linux-only")
def test_forked_kernel_when_notebook_starts_then_duckdb_instances_ready_and_none_inherited(project, pool, tmp_path):
    """§7: the in-memory DuckDB instances (ledger, simulated venue) are made in the spare kernel ahead of
    its notebook, by the kernel itself: the fork server never made one (none was inherited across fork)."""
    now = datetime(2011, 7, 6, 13, 35, tzinfo=timezone.utc)
    record = run_phase("reconcile", root=project, pool=pool, notebook=_probe_notebook(tmp_path), now=now)
    assert record.ok, record.error
    assert _printed(record.notebook_path) == {"ledger_instance_ready": True, "sim_instance_ready": True,
                                              "inherited": 0}
