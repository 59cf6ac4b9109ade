"""Where the simulated venue keeps its state: one DuckDB file, never held open.

Why ATTACH and not ``duckdb.connect`` per call: starting a DuckDB 2.0 instance costs
~20 ms (it loads its built-in extensions), which would make every broker call slow.
So the process keeps one in-memory DuckDB instance and, for each call, ATTACHes the
state file, reads, writes any change in one transaction, and DETACHes it (1-4 ms).
While detached no lock is held, so a notebook kernel and the demo process can take
turns on the same simulated account (OPS-1). Lock conflicts are retried like the
ledger's; a file that is not a DuckDB database is a clear error, never replaced.

Unchanged state is not even read again: every write replaces a random token in a
``<state>.stamp`` file next to the state *before* its transaction and again after it,
and a snapshot of (meta row, open orders) is reused only while (token, state file
inode) are exactly what they were when the snapshot was taken under the file lock.
A writer that dies mid-way has already changed the token, so everyone reloads. Only
SimBroker may write the state file.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Iterator

from tradebook.broker.sim import state
from tradebook.errors import BrokerError, BrokerUnavailable
from tradebook.duckdb_errors import CORRUPT_MARKERS, LOCK_MARKERS
from tradebook.duckdb_fork import abandon

if TYPE_CHECKING:
    import duckdb

ALIAS = "tradebook_sim"
_lock = threading.RLock()   # one attached state at a time per process
_memory: "duckdb.DuckDBPyConnection | None" = None
_memory_pid = 0
_inherited: list = []


def _memory_connection() -> "duckdb.DuckDBPyConnection":
    """This process's private in-memory DuckDB instance (a forked child makes its own)."""
    global _memory, _memory_pid
    if _memory is None or _memory_pid != os.getpid():
        import duckdb

        if _memory is not None:   # forked without the at-fork hook: never close or destroy the parent's copy
            abandon(_memory)
            _inherited.append(_memory)
        _memory = duckdb.connect(":memory:")
        # Simulator state, not money: skip fsync (~4 per write). A killed process still leaves a
        # consistent file (the OS has the writes); only an OS crash could damage it.
        _memory.execute("SET fsync_mode = 'NONE'")
        _memory.execute("SET threads = 1")
        _memory_pid = os.getpid()
    return _memory


def _after_fork_in_child() -> None:
    """Forget the parent's instance without closing or destroying it (``tradebook.duckdb_fork``)."""
    global _memory, _memory_pid, _lock
    _lock = threading.RLock()   # a parent's thread may have held it; that thread does not exist here
    if _memory is not None:
        abandon(_memory)
        _inherited.append(_memory)
    _memory, _memory_pid = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=lambda: _lock.acquire(), after_in_parent=lambda: _lock.release(),
                        after_in_child=_after_fork_in_child)


class SimStore:
    """Short visits to the sim state file: ATTACH, read, one write transaction, DETACH."""

    # path -> (stamp, meta, open orders): the last state seen under the lock, shared by instances
    _snapshots: ClassVar[dict[Path, tuple]] = {}

    def __init__(self, path: str | Path, lock_timeout_s: float = 15.0):
        self.path = Path(path).absolute()
        self.stamp_path = self.path.with_name(self.path.name + ".stamp")
        self.lock_timeout_s = lock_timeout_s

    # change detection without opening the file ------------------------------------------
    def stamp(self) -> tuple | None:
        """(token, device, inode) of the state; None when either file is missing."""
        try:
            token = self.stamp_path.read_bytes()
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return token, st.st_dev, st.st_ino

    def bump(self) -> None:
        """Tell every reader the state changes (called before and after each write)."""
        self._snapshots.pop(self.path, None)
        self.stamp_path.write_bytes(uuid.uuid4().bytes)

    def remember(self, meta: tuple, open_orders: list[state.OrderRow]) -> None:
        """Keep the state just loaded or written (only while attached: no writer in between)."""
        stamp = self.stamp()
        if stamp is None:
            self.bump()
            stamp = self.stamp()
        self._snapshots[self.path] = (stamp, meta, open_orders)

    def recall(self) -> tuple[tuple, list[state.OrderRow]] | None:
        """(meta, open orders) of the last snapshot if the state has not changed since, else None."""
        snap = self._snapshots.get(self.path)
        if snap is None or snap[0] != self.stamp():
            return None
        return snap[1], snap[2]

    def save(self, con: "duckdb.DuckDBPyConnection", book: state.Book) -> None:
        """Write the book back in one transaction, announced to readers before and after."""
        self.bump()
        meta = state.save_book(con, book)
        self.bump()
        self.remember(meta, state.open_rows(book))

    def create(self, con: "duckdb.DuckDBPyConnection", seed: int, now_us: int, cash: float,
               start_date) -> tuple:
        """A brand-new simulated account; its meta row."""
        self.bump()
        state.insert_meta(con, seed, now_us, cash, start_date)
        self.bump()
        return state.read_meta(con)

    @contextmanager
    def attached(self) -> Iterator["duckdb.DuckDBPyConnection"]:
        """The state file attached for one call; detached (lock released) on exit.

        While attached, no other process can open the file and this process's other
        callers wait on a lock, so a call's reads and its one write transaction
        (``save_book``) see no interleaved change.
        """
        with _lock:
            con = _memory_connection()
            self._attach(con)
            try:
                con.execute(f"USE {ALIAS}")
                yield con
            finally:
                _detach(con)

    def _attach(self, con: "duckdb.DuckDBPyConnection") -> None:
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        quoted = str(self.path).replace("'", "''")
        deadline = time.monotonic() + self.lock_timeout_s
        delay, cleaned = 0.02, False
        while True:
            try:
                con.execute(f"ATTACH '{quoted}' AS {ALIAS}")
                return
            except duckdb.Error as exc:
                text = str(exc)
                if not cleaned and ("already exists" in text or "already attached" in text):
                    _detach(con)    # left over from an interrupted call in this process
                    cleaned = True
                    continue
                if any(m in text for m in LOCK_MARKERS) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
                    continue
                if any(m in text for m in LOCK_MARKERS):
                    raise BrokerUnavailable(f"sim state {self.path} is locked by another process for more "
                                            f"than {self.lock_timeout_s:.0f}s; try again") from None
                if any(m in text for m in CORRUPT_MARKERS):
                    raise BrokerError(f"sim state {self.path} is corrupt or not a DuckDB database; move it "
                                      "aside to start a fresh simulated account") from None
                raise BrokerError(f"cannot open sim state {self.path}: {text.splitlines()[0]}") from None


def _detach(con: "duckdb.DuckDBPyConnection") -> None:
    """Release the file (and its lock); tolerate a connection left mid-transaction."""
    import duckdb

    for sql in ("USE memory", f"DETACH DATABASE IF EXISTS {ALIAS}"):
        try:
            con.execute(sql)
        except duckdb.TransactionException:
            con.execute("ROLLBACK")
            con.execute(sql)
