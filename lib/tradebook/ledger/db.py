"""The DuckDB ledger: the source of truth for *why* (intents, verdicts, incidents).

DuckDB lets one process hold a file for writing and then refuses every other
process, even read-only (OPS-1). So the ledger is never held open: each call opens
a short-lived connection (the file ATTACHed to this process's in-memory DuckDB,
:mod:`tradebook.ledger.attach`), retries while another process holds the lock, and runs
each state change inside one transaction (OPS-2). A file that exists but is not a
DuckDB database is reported as corrupt with the backup to restore, never replaced.
The tables and their migrations are :mod:`tradebook.ledger.schema`.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

import duckdb

from tradebook.ledger import attach as ledger_attach
from tradebook.ledger import file as ledger_file
from tradebook.ledger import schema
from tradebook.ledger.file import corrupt_message, newest_backup, newest_good_backup  # noqa: F401 (re-exported)
from tradebook.duckdb_errors import CORRUPT_MARKERS, LOCK_MARKERS
from tradebook.errors import ConfigError, LedgerCorrupt, LedgerError, LedgerLocked

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")
LOCK_TIMEOUT_ENV = "TRADEBOOK_LEDGER_LOCK_TIMEOUT_S"
BUSY_GRACE_S = 2.0  # a file seen mid-write is looked at again for at least this long before giving up


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Ledger:
    """Short-lived, lock-retrying connections to the ledger file."""

    def __init__(self, path: str | Path, *, lock_timeout_s: float | None = None, create: bool = True):
        self.path = Path(path)
        # How long to wait for another process's lock; TRADEBOOK_LEDGER_LOCK_TIMEOUT_S tunes the default.
        self.lock_timeout_s = lock_timeout_s if lock_timeout_s is not None else _env_lock_timeout()
        self._migrated = False
        if not self.path.exists():
            if not create:
                raise LedgerError(f"ledger {self.path} does not exist; run `tradebook demo` or "
                                  f"`tradebook run reconcile` to create it")
            self.path.parent.mkdir(parents=True, exist_ok=True)

    # connections ---------------------------------------------------------------------
    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        read_only = read_only and self.path.exists()
        if ledger_attach.is_attached(self.path):
            # Held by this process already: no other process can have written it since it was checked.
            return self._cursor(read_only)
        started = time.monotonic()
        deadline = started + self.lock_timeout_s
        delay = 0.02
        while True:
            # OPS-7: the bytes are checked before DuckDB may read or write them (see ledger_file).
            problem = ledger_file.check_once(self.path)
            if problem == "busy":
                if time.monotonic() >= max(deadline, started + BUSY_GRACE_S):
                    raise LedgerLocked(f"ledger {self.path} kept changing while it was checked (another process "
                                       "is writing it); try again. `tradebook halt` works regardless.")
                time.sleep(0.1)
                continue
            if problem is not None:
                raise LedgerCorrupt(corrupt_message(self.path, problem))
            try:
                return self._cursor(read_only)
            except ledger_attach.ForkedWhileHeld as exc:
                # Waits like a lock (the parent may still hold it); the message says why waiting may not help.
                if time.monotonic() >= deadline:
                    raise LedgerLocked(f"ledger {self.path} cannot be opened in this process ({exc}). "
                                       "The kill switch still works: `tradebook halt` uses the flag file.") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
                continue
            except duckdb.Error as exc:
                text = str(exc)
                if any(m in text for m in LOCK_MARKERS):
                    if time.monotonic() >= deadline:
                        raise LedgerLocked(
                            f"ledger {self.path} is locked by another process ({_holder(text)}) "
                            f"for more than {self.lock_timeout_s:.0f}s; wait for that run to finish "
                            "or stop it. The kill switch still works: `tradebook halt` uses the flag file."
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
                    continue
                if is_corrupt_error(exc):
                    raise LedgerCorrupt(corrupt_message(self.path, text)) from None
                raise LedgerError(f"cannot open ledger {self.path}: {text}") from None

    def _cursor(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        try:
            return ledger_attach.open_cursor(self.path, read_only)
        except ledger_attach.ModeConflict as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from None

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection that is closed (and the file lock released) on exit.

        DuckDB errors that mean a damaged file (a block failing its checksum, bytes
        missing) become LedgerCorrupt naming the newest good backup.
        """
        con = self._open(read_only)
        clean = False
        try:
            if not self._migrated and not read_only:
                self._migrate(con)
            yield con
            clean = True
        except duckdb.Error as exc:
            if is_corrupt_error(exc):
                ledger_file.forget(self.path)
                raise LedgerCorrupt(corrupt_message(self.path, str(exc))) from None
            raise
        finally:
            ledger_attach.close_cursor(con)
            # Trusted only once detached: DuckDB has checkpointed and let go of these exact bytes.
            if ledger_attach.release(self.path) and clean:
                ledger_file.trust(self.path)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep the file attached across a short burst of calls (one checkpoint, one file check).

        For a few milliseconds of ledger-only work that would otherwise open and close the
        file many times (the demo's monitor tick). While held, no other process can open the
        ledger (OPS-1): never wrap a notebook, network calls or anything that waits.
        """
        with self.connect():
            yield

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One state change: everything inside commits together or not at all (OPS-2).

        Work registered with ``after_commit`` runs once the commit succeeded and the
        connection is closed; a rollback (or a failed commit) drops it.
        """
        key, hooks = None, []
        try:
            with self.connect() as con:
                key = id(con)
                _after_commit[key] = []
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException:
                    if not ledger_attach.is_inherited(con):   # a forked child never runs its parent's DuckDB
                        con.execute("ROLLBACK")
                    raise
                if ledger_attach.is_inherited(con):
                    raise LedgerError(f"this process was forked inside a ledger transaction on {self.path}; "
                                      "only the parent may commit it (nothing was committed here)")
                con.execute("COMMIT")
                hooks = _after_commit.pop(key, [])
        finally:
            if key is not None:
                _after_commit.pop(key, None)
        for hook in hooks:
            hook()

    # migrations ------------------------------------------------------------------------
    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        schema.migrate(con, self.path)
        self._migrated = True

    def schema_version(self) -> int:
        with self.connect() as con:
            return schema.current_version(con)

    # small generic helpers -------------------------------------------------------------
    def read(self, reader: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``reader(con, *args, **kwargs)`` on a short-lived connection: one store read, e.g.
        ``ledger.read(fills.count_since, since)``."""
        with self.connect() as con:
            return reader(con, *args, **kwargs)

    def df(self, sql: str, params: list[Any] | None = None) -> "pd.DataFrame":
        """Run a read query and return a DataFrame."""
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        with self.connect() as con:
            return con.execute(sql, params or []).fetchall()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        with self.connect() as con:
            row = con.execute(sql, params or []).fetchone()
            return row[0] if row else None

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        """One statement in its own transaction."""
        with self.transaction() as con:
            con.execute(sql, params or [])

    def check(self, read_only: bool = False) -> dict[str, int]:
        """Open the ledger and read every column of every table; LedgerCorrupt on a bad file (OPS-7)."""
        with self.connect(read_only=read_only) as con:
            try:
                return read_all(con)
            except duckdb.Error as exc:
                raise LedgerCorrupt(corrupt_message(self.path, str(exc))) from None


def read_all(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows per table, after reading every value (hashing it) so that DuckDB checks every data block.

    ``count(*)`` alone is answered from metadata and would call a half-missing table fine.
    """
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema='main' AND table_type='BASE TABLE' ORDER BY table_name").fetchall()]
    return {t: con.execute(f'SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM "{t}"').fetchone()[0]
            for t in tables}


@contextmanager
def staged(con: duckdb.DuckDBPyConnection, name: str, frame: "pd.DataFrame") -> Iterator[None]:
    """Make ``frame`` readable as the temporary table ``name`` for the block, inside the caller's transaction.

    A copy through ``execute`` rather than ``register``: DuckDB (2.x) refuses ``register`` while an
    earlier ``fetchone()`` on the same connection left its result unfinished, which any store read may do.
    """
    if not name.isidentifier():
        raise ValueError(f"not a table name: {name!r}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM frame")
    try:
        yield
    finally:
        con.execute(f"DROP TABLE IF EXISTS {name}")


def is_corrupt_error(exc: BaseException) -> bool:
    """A DuckDB error that means damaged bytes rather than a bad query or a lock."""
    text = str(exc)
    return any(m in text for m in CORRUPT_MARKERS) or isinstance(exc, duckdb.SerializationException)


_after_commit: dict[int, list[Any]] = {}   # id(open transaction's connection) -> work for after its commit


def after_commit(con: duckdb.DuckDBPyConnection, fn: Any) -> None:
    """Run ``fn()`` after the ``Ledger.transaction`` owning ``con`` commits; never if it rolls back.

    For side effects outside the ledger (alert delivery over the network): they must not
    hold the ledger while they wait, nor announce a change that did not happen. A
    connection outside such a transaction commits each statement at once: ``fn`` runs now.
    """
    hooks = _after_commit.get(id(con))
    if hooks is None:
        fn()
    else:
        hooks.append(fn)


def _env_lock_timeout() -> float:
    """TRADEBOOK_LEDGER_LOCK_TIMEOUT_S (default 15 s); a bad value is named as coming from the environment."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "15")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ConfigError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds >= 0 [from env]; fix or unset it "
                          "in the environment (e.g. the systemd EnvironmentFile)")
    return value


def _holder(text: str) -> str:
    marker = "Conflicting lock is held in"
    return text[text.index(marker):].strip().rstrip(".") if marker in text else "lock held"
