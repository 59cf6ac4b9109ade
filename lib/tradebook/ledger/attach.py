"""Ledger files ATTACHed to one in-memory DuckDB instance per process, only while in use.

Why not ``duckdb.connect(file)`` per call: that starts a whole DuckDB instance (nine
threads, the catalog read from disk) and its close stops it again: 4-10 ms per
connection on this machine, and a phase notebook or a monitor tick makes 3-15 of them.
ATTACHing the file to an instance that is already running costs ~1 ms and gives the
same guarantees (SimBroker's state file does the same, ``broker/sim/store.py``):

- the file is attached while at least one connection of this process uses it, and
  DETACHed -- checkpointed, its lock released -- when the last one closes, so between
  calls no lock is held and other processes can open it (OPS-1);
- each connection is its own cursor (own transaction, own session settings such as
  ``SET TimeZone``), with the ledger as its default catalog (``USE``);
- a forked child never touches its parent's instance (nor closes or destroys it: see
  ``tradebook.duckdb_fork``): it makes its own. A file its parent held at the fork stays
  registered in the child by DuckDB's process-wide registry of attached files (shared by
  every instance duckdb-python makes), so the child cannot attach that file for the rest
  of its life: it gets :class:`ForkedWhileHeld` (the ledger says LedgerLocked), never a
  second attachment. Fork between ledger calls (no lock is held then) and the child has
  the file like any other process.

Nested connections of one process share the attachment, as ``duckdb.connect`` shared
its instance before; mixing read-only and read-write in one process is refused, as
DuckDB refused it before.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb

from tradebook.duckdb_fork import abandon, is_abandoned

_lock = threading.RLock()
_instance: duckdb.DuckDBPyConnection | None = None
_instance_pid = 0
_inherited: list[duckdb.DuckDBPyConnection] = []   # a parent's instance, never closed in a forked child
_aliases: dict[str, str] = {}                         # resolved path -> catalog alias (stable per process)
_held_at_fork: set[str] = set()                       # files the parent held when this process was forked
_cursors: dict[int, duckdb.DuckDBPyConnection] = {}   # open cursors of this process (abandoned in a child)


@dataclass
class _Attachment:
    alias: str
    read_only: bool
    users: int = 0


_attached: dict[str, _Attachment] = {}


class ModeConflict(Exception):
    """The file is attached in this process read-only and read-write was asked (or the reverse)."""


class ForkedWhileHeld(Exception):
    """This process was forked while its parent held the file: DuckDB keeps it registered here."""


def _before_fork() -> None:
    _lock.acquire()   # no attachment half-made (DuckDB registered it, _attached not yet) at the fork


def _after_fork_in_parent() -> None:
    _lock.release()


def _after_fork_in_child() -> None:
    """Forget the parent's instance without closing or destroying it; the next call makes this process's own."""
    global _instance, _instance_pid, _lock
    _lock = threading.RLock()
    if _instance is not None:
        abandon(_instance)
        _inherited.append(_instance)
    for cursor in _cursors.values():
        abandon(cursor)
    _held_at_fork.update(_attached)
    _cursors.clear()
    _attached.clear()
    _instance, _instance_pid = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


def _memory() -> duckdb.DuckDBPyConnection:
    global _instance, _instance_pid
    if _instance is None or _instance_pid != os.getpid():
        if _instance is not None:   # forked without the at-fork hook (os.register_at_fork missing)
            abandon(_instance)
            _inherited.append(_instance)
            _attached.clear()   # the parent's attachments are not ours
        _instance = duckdb.connect(":memory:")
        _instance_pid = os.getpid()
    return _instance


def prewarm() -> None:
    """Start this process's instance now (a spare kernel, before its notebook needs the ledger)."""
    with _lock:
        _memory()


def key(path: str | Path) -> str:
    return str(Path(path).resolve())


def is_attached(path: str | Path) -> bool:
    """True while a connection of this process holds the file (so no other process can write it)."""
    with _lock:
        return _instance_pid == os.getpid() and key(path) in _attached


def open_cursor(path: str | Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection whose default catalog is the ledger file; ATTACHes it first if needed.

    Raises duckdb.Error from ATTACH (lock held elsewhere, not a database), ModeConflict
    and ForkedWhileHeld; on any error nothing stays attached on this call's behalf.
    """
    name = key(path)
    with _lock:
        memory = _memory()
        held = _attached.get(name)
        if held is None and name in _held_at_fork:
            raise ForkedWhileHeld(f"this process was forked while its parent held {name}; DuckDB keeps the "
                                  "file registered in this process, so it cannot open it even once the "
                                  "parent lets go: open it from a process forked between ledger calls or "
                                  "started afresh")
        if held is None:
            alias = _aliases.setdefault(name, f"tradebook_ledger_{len(_aliases) + 1}")
            memory = _attach(memory, name, alias, read_only)
            held = _attached[name] = _Attachment(alias, read_only)
        elif held.read_only != read_only:
            raise ModeConflict(f"the ledger is already open {'read-only' if held.read_only else 'read-write'} "
                               "in this process")
        held.users += 1
        try:
            cursor = memory.cursor()
            cursor.execute(f"USE {held.alias}")
        except BaseException:
            release(path)
            raise
        _cursors[id(cursor)] = cursor
        return cursor


def close_cursor(cursor: duckdb.DuckDBPyConnection) -> None:
    """Close a cursor from ``open_cursor``; one inherited from a parent process is left alone.

    (A forked child that leaves a ``with ledger.connect()`` block it inherited must not run
    its parent's DuckDB: see ``tradebook.duckdb_fork``.)
    """
    with _lock:
        _cursors.pop(id(cursor), None)
    if not is_abandoned(cursor):
        cursor.close()


def is_inherited(cursor: duckdb.DuckDBPyConnection) -> bool:
    """True for a cursor this process got from its parent by fork (never to commit or roll back here)."""
    return is_abandoned(cursor)


def _attach(memory: duckdb.DuckDBPyConnection, name: str, alias: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    """ATTACH the file; an instance DuckDB invalidated after a fatal error is replaced once."""
    sql = f"ATTACH '{name.replace(chr(39), chr(39) * 2)}' AS {alias}{' (READ_ONLY)' if read_only else ''}"
    try:
        memory.execute(sql)
    except duckdb.Error as exc:
        if "invalidated" not in str(exc):
            raise
        _reset()
        memory = _memory()
        memory.execute(sql)
    return memory


def release(path: str | Path) -> bool:
    """One user fewer; the last one DETACHes (checkpoint, lock released). True when detached."""
    name = key(path)
    with _lock:
        held = _attached.get(name)
        if held is None or _instance_pid != os.getpid():
            return False
        held.users -= 1
        if held.users > 0:
            return False
        del _attached[name]
        try:
            _detach(held.alias)
        except duckdb.Error:
            _reset()   # an instance that cannot let go of the file is dropped with it
        return True


def _detach(alias: str) -> None:
    assert _instance is not None
    try:
        _instance.execute(f"DETACH DATABASE IF EXISTS {alias}")
    except duckdb.TransactionException:   # the instance's own connection left mid-transaction
        _instance.execute("ROLLBACK")
        _instance.execute(f"DETACH DATABASE IF EXISTS {alias}")


def _reset() -> None:
    """Close the whole instance (releasing every file it holds); the next call makes a new one."""
    global _instance
    if _instance is not None:
        try:
            _instance.close()
        except duckdb.Error:   # a broken instance is dropped anyway: the next call builds a fresh one
            pass
    _instance = None
    _attached.clear()
