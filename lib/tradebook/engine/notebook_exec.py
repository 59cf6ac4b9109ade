"""Executing one notebook: papermill in this process, on a kernel from a pool or a fresh one (SPEC §3, §7).

What comes back is a ``NotebookOutcome``: the error of the failing cell (``Name: message``,
bounded), the kernel's pid, and whether the notebook ended itself early (``sys.exit(0)``).
A failed notebook is kept as papermill wrote it (or, when no cell ran, as the source with
a note on top). A hung or interrupted kernel is killed, never reused. Recording the run
is ``runner``'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradebook.engine.kernelclient import connect_client
from tradebook.engine.kernelpool import KernelPool
from tradebook.engine.notebook_files import notebook_kernel_name


@dataclass(frozen=True)
class NotebookOutcome:
    """How one notebook ended: its error (None: it ran through), the kernel's pid, a clean early stop."""

    error: str | None
    kernel_pid: int | None
    stopped_early: bool


def run_notebook(source: Path, output: Path, parameters: dict[str, Any], root: Path,
                 pool: KernelPool | None, timeout: float) -> NotebookOutcome:
    """papermill in this process, on a pre-started kernel from ``pool`` (or a fresh one)."""
    kernel_name = notebook_kernel_name(source)
    own_pool = pool is None or pool.kernel_name != kernel_name
    if own_pool:  # one kernel just for this run, same code path; no spares kept
        pool = KernelPool(root, size=0, fork=False, kernel_name=kernel_name).start()
    km = kc = None
    hung = False
    try:
        # Overlap papermill's import (~2 s, once per process) with kernel start-up: a cold
        # kernel is launched first; a pool's fork server boots while we import.
        if own_pool:
            km = pool.take(root)
        else:
            pool.prepare(root)
        _register_engine()
        km = km or pool.take(root)
        kc = connect_client(km, context=pool.context)
        nb = _papermill(source, output, parameters, km, kc, timeout, kernel_name)
        return NotebookOutcome(None, _pid(km), _stopped_early(nb))
    except Exception as exc:
        hung = _is_timeout(exc)
        _keep_failed_notebook(output, source, exc)
        return NotebookOutcome(describe_error(exc), _pid(km), False)
    except BaseException:  # Ctrl-C mid-cell: the kernel may be busy; do not wait for it
        hung = True
        raise
    finally:
        if kc is not None:
            kc.stop_channels()
        if km is not None:
            pool.retire(km, kill=hung)
        if own_pool:
            pool.close()


def _papermill(source: Path, output: Path, parameters: dict[str, Any], km: Any, kc: Any,
               timeout: float, kernel_name: str) -> Any:
    import papermill

    engine = _register_engine()
    # No cwd= here: papermill would chdir this whole process; the kernel already runs in root.
    return papermill.execute_notebook(
        str(source), str(output), parameters=parameters, engine_name=engine, kernel_name=kernel_name,
        progress_bar=False, log_output=False, execution_timeout=timeout, km=km, kc=kc)


def _register_engine() -> str:
    """Import papermill (~2 s, once per process) and register our engine; returns its name."""
    from tradebook.engine.pmengine import ENGINE_NAME

    return ENGINE_NAME


def _pid(km: Any) -> int | None:
    provisioner = getattr(km, "provisioner", None)
    return getattr(provisioner, "pid", None)


def _stopped_early(nb: Any) -> bool:
    """sys.exit(0) in a cell: papermill stops without an error; we note the clean halt."""
    return any(out.get("output_type") == "error" and out.get("ename") == "SystemExit"
               for cell in nb.cells for out in cell.get("outputs", ()))


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or type(exc).__name__ in ("CellTimeoutError", "DeadKernelError")


def describe_error(exc: BaseException) -> str:
    """The notebook's exception as 'Name: message' (no traceback), bounded in size."""
    name, message = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if name is None:
        name, message = type(exc).__name__, str(exc)
    text = f"{name}: {message}" if message else str(name)
    first_lines = " ".join(text.strip().splitlines()[:3])
    return first_lines[:500]


def _keep_failed_notebook(output: Path, source: Path, exc: BaseException) -> None:
    """papermill saves the executed notebook on a cell error; if it never got that far, say so."""
    if output.exists() and output.stat().st_size > 0:
        return
    import nbformat

    nb = nbformat.read(str(source), as_version=4)
    note = nbformat.v4.new_markdown_cell(
        f"**This run failed before its first cell executed:** `{describe_error(exc)}`. "
        "The cells below are the unexecuted notebook.")
    nb.cells.insert(0, note)
    nbformat.write(nb, str(output))
