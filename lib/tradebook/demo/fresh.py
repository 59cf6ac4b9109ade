"""``tradebook demo --fresh``: move aside what the demo's own account wrote under runs/, nothing else.

A runs/ folder is shared: other accounts' ledgers (``ledger_file`` can name any file), their
daemon (``daemon.lock``, heartbeats), API breaker state, unrecorded-flatten journals, backups,
kill-switch flags and one log file per day for every account live next to the demo's output.
So the rule is a list of what the demo's account writes, read from its params:

- its ledger and WAL, its heartbeat (``heartbeat-<ledger stem>.json``, a sim daemon's) and its
  API breaker state (``api_breaker-<mode>.json``; SimBroker never writes one);
- the simulated venue's state file, its WAL and its change stamp (sim mode);
- the unrecorded-flatten journals that name its ledger;
- the executed notebooks its ledger's runs point at (a date folder left empty goes too), and
  ``report.html``.

Everything else stays: a kill-switch flag is cleared only by ``tradebook resume``, never by
archiving. While a daemon holds ``runs/daemon.lock`` nothing moves: --fresh is refused.
"""
from __future__ import annotations

import fcntl
import json
import shutil
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from tradebook.errors import LedgerCorrupt, TradebookError

if TYPE_CHECKING:
    from tradebook.params import Params

DAEMON_LOCK = "daemon.lock"   # ops.daemon.LOCK_FILE (the demo and ops are independent layers)
JOURNAL_GLOB = "flatten-unrecorded-*.json"


class DaemonRunning(TradebookError):
    """A daemon holds runs/daemon.lock: stop it before moving runs/ content aside."""


def archive_runs(params: "Params", root: Path) -> Path | None:
    """Move the account's own output to ``runs/archive/<stamp>/`` (never deleted); None if nothing moved.

    Raises DaemonRunning while a daemon holds the runs folder's lock (held by this call while it
    moves files, so no daemon starts meanwhile), LedgerLocked while another process holds the ledger.
    """
    runs_dir = params.runs_path(root)
    if not runs_dir.is_dir():
        return None
    with _no_daemon(runs_dir):
        movable = [p for p in dict.fromkeys(owned_files(params, root)) if p.exists() and _inside(p, runs_dir)]
        if not movable:
            return None
        dest = runs_dir / "archive" / datetime.now().strftime("%Y%m%dT%H%M%S")
        dest.mkdir(parents=True, exist_ok=True)
        for path in movable:
            target = dest / path.relative_to(runs_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), target)
        for folder in {p.parent for p in movable} - {runs_dir}:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()   # a date folder that held only this account's notebooks
        return dest


def owned_files(params: "Params", root: Path) -> list[Path]:
    """The files under runs/ that the account of ``params`` wrote (see the module docstring)."""
    from tradebook.broker import breaker_path

    runs_dir, ledger = params.runs_path(root), params.ledger_path(root)
    breaker = breaker_path(params, root)
    files = [*_notebooks(ledger), ledger, ledger.with_name(ledger.name + ".wal"),
             ledger.with_name(f"heartbeat-{ledger.stem}.json"),   # ops.health.heartbeat_at
             breaker, breaker.with_name(breaker.name + ".lock"), runs_dir / "report.html"]
    if params.mode == "sim":
        state = params.sim_state_path(root)
        files += [state, state.with_name(state.name + ".wal"), state.with_name(state.name + ".stamp")]
    files += [p for p in sorted(runs_dir.glob(JOURNAL_GLOB)) if _names_ledger(p, ledger.name)]
    return files


def _notebooks(ledger: Path) -> list[Path]:
    """The executed notebooks this ledger's runs point at; none from a damaged ledger (they stay)."""
    from tradebook.ledger import runs
    from tradebook.ledger.db import Ledger

    if not ledger.exists():
        return []
    try:
        with Ledger(ledger, create=False).connect(read_only=True) as con:
            return [Path(p) for p in runs.notebook_paths(con)]
    except LedgerCorrupt:
        return []


def _names_ledger(journal: Path, ledger_name: str) -> bool:
    """A journal that names this ledger; an unreadable one is not ours to move."""
    try:
        payload = json.loads(journal.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(payload, dict) and payload.get("ledger") == ledger_name


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return path.resolve() != folder.resolve() and "archive" not in path.relative_to(folder).parts[:1]


@contextmanager
def _no_daemon(runs_dir: Path) -> Iterator[None]:
    """Hold runs/daemon.lock while files move; DaemonRunning if a daemon holds it."""
    lock = runs_dir / DAEMON_LOCK
    if not lock.exists():
        yield
        return
    with open(lock, "r") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = fh.read().strip() or "unknown pid"
            raise DaemonRunning(f"a tradebook daemon is running on {runs_dir} ({holder}); `demo --fresh` moves "
                                "nothing while it runs: stop it first (systemctl stop tradebook), or run the "
                                "demo without --fresh") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
