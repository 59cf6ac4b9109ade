"""runner.py / kernelpool.py: papermill phase runs, their runs rows, warm kernels (SPEC §3, CFG-2, §7).

Real papermill runs of tiny purpose-built notebooks in tests/notebooks/ (one per failure
mode, as papermill's own tests do). The project root and kernel pool are shared per
module (per xdist worker): a pool's fork server costs ~1 s to start, each run ~0.3 s.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tradebook.errors import ConfigError, PhaseFailed, TradebookError
from tradebook.engine.kernelfork import FORK_SUPPORTED
from tradebook.engine.kernelpool import KernelPool
from tradebook.engine.notebook_files import NOTEBOOK_PARAMETERS
from tradebook.params import load_params
from tradebook.engine.runner import PHASES, run_phase, validate_notebook_parameters
from tradebook.ledger import events, runs
from tradebook.ledger.db import Ledger

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
SIM_NOW = datetime(2011, 7, 6, 13, 35, 7, tzinfo=timezone.utc)  # 09:35:07 in New York


@pytest.fixture(autouse=True)
def _ledger_exists(project: Path) -> None:
    """The report phase never creates the ledger (it only reads); whichever test of this module runs
    first, the shared project has one."""
    with Ledger(project / "runs" / "ledger.duckdb").transaction():
        pass


def _run(project: Path, pool: KernelPool, name: str, **kwargs):
    kwargs.setdefault("now", SIM_NOW)
    return run_phase(kwargs.pop("phase", "reconcile"), root=project, pool=pool,
                     notebook=NOTEBOOKS / f"{name}.ipynb", **kwargs)


def _read(project: Path, reader, *args, lock_timeout_s: float = 15, **kwargs):
    """A store reader on a read-only connection to the project's ledger."""
    ledger = Ledger(project / "runs" / "ledger.duckdb", lock_timeout_s=lock_timeout_s, create=False)
    with ledger.connect(read_only=True) as con:
        return reader(con, *args, **kwargs)


def _row(project: Path, run_id: str) -> dict:
    return _read(project, runs.get, run_id) or {}


def _report(notebook: Path) -> dict:
    """The JSON line the ok notebook prints about its kernel."""
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and '"pid"' in "".join(out["text"]):
                return json.loads("".join(out["text"]))
    raise AssertionError(f"no report line in {notebook}")


# --- success ---------------------------------------------------------------------------------
def test_run_phase_when_notebook_succeeds_then_dated_notebook_and_ok_row(project, pool):
    """SPEC §3 / CFG-2: runs/<date>/<HHMMSS>-<phase>.ipynb in exchange time, OK row with the merged params."""
    record = _run(project, pool, "ok", phase="decide", overrides={"max_gross_exposure_pct": 0.5})
    assert record.status == "OK" and record.ok and record.error is None
    assert record.notebook_path.parent == project / "runs" / "2011-07-06"
    assert record.notebook_path.name.startswith("093507-decide")
    assert record.run_id.startswith("2011-07-06-093507-decide-")
    params = load_params(project / "params" / "sim.yaml", {"max_gross_exposure_pct": 0.5})
    assert record.params_hash == params.digest()
    row = _row(project, record.run_id)
    assert row["status"] == "OK" and row["phase"] == "decide" and row["error"] is None
    assert row["params_hash"] == params.digest()
    assert json.loads(row["params_json"])["max_gross_exposure_pct"] == 0.5
    assert row["ended_at"] >= row["started_at"] and row["sim_time"] == SIM_NOW
    assert row["notebook_path"] == str(record.notebook_path)
    seen = _report(record.notebook_path)
    assert seen["run_id"] == record.run_id and seen["overrides"] == {"max_gross_exposure_pct": 0.5}
    assert seen["params_hash"] == params.digest()  # the kernel validated the same params
    assert seen["root"] == str(project) and seen["cwd"] == str(project)


def test_run_phase_when_output_name_taken_then_suffix_added(project, pool):
    """SPEC §3: two runs in the same simulated second never overwrite each other's audit record.
    (decide, not report: a report never creates the ledger, and this test may run first in its module.)"""
    moment = datetime(2011, 7, 7, 20, 15, tzinfo=timezone.utc)
    first = _run(project, pool, "ok", phase="decide", now=moment)
    second = _run(project, pool, "ok", phase="decide", now=moment)
    assert first.notebook_path.name == "161500-decide.ipynb"
    assert second.notebook_path.name == "161500-decide-2.ipynb"
    assert first.run_id != second.run_id


def test_run_phase_when_no_time_given_then_sim_broker_clock_names_the_file(project, pool):
    """SPEC §3: in sim mode the date/time come from the SimBroker's clock, not the wall clock."""
    from tradebook.context import Context

    params = load_params(project / "params" / "sim.yaml")
    sim_now = Context(params, project).now()
    record = run_phase("reconcile", root=project, pool=pool, notebook=NOTEBOOKS / "ok.ipynb")
    local = sim_now.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert record.notebook_path.parent.name == f"{local:%Y-%m-%d}"
    assert record.notebook_path.name.startswith(f"{local:%H%M%S}-reconcile")
    assert record.sim_time == local


def test_run_phase_when_notebook_reads_ledger_then_it_sees_its_own_running_row(project, pool):
    """OPS-1: the runner commits RUNNING and lets go of the ledger before the kernel opens it."""
    record = _run(project, pool, "phase_like", phase="report")
    nb = json.loads(record.notebook_path.read_text())
    shown = json.dumps([cell.get("outputs", []) for cell in nb["cells"]])
    assert record.run_id in shown and "RUNNING" in shown
    assert _row(project, record.run_id)["status"] == "OK"


# --- failures --------------------------------------------------------------------------------
def test_run_phase_when_cell_raises_then_failed_row_kept_notebook_and_phase_failed(project, pool):
    """SPEC §3: a failed run is recorded (status, error name+message), its notebook kept, not retried."""
    with pytest.raises(PhaseFailed) as caught:
        _run(project, pool, "broken", phase="execute")
    failure = caught.value
    assert failure.error == "ValueError: deliberate failure for the runner test"
    assert failure.notebook_path.exists()
    row = _row(project, failure.run_id)
    assert row["status"] == "FAILED" and row["error"] == failure.error
    assert "Traceback" not in row["error"]
    nb = json.loads(failure.notebook_path.read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["ValueError"]
    never = [c for c in nb["cells"] if "never runs" in "".join(c["source"])]
    assert never[0]["execution_count"] is None
    assert [e.kind for e in _read(project, events.find, run_id=failure.run_id)] == ["RUN_FAILED"]


def test_run_phase_when_notebook_exits_zero_then_ok_and_stopped_early(project, pool):
    """sys.exit(0) is a clean halt (STYLE 6), distinct from a crash; exit(1) is a failure."""
    clean = _run(project, pool, "sysexit0")
    assert clean.status == "OK" and clean.stopped_early
    with pytest.raises(PhaseFailed) as caught:
        _run(project, pool, "sysexit1")
    assert caught.value.error == "SystemExit: 1"
    assert _row(project, caught.value.run_id)["status"] == "FAILED"


def test_run_phase_when_cell_exceeds_timeout_then_failed_and_kernel_killed(project, pool):
    """EXE-3: a hung cell ends the run (per-cell timeout); the kernel is killed, not reused."""
    with pytest.raises(PhaseFailed) as caught:
        _run(project, pool, "slow", phase="execute", timeout_s=1)
    assert caught.value.error.startswith("CellTimeoutError")
    assert caught.value.notebook_path.stat().st_size > 0
    assert _row(project, caught.value.run_id)["status"] == "FAILED"


def test_run_phase_when_params_invalid_then_config_error_and_nothing_run(project, pool):
    """CFG-1: bad input is a clear error before anything is recorded or executed."""
    before = sorted(p.name for p in (project / "runs").rglob("*.ipynb"))
    with pytest.raises(ConfigError, match="max_position_pct"):
        _run(project, pool, "ok", overrides={"max_position_pct": "lots"})
    with pytest.raises(ConfigError, match="unknown key"):
        _run(project, pool, "ok", overrides={"max_postion_pct": 0.01})
    with pytest.raises(ConfigError, match="does not exist"):
        _run(project, pool, "ok", params_file="params/nope.yaml")
    assert sorted(p.name for p in (project / "runs").rglob("*.ipynb")) == before


def test_run_phase_when_phase_unknown_then_config_error(project, pool):
    """CFG-1: a phase without a notebook, or a name that is a path, is refused before anything runs."""
    with pytest.raises(ConfigError, match="no notebook"):
        run_phase("rebalance", root=project, pool=pool, now=SIM_NOW)
    with pytest.raises(ConfigError, match="not a phase name"):
        run_phase("../secrets", root=project, pool=pool, now=SIM_NOW)


# --- kernels ---------------------------------------------------------------------------------
def _assert_fresh_clean_kernels(records) -> None:
    reports = [_report(r.notebook_path) for r in records]
    pids = [rep["pid"] for rep in reports]
    assert len(set(pids)) == len(records)
    # forked kernels must not share the fork server's random state
    assert len({rep["random"] for rep in reports}) == len({rep["numpy_random"] for rep in reports}) == len(records)
    assert pids == [r.kernel_pid for r in records]
    for rep in reports:
        assert rep["names_before"] == sorted(["In", "Out", "exit", "get_ipython", "open", "quit", *NOTEBOOK_PARAMETERS])
        assert rep["papermill_loaded"] is False and rep["nbformat_loaded"] is False
    nb = json.loads(records[0].notebook_path.read_text())
    assert [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code"] == [1, 2, 3]


def test_pool_when_notebooks_run_then_each_gets_a_fresh_clean_kernel(project, pool):
    """SPEC §7: every notebook gets its own kernel (new pid), an empty namespace and no papermill import."""
    _assert_fresh_clean_kernels([_run(project, pool, "ok") for _ in range(3)])


def test_pool_when_fork_unavailable_then_spawned_warm_kernels_are_fresh_and_clean(project):
    """SPEC §7, portable path (no fork server): warm-up imports run in a throw-away namespace."""
    with KernelPool(project, fork=False, warm_modules=("json", "tradebook.params")) as own:
        _assert_fresh_clean_kernels([_run(project, own, "ok") for _ in range(2)])


def test_run_phase_when_no_pool_then_one_cold_kernel_runs_it(project):
    """SPEC §3: without a pool (`tradebook run`) the runner starts and stops one kernel for this run."""
    record = _run(project, None, "ok")
    assert record.status == "OK" and _report(record.notebook_path)["pid"] == record.kernel_pid


@pytest.mark.skipif(not FORK_SUPPORTED, reason="fork server is Linux-only")
def test_pool_when_watched_source_changes_then_warm_kernels_are_replaced(project, tmp_path):
    """SPEC §7: warm kernels hold imported code; an edited library must not run stale next time."""
    watched = tmp_path / "pkg"
    watched.mkdir()
    (watched / "mod.py").write_text("X = 1\n")
    with KernelPool(project, fork=True, watch=[watched], warm_modules=()) as own:
        own.retire(own.take())
        zygote_before = own._zygote.proc.pid
        started = own.kernels_started
        (watched / "mod.py").write_text("X = 22\n")
        own.retire(own.take())
        assert own._zygote.proc.pid != zygote_before
        assert own.kernels_started == started + 2  # the stale spare was discarded, not handed out


@pytest.mark.skipif(not FORK_SUPPORTED, reason="fork server is Linux-only")
def test_pool_when_fork_server_dies_then_runs_continue_on_a_new_one_then_on_spawned_kernels(project):
    """OPS-4/§7: a killed fork server (OOM killer, operator) costs no run: restart once, then spawn."""
    import os
    import signal

    with KernelPool(project, fork=True, warm_modules=()) as own:
        assert _run(project, own, "ok").ok
        first = own._zygote.proc.pid
        os.kill(first, signal.SIGKILL)
        assert _run(project, own, "ok").ok and own.fork
        second = own._zygote.proc.pid
        assert second != first
        os.kill(second, signal.SIGKILL)
        record = _run(project, own, "ok")
        assert record.ok and not own.fork and own._zygote is None
        assert _report(record.notebook_path)["pid"] == record.kernel_pid


def test_pool_when_plot_drawn_then_inline_png_as_in_a_cold_kernel(project, pool):
    """SPEC §7: the fork server imports matplotlib early; report figures must still display inline."""
    record = _run(project, pool, "plot", phase="report")
    nb = json.loads(record.notebook_path.read_text())
    outputs = nb["cells"][-1]["outputs"]
    assert any("image/png" in o.get("data", {}) for o in outputs)


# --- the notebook parameters contract --------------------------------------------------------
def _with_parameters(tmp_path: Path, source: str, name: str = "nb.ipynb") -> Path:
    nb = json.loads((NOTEBOOKS / "ok.ipynb").read_text())
    nb["cells"][1]["source"] = source
    path = tmp_path / name
    path.write_text(json.dumps(nb))
    return path


def _contract_notebooks() -> list[Path]:
    """Phase notebooks that exist, plus any other notebook with a parameters cell."""
    found = []
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text()).get("cells", [])
        tagged = any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells)
        if path.stem in PHASES or tagged:
            found.append(path)
    return found


@pytest.mark.parametrize("path", _contract_notebooks(), ids=lambda p: p.name)
def test_cfg2_notebook_parameters_when_checked_then_exactly_the_runner_parameters(path):
    """CFG-2 contract: each notebook's parameters cell defines exactly params_file, overrides, run_id."""
    assert validate_notebook_parameters(path) == []


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_cfg2_test_notebooks_when_checked_then_meet_the_contract(path):
    """CFG-2: the purpose-built test notebooks follow the same contract as the phase notebooks."""
    assert validate_notebook_parameters(path) == []


def test_validate_notebook_parameters_when_extra_or_missing_then_each_named(tmp_path):
    """CFG-2: papermill only warns on unknown parameters; the contract check names each problem."""
    path = _with_parameters(tmp_path, 'params_file = None\noverrides = []\nsymbol = "AAPL"\n')
    problems = validate_notebook_parameters(path)
    assert any("does not define 'run_id'" in p for p in problems)
    assert any("defines 'symbol'" in p for p in problems)
    assert any("'overrides' default must be a dict" in p for p in problems)


def test_validate_notebook_parameters_when_no_tag_or_papermill_import_then_reported(tmp_path):
    """CFG-2: no parameters cell, no kernelspec, or a kernel-side papermill import: each reported."""
    nb = json.loads((NOTEBOOKS / "ok.ipynb").read_text())
    nb["cells"][1]["metadata"]["tags"] = []
    nb["cells"].append({"cell_type": "code", "id": "x", "metadata": {}, "execution_count": None,
                        "outputs": [], "source": "import papermill as pm"})
    del nb["metadata"]["kernelspec"]
    path = tmp_path / "untagged.ipynb"
    path.write_text(json.dumps(nb))
    problems = validate_notebook_parameters(path)
    assert any("exactly one code cell tagged 'parameters'" in p for p in problems)
    assert any("imports papermill" in p for p in problems)
    assert any("kernelspec" in p for p in problems)


def test_run_phase_when_kernel_cannot_start_then_failed_row_and_notebook_says_so(project, pool, tmp_path):
    """SPEC §3: a run that never reached its first cell still leaves a readable notebook and a FAILED row."""
    nb = json.loads((NOTEBOOKS / "ok.ipynb").read_text())
    nb["metadata"]["kernelspec"]["name"] = "no-such-kernel"
    source = tmp_path / "nokernel.ipynb"
    source.write_text(json.dumps(nb))
    record = run_phase("reconcile", root=project, pool=pool, notebook=source, now=SIM_NOW, raise_on_failure=False)
    assert record.status == "FAILED" and record.error.startswith("NoSuchKernel")
    kept = json.loads(record.notebook_path.read_text())
    assert "failed before its first cell executed" in "".join(kept["cells"][0]["source"])
    assert _row(project, record.run_id)["status"] == "FAILED"


def test_progress_saves_when_cells_finish_quickly_then_throttled_but_start_and_end_written(tmp_path):
    """SPEC §7: the executed notebook is written when the run starts and when it ends (also on errors);
    in between at most every SAVE_EVERY_S, not twice per cell (a 20-cell notebook was 40 writes)."""
    from papermill.execute import prepare_notebook_metadata
    from papermill.iorw import load_notebook_node

    from tradebook.engine.pmengine import ThrottledSaves

    out = tmp_path / "out.ipynb"
    source = NOTEBOOKS / "phase_like.ipynb"
    nb = prepare_notebook_metadata(load_notebook_node(str(source)), str(source), str(out))
    manager = ThrottledSaves(nb, output_path=str(out), progress_bar=False, save_every_s=3600)
    manager.notebook_start()
    started = out.read_text()
    assert json.loads(started)["metadata"]["papermill"]["end_time"] is None
    for index, cell in enumerate(manager.nb.cells):
        manager.cell_start(cell, index)
        manager.cell_complete(cell, index)
    assert out.read_text() == started  # all within save_every_s of the first save
    manager.notebook_complete()
    final = json.loads(out.read_text())
    assert final["metadata"]["papermill"]["end_time"] is not None
    assert {c["metadata"]["papermill"]["status"] for c in final["cells"]} == {"completed"}


def test_run_phase_when_previous_runner_was_killed_then_its_row_is_abandoned_at_next_start(project, pool):
    """Issue 13 item 5: a run whose process died (kill -9 mid-notebook) is ABANDONED at the next start,
    with a RUN_ABANDONED event, and `status` never shows it RUNNING, even before that start."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (f"from datetime import datetime, timezone; from tradebook.engine.runner import run_phase; "
            f"run_phase('execute', root={str(project)!r}, notebook={str(NOTEBOOKS / 'slow.ipynb')!r}, "
            f"now=datetime(2011, 7, 6, 13, 40, tzinfo=timezone.utc), timeout_s=300)")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO / "lib")},
                            start_new_session=True)
    deadline = time.monotonic() + 120
    running = []
    while not running and time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            latest = _read(project, runs.latest, 20, lock_timeout_s=0)
        except TradebookError:  # held by the run for a moment: look again
            continue
        running = [r.run_id for r in latest if r.status == "RUNNING" and r.phase == "execute"]
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, as a crash or an OOM kill would
    proc.wait()
    assert running, "the killed run never recorded its RUNNING row"
    dead_id, = running
    status = subprocess.run([sys.executable, "-m", "tradebook.cli", "status"], cwd=project, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "TRADEBOOK_ROOT": str(project),
                                                        "PYTHONPATH": str(REPO / "lib"), "COLUMNS": "250"})
    assert "ABANDONED" in status.stdout, status.stdout + status.stderr
    _run(project, pool, "ok")
    row = _row(project, dead_id)
    assert row["status"] == "ABANDONED" and row["ended_at"] is not None and "ended while" in row["error"]
    assert _read(project, events.count, "RUN_ABANDONED", run_id=dead_id) == 1


def test_kernel_log_when_zmq_socket_closed_at_shutdown_then_dropped_and_other_errors_kept():
    """OPS-5 (a readable demo): ipykernel's shutdown race (ENOTSOCK on a closed zmq socket, logged by
    pyzmq's ZMQStream on tornado.general) printed two tracebacks into `tradebook demo`; a forked
    kernel now drops exactly that record and still logs every other error."""
    import errno
    import logging

    import zmq

    from tradebook.engine.kernelfork import quiet_shutdown_race

    logger = logging.getLogger("tornado.general")
    seen: list[tuple[str, int | None]] = []   # taken when emitted: handlers further up may rewrite a record
    handler = logging.Handler()
    handler.emit = lambda r: seen.append((type(r.exc_info[1]).__name__, getattr(r.exc_info[1], "errno", None)))
    filters_before = list(logger.filters)
    logger.addHandler(handler)
    try:
        quiet_shutdown_race()
        for exc in (zmq.error.ZMQError(errno.ENOTSOCK), zmq.error.ZMQError(errno.EAGAIN), RuntimeError("real")):
            try:
                raise exc
            except Exception:
                logger.error("Uncaught exception in ZMQStream callback", exc_info=True)
    finally:
        logger.removeHandler(handler)
        logger.filters[:] = filters_before
    assert seen == [("ZMQError", errno.EAGAIN), ("RuntimeError", None)]
