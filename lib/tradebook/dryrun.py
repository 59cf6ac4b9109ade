"""Phase notebooks opened by hand are dry runs (issue 16 item 3): they send and write nothing.

A phase notebook executed by the runner (``tradebook run``, the daemon, the demo) gets a
``run_id`` and trades. Opened in JupyterLab (no ``run_id``), ``nb.start`` gives it a
dry-run context instead: the ledger and the simulator's state are copied byte for byte
into a temporary folder (the originals are not opened, so nothing is written to them),
and the broker refuses every call that would send (submit, cancel, close) with a
``DRY_RUN`` rejection. The phase then runs its real code, gate verdicts included, and
shows what it would have done; no order can leave without an executed notebook under
``runs/`` recording it. ``TRADEBOOK_PHASE_WRITES=1`` (the nbval regression run, which
replays the phases in order on a throw-away fixture) keeps the old behaviour.

The copies are removed when the process (the notebook's kernel) exits; a kernel that was
killed leaves its folder behind, so each new dry run also removes dry-run folders older than
a day whose process is gone. Only folders this module made are ever removed: the name
prefix, a marker file inside, owned by this user, not a symlink (``clean_stale``).
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebook.errors import BrokerRejected

if TYPE_CHECKING:
    from tradebook.context import Context

WRITES_ENV = "TRADEBOOK_PHASE_WRITES"
PHASES = ("reconcile", "decide", "execute", "report")
SENDING = ("submit", "cancel", "cancel_all", "close_position", "replace")
PREFIX = "tradebook-dryrun-"
MARKER = ".tradebook-dryrun"        # written into every dry-run folder: what makes it removable
STALE_AFTER_S = 24 * 3600
_OWN: list[tuple[int, Path]] = []   # (pid that made it, folder): removed at that process's exit


def is_dry_run(phase: str, run_id: str | None) -> bool:
    """A phase notebook not started by the runner, unless TRADEBOOK_PHASE_WRITES=1."""
    return run_id is None and phase in PHASES and os.environ.get(WRITES_ENV) != "1"


class DryRunBroker:
    """The real broker for reading (account, positions, quotes, bars); every send is refused."""

    def __init__(self, inner: Any, phase: str):
        self._inner, self._phase = inner, phase

    def __getattr__(self, name: str) -> Any:
        if name in SENDING:
            def refuse(*_a: Any, **_k: Any) -> Any:
                raise BrokerRejected(f"dry run: the {self._phase} notebook was opened outside the runner, so "
                                     f"nothing is sent (run `tradebook run {self._phase}` to trade)", code="DRY_RUN")
            return refuse
        return getattr(self._inner, name)


def _copy_db(src: Path, dest: Path) -> None:
    """Copy a DuckDB file and its WAL without opening them (opening could write a checkpoint)."""
    for suffix in ("", ".wal"):
        if Path(f"{src}{suffix}").exists():
            shutil.copyfile(f"{src}{suffix}", f"{dest}{suffix}")


def dry_context(ctx: "Context", phase: str) -> "Context":
    """``ctx`` on snapshots of the ledger and sim state in a temp folder, with a broker that sends nothing."""
    from tradebook.broker import make_broker
    from tradebook.context import Context

    clean_stale()
    folder = _new_folder(phase)
    p = ctx.params
    ledger, state = p.ledger_path(ctx.root), p.sim_state_path(ctx.root)
    _copy_db(ledger, folder / ledger.name)
    if p.mode == "sim":
        _copy_db(state, folder / state.name)
    params = p.model_copy(update={"runs_dir": str(folder), "ledger_file": ledger.name,
                                  "sim": p.sim.model_copy(update={"state_file": state.name})})
    dry = Context(params, ctx.root, None, ctx.read_only)   # a report's dry run still never counts (EXE-4)
    broker = make_broker(params, ctx.root, read_only=ctx.read_only)
    dry.__dict__["broker"] = DryRunBroker(broker, phase)  # fills the cached_property
    return dry


# --- the temporary folders ---------------------------------------------------------------------
def _new_folder(phase: str) -> Path:
    """A fresh dry-run folder with its marker, removed when this process exits."""
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{phase}-"))
    (folder / MARKER).write_text(json.dumps({"pid": os.getpid(), "created": time.time()}))
    if not _OWN:
        atexit.register(remove_own)
    _OWN.append((os.getpid(), folder))
    return folder


def remove_own() -> None:
    """At exit: remove the dry-run folders this process made (never raises). A forked child
    inherits the list and this handler; it leaves the parent's folders alone."""
    while _OWN:
        pid, folder = _OWN.pop()
        if pid == os.getpid() and is_dry_run_folder(folder):
            shutil.rmtree(folder, ignore_errors=True)


def is_dry_run_folder(path: Path) -> bool:
    """A real directory (not a symlink) named by this module, owned by this user, with the marker."""
    try:
        marker = path / MARKER
        return (path.name.startswith(PREFIX) and not path.is_symlink() and path.is_dir()
                and path.stat().st_uid == os.getuid() and marker.is_file() and not marker.is_symlink())
    except OSError:
        return False


def clean_stale(base: Path | None = None, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove dry-run folders under ``base`` (the temp dir) older than ``older_than_s`` whose
    process is gone (a kernel killed before its exit handler ran). Returns what was removed;
    never raises: a dry run must not fail over a leftover folder."""
    removed = []
    try:
        candidates = list(Path(base or tempfile.gettempdir()).glob(f"{PREFIX}*"))
    except OSError:
        return removed
    for folder in candidates:
        if is_dry_run_folder(folder) and _stale(folder, older_than_s):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _stale(folder: Path, older_than_s: float) -> bool:
    try:
        marker = folder / MARKER
        age = time.time() - marker.stat().st_mtime
        pid = json.loads(marker.read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return False   # unreadable marker: not ours to judge, keep it
    return age > older_than_s and not _alive(pid)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # exists, another user's: still alive
        return True
    return True
