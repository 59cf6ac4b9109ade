"""Run one phase notebook with papermill and record the run (SPEC §3, CFG-2, §7 speed).

``run_phase("execute")`` validates the params (nothing runs on bad input), records a
RUNNING row in the ledger's ``runs`` table, executes ``notebooks/execute.ipynb`` with
papermill into ``runs/<YYYY-MM-DD>/<HHMMSS>-execute.ipynb`` (date and time from the broker
clock, in exchange time), then marks the row OK or FAILED. A failed notebook is kept as
papermill wrote it and raises :class:`PhaseFailed`; it is never retried here.

This is the one entry point that runs a notebook (the CLI, the demo, the daemon, the
benchmarks and the tests all call it). Every ``runs`` row records the code version
(tradebook.engine.code_version), the kernel's pid and whether the notebook stopped early.

Speed: papermill runs in this process (``import papermill`` costs ~2 s here, paid once
per process, never by the kernels). Forking is a choice of the caller, never implied:
without ``pool`` the notebook gets an ordinary fresh kernel (``tradebook run``); callers
that run many notebooks (demo, daemon, tests, benchmarks) pass a
:class:`~tradebook.engine.kernelpool.KernelPool` made with ``fork=True``, which supplies a kernel
forked from a warm fork server while the previous notebook ran, and falls back to
ordinary kernels where forking is unsupported (not Linux) or the fork server fails
twice (logged). Every notebook still gets its own fresh kernel. Executing the notebook
is ``notebook_exec``; here: the inputs, the ``runs`` row, the record.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebook.engine.code_version import code_version
from tradebook.ledger import events, runs
from tradebook.errors import ConfigError, PhaseFailed
from tradebook.engine.kernelpool import KernelPool
from tradebook.engine.notebook_exec import NotebookOutcome, describe_error, run_notebook
from tradebook.engine.notebook_files import reserve_output, validate_notebook_parameters

if TYPE_CHECKING:
    from tradebook.ledger.db import Ledger
    from tradebook.params import Params

__all__ = ["KernelPool", "PhaseFailed", "RunRecord", "run_phase", "validate_notebook_parameters"]

PHASES = ("reconcile", "decide", "execute", "report")
DEFAULT_CELL_TIMEOUT_S = 600.0   # non-execute phases: generous, but a hung cell still ends
EXCHANGE_TZ = "America/New_York"
_PHASE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class RunRecord:
    """What one phase run did; the same facts as its ``runs`` row."""

    run_id: str
    phase: str
    status: str                  # OK | FAILED
    notebook_path: Path
    params_hash: str
    started_at: datetime
    ended_at: datetime
    sim_time: datetime | None    # the simulated clock in sim mode, else None
    error: str | None = None     # "ExceptionName: message" of the failing cell
    kernel_pid: int | None = None
    stopped_early: bool = False  # the notebook ended itself with sys.exit(0): a clean halt

    @property
    def ok(self) -> bool:
        return self.status == "OK"


def run_phase(phase: str, *, params_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
              root: str | Path | None = None, pool: KernelPool | None = None, notebook: str | Path | None = None,
              now: datetime | None = None, timeout_s: float | None = None,
              raise_on_failure: bool = True) -> RunRecord:
    """Run ``notebooks/<phase>.ipynb`` (or ``notebook``) once; raise PhaseFailed if it fails.

    ``notebook`` replaces the phase's notebook (tests); ``now`` the broker clock;
    ``timeout_s`` the per-cell timeout. With ``raise_on_failure=False`` a failed run is
    returned as a FAILED record instead of raised (it is recorded the same way).
    """
    from tradebook.context import project_root
    from tradebook.params import DEFAULT_PARAMS_FILE, load_params

    base = Path(root).resolve() if root else project_root()
    source = _notebook_path(phase, base, notebook)
    params_path = Path(params_file or DEFAULT_PARAMS_FILE)
    params_path = (params_path if params_path.is_absolute() else base / params_path).resolve()
    clean = _plain_overrides(overrides)
    params = load_params(params_path, clean)  # ConfigError: nothing is recorded or run
    _check_broker_settings(params, phase)     # live opt-in, keys: refused before any ledger, row or notebook
    at = _exchange_time(now if now is not None else _broker_now(params, base))
    run_id = f"{at:%Y-%m-%d-%H%M%S}-{phase}-{uuid.uuid4().hex[:8]}"
    ledger = _ledger(params, base, phase)   # OPS-8 refusal comes before any file or row
    output = reserve_output(params.runs_path(base) / f"{at:%Y-%m-%d}", f"{at:%H%M%S}-{phase}")
    sim_time = at if params.mode == "sim" else None
    started = _utcnow()
    try:
        _record_start(ledger, run_id, phase, params, started, output, sim_time, code_version())
    except BaseException:  # ledger locked/corrupt: nothing ran, leave no empty notebook behind
        output.unlink(missing_ok=True)
        raise
    parameters = {"params_file": str(params_path), "overrides": clean, "run_id": run_id}
    timeout = timeout_s or (params.execution_timeout_s if phase == "execute" else DEFAULT_CELL_TIMEOUT_S)
    try:
        outcome = run_notebook(source, output, parameters, base, pool, timeout)
    except BaseException as exc:  # Ctrl-C or a runner bug: the row must not stay RUNNING
        _record_end(ledger, run_id, phase, "FAILED", describe_error(exc), output, sim_time=sim_time)
        raise
    status = "FAILED" if outcome.error else "OK"
    ended = _record_end(ledger, run_id, phase, status, outcome.error, output, outcome, sim_time=sim_time)
    record = RunRecord(run_id, phase, status, output, params.digest(), started, ended, sim_time,
                       outcome.error, outcome.kernel_pid, outcome.stopped_early)
    if outcome.error and raise_on_failure:
        raise PhaseFailed(f"phase {phase} failed: {outcome.error} (run {run_id}; executed notebook kept at "
                          f"{output})", notebook_path=output, run_id=run_id, phase=phase, error=outcome.error)
    return record


# --- inputs ----------------------------------------------------------------------------------
def _notebook_path(phase: str, root: Path, notebook: str | Path | None) -> Path:
    if not _PHASE_NAME.match(phase or ""):
        raise ConfigError(f"phase {phase!r} is not a phase name (lower-case letters, digits, _)")
    path = Path(notebook) if notebook else root / "notebooks" / f"{phase}.ipynb"
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise ConfigError(f"no notebook for phase {phase!r}: {path} does not exist")
    return path.resolve()


def _plain_overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Overrides as JSON data: what papermill injects is exactly what was validated."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise ConfigError("overrides must be a mapping of dotted key -> value")
    return json.loads(json.dumps(overrides, default=str))


def _check_broker_settings(params: "Params", phase: str) -> None:
    """A broker that cannot start must stop the run here, not inside the notebook after the
    ledger, a FAILED row and a REDUCE_ONLY trip were written (REC-8 is for real outages)."""
    from tradebook.broker import check_can_start

    try:
        check_can_start(params)
    except ConfigError as exc:
        raise type(exc)(f"{exc} (mode {params.mode}; phase {phase} not run, nothing written)") from None


def _broker_now(params: "Params", root: Path) -> datetime:
    """Simulated time from the SimBroker in sim mode; the wall clock for Alpaca."""
    if params.mode != "sim":
        return _utcnow()
    from tradebook.context import Context

    return Context(params, root).now()


def _exchange_time(moment: datetime) -> datetime:
    from zoneinfo import ZoneInfo

    if moment.tzinfo is None:
        raise ValueError("run_phase needs a timezone-aware time (got a naive datetime)")
    return moment.astimezone(ZoneInfo(EXCHANGE_TZ))


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- the runs row (own short transactions; the notebook opens the ledger itself) ----------
def _ledger(params: "Params", root: Path, phase: str) -> "Ledger":
    """The run's ledger, checked to belong to this broker identity before any row (OPS-8).

    A read-only phase (report) never starts a ledger, and its identity read never counts
    toward the API breaker (EXE-4)."""
    from tradebook.context import READ_ONLY_PHASES, Context

    return Context(params, root, read_only=phase in READ_ONLY_PHASES).ledger


def _record_start(ledger: "Ledger", run_id: str, phase: str, params: "Params", started: datetime,
                  output: Path, sim_time: datetime | None, version: str) -> None:
    from tradebook.engine import run_liveness

    with ledger.transaction() as con:
        run_liveness.mark_abandoned(con, started)  # runs whose process died never stay RUNNING
        runs.start(con, run_id, phase, params_hash=params.digest(),
                   params_json=json.dumps(params.as_dict(), sort_keys=True), started_at=started,
                   notebook_path=str(output), sim_time=sim_time, code_version=version)
        run_liveness.record_start(con, run_id, phase, started)


def _record_end(ledger: "Ledger", run_id: str, phase: str, status: str, error: str | None,
                output: Path, outcome: "NotebookOutcome | None" = None, *, sim_time: datetime | None = None) -> datetime:
    from tradebook.engine.run_liveness import record_end

    ended = _utcnow()
    pid, early = (outcome.kernel_pid, outcome.stopped_early) if outcome else (None, None)
    with ledger.transaction() as con:
        runs.finish(con, run_id, status, ended, error, kernel_pid=pid, stopped_early=early)
        record_end(con, run_id)
        if status == "FAILED":  # audit trail for alerting (OPS-5): the run, the error, the notebook
            events.record(con, "RUN_FAILED", run_id=run_id, reason=error,
                          data={"phase": phase, "notebook": str(output)}, ts=sim_time or ended)  # one clock
    return ended
