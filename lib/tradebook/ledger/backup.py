"""Ledger backups, restore and checks (OPS-2, OPS-3).

A backup is a file copy taken while *we* hold the ledger: the short-lived connection
takes DuckDB's file lock (retrying while a run holds it), ``CHECKPOINT`` folds the WAL
into the file, and the copy is made before the lock is released, so no other process
can write half-way through. Each copy is opened and checked before it is renamed to
``runs/backups/ledger-<UTC stamp>.duckdb`` (``ledger.newest_backup`` finds it), so every
file under that name is a good backup. Restore never deletes: the file it replaces is
kept next to it as ``ledger.duckdb.corrupt-<stamp>``.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from tradebook.ledger import file as ledger_file
from tradebook.errors import LedgerCorrupt, LedgerError, LedgerLocked
from tradebook.logs import log_event

if TYPE_CHECKING:
    from tradebook.ledger.db import Ledger

STAMP = "%Y%m%dT%H%M%SZ"
BACKUP_EVENT = "BACKUP"  # the daily backup's event: the daemon's plan counts the backup slot done by it
_STAMP_RE = re.compile(r"-(\d{8}T\d{6}Z)")


@dataclass(frozen=True)
class RestoreResult:
    restored_from: Path
    ledger: Path
    set_aside: tuple[Path, ...]   # the replaced file (and its WAL), never deleted
    counts: dict[str, int]


@dataclass(frozen=True)
class CheckResult:
    ledger: Path
    schema_version: int
    counts: dict[str, int]
    newest_backup: Path | None
    blocks_verified: int = 0


def _stamp(now: datetime | None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).strftime(STAMP)


def backups_dir(ledger_path: Path) -> Path:
    return Path(ledger_path).parent / "backups"


def backup(ledger_path: str | Path, dest_dir: str | Path | None = None, now: datetime | None = None, *,
           retention_days: int | None = None, lock_timeout_s: float = 30.0) -> Path:
    """Copy the ledger to ``<dest>/ledger-<stamp>.duckdb`` consistently; prune by retention."""
    from tradebook.ledger.db import Ledger

    ledger_path = Path(ledger_path)
    if not ledger_path.exists():
        raise LedgerError(f"ledger {ledger_path} does not exist: nothing to back up")
    dest = Path(dest_dir) if dest_dir else backups_dir(ledger_path)
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / f"{ledger_path.stem}-{_stamp(now)}{ledger_path.suffix}"
    # A dot-name never matches newest_backup's glob, so a half-written copy is never offered.
    partial = dest / f".{final.name}.partial"
    with Ledger(ledger_path, create=False, lock_timeout_s=lock_timeout_s).connect() as con:
        con.execute("CHECKPOINT")
        shutil.copyfile(ledger_path, partial)
    try:
        _verify(partial)
    except LedgerError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, final)
    _fsync_dir(dest)
    log_event("backup", "info", f"ledger backed up to {final}", ledger=str(ledger_path), backup=str(final))
    if retention_days is not None:
        prune(dest, ledger_path, retention_days, now)
    return final


def daily_backup(ledger: "Ledger", session: date, now: datetime, retention_days: int) -> Path:
    """The daemon's backup after a session's report, recorded as a BACKUP event (schedule.phase_done)."""
    from tradebook.ledger import events

    path = backup(ledger.path, now=now, retention_days=retention_days)
    with ledger.transaction() as con:
        events.record(con, BACKUP_EVENT, reason=f"daily backup {path.name}",
                      data={"session": session.isoformat(), "path": str(path)}, ts=now)
    return path


def prune(dest: Path, ledger_path: Path, retention_days: int, now: datetime | None = None) -> list[Path]:
    """Delete backups older than ``retention_days`` (by their stamp); the newest is always kept."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    dated = sorted((stamp, p) for p in Path(dest).glob(f"{Path(ledger_path).stem}-*")
                   if (stamp := _parse_stamp(p.name)) is not None)
    cutoff = now - timedelta(days=retention_days)
    removed = [p for stamp, p in dated[:-1] if stamp < cutoff]
    for p in removed:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        log_event("backup", "info", f"old backup removed ({retention_days} d retention): {p.name}")
    return removed


def _parse_stamp(name: str) -> datetime | None:
    m = _STAMP_RE.search(name)
    if not m:
        return None
    return datetime.strptime(m.group(1), STAMP).replace(tzinfo=timezone.utc)


def list_backups(ledger_path: str | Path) -> list[Path]:
    """Backups of this ledger, oldest first."""
    ledger_path = Path(ledger_path)
    folder = backups_dir(ledger_path)
    return sorted(folder.glob(f"{ledger_path.stem}-*"), key=lambda p: p.name) if folder.is_dir() else []


def restore(backup_path: str | Path | None, ledger_path: str | Path, *, force: bool = False,
            now: datetime | None = None) -> RestoreResult:
    """Put a backup in place of the ledger; the replaced file is kept aside, never deleted.

    Refuses while the daemon runs or another process holds the ledger, and refuses to
    replace a healthy ledger unless ``force`` (you would lose what happened since)."""
    from tradebook.ledger.db import newest_good_backup

    ledger_path = Path(ledger_path)
    source = Path(backup_path) if backup_path else newest_good_backup(ledger_path)
    if source is None or not source.exists():
        raise LedgerError(f"no backup to restore: {source or backups_dir(ledger_path)} not found")
    _verify(source)
    _refuse_if_daemon_running(ledger_path)
    healthy = _probe(ledger_path)
    if healthy and not force:
        raise LedgerError(f"ledger {ledger_path} is healthy; restoring {source.name} would drop everything "
                          "recorded since. Use --force if that is what you want.")
    suffix = "replaced" if healthy else "corrupt"
    aside = _set_aside(ledger_path, f"{suffix}-{_stamp(now)}")
    partial = ledger_path.with_name(f".{ledger_path.name}.restoring")
    shutil.copyfile(source, partial)
    os.replace(partial, ledger_path)
    _fsync_dir(ledger_path.parent)
    counts = check(ledger_path).counts
    _mark_restored(ledger_path, source, now)
    # info, not warning: the command says it; a warning would be echoed to stderr a second time
    log_event("backup", "info", f"ledger restored from {source}", ledger=str(ledger_path),
              set_aside=[str(p) for p in aside])
    return RestoreResult(source, ledger_path, aside, counts)


def _mark_restored(ledger_path: Path, source: Path, now: datetime | None) -> None:
    """Tell the next reconcile to look up at the broker what the lost ledger may have recorded
    (tradebook.phases.restore_adopt), and that no entry may go before it has run (REC-8)."""
    from tradebook.ledger import meta
    from tradebook.ledger.db import Ledger

    when = now or datetime.now(timezone.utc)
    with Ledger(ledger_path).transaction() as con:
        meta.put(con, meta.RESTORED_KEY, {"from": source.name, "at": when.isoformat(), "pending": True}, when)
        last = meta.get(con, meta.RECONCILE_KEY)
        if last is not None:   # REC-8: the backup's "reconciled" no longer holds; no entry before a new one
            meta.put(con, meta.RECONCILE_KEY, {**last, "ok": False, "error": f"ledger restored from {source.name}; "
                                               "run `tradebook run reconcile`"}, when)


def check(ledger_path: str | Path) -> CheckResult:
    """OPS-7: check the file's bytes, then read every value of every table (read-only: nothing is written).

    LedgerCorrupt (naming the newest good backup) when anything is unreadable.
    """
    import duckdb

    from tradebook.ledger.db import Ledger, corrupt_message, newest_good_backup, read_all
    from tradebook.ledger.schema import current_version

    ledger_path = Path(ledger_path)
    ledger = Ledger(ledger_path, create=False)
    ledger_file.forget(ledger_path)  # a check always reads the bytes again
    with ledger.connect(read_only=True) as con:
        try:
            counts = read_all(con)
            version = current_version(con) if "schema_version" in counts else 0
        except duckdb.Error as exc:
            raise LedgerCorrupt(corrupt_message(ledger_path, str(exc))) from None
    try:
        blocks = ledger_file.inspect(ledger_path).used_blocks
    except ledger_file.DamagedFile:  # changed since the connection's check: a writer is at work; ask again
        raise LedgerLocked(f"ledger {ledger_path} changed while it was checked; run the check again") from None
    return CheckResult(ledger_path, version or 0, counts, newest_good_backup(ledger_path), blocks)


def _verify(path: Path) -> None:
    """A backup must pass the file check, open read-only, read fully and have a schema version."""
    import duckdb

    from tradebook.ledger.db import read_all
    from tradebook.ledger.schema import current_version

    try:
        ledger_file.inspect(path)
    except (ledger_file.DamagedFile, OSError) as exc:
        raise LedgerCorrupt(f"backup {path} is damaged ({exc})") from None
    try:
        con = duckdb.connect(str(path), read_only=True)
        try:
            version = current_version(con)
            read_all(con)
        finally:
            con.close()
    except duckdb.Error as exc:
        raise LedgerCorrupt(f"backup {path} is not a readable ledger ({str(exc).splitlines()[0][:160]})") from None
    if not version:
        raise LedgerCorrupt(f"backup {path} has no schema version: not a tradebook ledger")


def _probe(ledger_path: Path) -> bool:
    """True when the current ledger is healthy, False when corrupt or absent; LedgerLocked if held."""
    from tradebook.ledger.db import Ledger

    if not ledger_path.exists():
        return False
    try:
        Ledger(ledger_path, create=False, lock_timeout_s=2.0).check()
        return True
    except LedgerLocked:
        raise LedgerLocked(f"ledger {ledger_path} is held by another process; stop it before restoring") from None
    except LedgerCorrupt:
        return False


def _set_aside(ledger_path: Path, suffix: str) -> tuple[Path, ...]:
    moved = []
    for path in (ledger_path, ledger_path.with_name(ledger_path.name + ".wal")):
        if path.exists():
            target = path.with_name(f"{path.name}.{suffix}")
            os.replace(path, target)
            moved.append(target)
    return tuple(moved)


def _refuse_if_daemon_running(ledger_path: Path) -> None:
    lock = ledger_path.parent / "daemon.lock"
    if not lock.exists():
        return
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LedgerLocked("the tradebook daemon is running (runs/daemon.lock is held); stop it "
                               "(systemctl stop tradebook) before restoring the ledger") from None
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
