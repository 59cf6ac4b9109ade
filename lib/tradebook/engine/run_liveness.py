"""Runs whose process died (issue 13): never left RUNNING.

A phase run records, with its RUNNING row, a ``heartbeats`` row (component
``run:<run_id>``) naming the process that runs it: pid, host, and the process's start
time from ``/proc`` (so a recycled pid is not mistaken for the run); the row goes when
the run ends. At the next start of any phase, RUNNING rows whose process
is gone from this host become ABANDONED, with a ``RUN_ABANDONED`` event; ``status``
shows them as abandoned even before that.
"""
from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tradebook.ledger import heartbeats as heartbeat_store
from tradebook.ledger import events, runs

if TYPE_CHECKING:
    import duckdb

COMPONENT = "run:"
ABANDONED_EVENT = "RUN_ABANDONED"
ABANDONED = "ABANDONED"


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """pid, host and kernel start time of a process (this one by default)."""
    pid = pid or os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "proc_start": _proc_start(pid)}


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (possibly owned by another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_gone(identity: dict[str, Any] | None) -> bool:
    """True only when we can tell: same host, and no process with that pid and start time."""
    if not identity or identity.get("host") != socket.gethostname() or not identity.get("pid"):
        return False
    pid = int(identity["pid"])
    if not os.path.isdir("/proc/self"):  # no procfs: the pid alone has to do
        return not pid_alive(pid)
    started = _proc_start(pid)
    if started is None:
        return True
    recorded = identity.get("proc_start")
    return recorded is not None and started not in (recorded, -1)


def record_start(con: "duckdb.DuckDBPyConnection", run_id: str, phase: str, now: datetime) -> None:
    """Name this process as the run's owner, inside the caller's transaction."""
    heartbeat_store.put(con, COMPONENT + run_id, now, {"phase": phase, **process_identity()})


def record_end(con: "duckdb.DuckDBPyConnection", run_id: str) -> None:
    """The run ended (OK, FAILED or ABANDONED): its owner row goes."""
    heartbeat_store.remove(con, COMPONENT + run_id)


def identities(con: "duckdb.DuckDBPyConnection", run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The recorded process of each run that has one."""
    found = heartbeat_store.details(con, (COMPONENT + r for r in run_ids))
    return {component[len(COMPONENT):]: detail for component, detail in found.items()}


def mark_abandoned(con: "duckdb.DuckDBPyConnection", now: datetime) -> list[str]:
    """RUNNING rows whose process died become ABANDONED (with an event); returns their run ids."""
    gone = [(run_id, ident) for run_id, ident in identities(con, runs.running(con)).items() if is_gone(ident)]
    for run_id, ident in gone:
        why = (f"process {ident['pid']} on {ident['host']} ended while the run was RUNNING "
               "(killed or crashed); found at the next start")
        runs.end_if_running(con, run_id, ABANDONED, now, why)
        events.record(con, ABANDONED_EVENT, run_id=run_id, reason=why, data=ident, ts=now)
        record_end(con, run_id)
    return [run_id for run_id, _ in gone]


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return -1  # exists but unreadable: treat as alive
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[19])
