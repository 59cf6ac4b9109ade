"""A DuckDB instance never crosses a fork: a forked child abandons its parent's copy.

A child made by ``os.fork`` (the sweep's process pool, a test, a user's multiprocessing)
gets a copy of every in-memory DuckDB instance of its parent, but none of its threads
(scheduler, checkpointer) and maybe mutexes held by threads that no longer exist.
Destroying that copy -- at the child's normal exit, or when its last reference goes --
joins threads that are not there: ``terminate called without an active exception``
(SIGABRT) or a segfault. Closing or using it could checkpoint files the parent is still
writing. So the child keeps the copy referenced forever (one intentional reference leak:
its memory is copy-on-write pages the child already had) and makes its own instance.

Shared by the ledger (``ledger/attach.py``) and the simulated venue (``broker/sim/store.py``),
which must not import each other.
"""
from __future__ import annotations

import ctypes
from typing import Any

_abandoned: list[Any] = []   # what this process inherited and will never close or destroy


def abandon(obj: Any) -> None:
    """Keep ``obj`` (a parent's DuckDB connection or cursor) alive for the rest of this process.

    The list alone is not enough: the interpreter clears module globals at exit, which
    would run the destructor after all. The extra reference is never given back.
    """
    _abandoned.append(obj)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def is_abandoned(obj: Any) -> bool:
    """True for an object inherited from the parent process (never to be used or closed here)."""
    return any(obj is kept for kept in _abandoned)
