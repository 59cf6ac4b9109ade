"""The API circuit breaker (EXE-4), with its failure count shared across processes.

Every phase run (reconcile, decide, execute, monitor tick) is a new process, so a count kept
in memory never reaches the threshold when failures are spread over several runs. The
breaker therefore keeps its state in a small JSON file (``BreakerFile``, under runs/), read
and rewritten under an exclusive ``flock`` on each change: failures of every process within
the window add up, and a breaker opened by one process is open for the next one too.

Times are wall-clock epoch seconds (``time.time``) because they cross process boundaries.
The broker layer never imports the ledger: telling the rest of the system (REDUCE_ONLY) is
the ``on_open`` callback's job, wired by the factory.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

log = logging.getLogger("tradebook.broker.alpaca")


@dataclass
class BreakerState:
    failures: list[float] = field(default_factory=list)   # epoch seconds of recent failures
    opened_at: float | None = None
    last_failure: float = 0.0
    reason: str = ""


class BreakerStore(Protocol):
    def update(self) -> AbstractContextManager[BreakerState]:
        """Read-modify-write of the state under a lock."""


class MemoryStore:
    """One process only (tests, ad-hoc scripts)."""

    def __init__(self) -> None:
        self._state, self._lock = BreakerState(), threading.Lock()

    @contextmanager
    def update(self) -> Iterator[BreakerState]:
        with self._lock:
            yield self._state


class BreakerFile:
    """The breaker state in a JSON file; every update holds an exclusive flock on a sibling lock file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BreakerFile({str(self.path)!r})"

    def _read(self) -> BreakerState:
        try:
            raw = json.loads(self.path.read_text())
            return BreakerState([float(t) for t in raw.get("failures", [])], raw.get("opened_at"),
                                float(raw.get("last_failure", 0.0)), str(raw.get("reason", "")))
        except FileNotFoundError:
            return BreakerState()
        except (ValueError, TypeError, AttributeError) as exc:   # a damaged file must not stop trading logic
            log.warning("API breaker file %s unreadable (%s); starting from an empty count", self.path, exc)
            return BreakerState()

    def _write(self, state: BreakerState) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(asdict(state)))
        os.replace(tmp, self.path)

    @contextmanager
    def update(self) -> Iterator[BreakerState]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.with_suffix(self.path.suffix + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self._read()
                before = asdict(state)
                yield state
                if asdict(state) != before:
                    self._write(state)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class ReadOnlyBreakerFile(BreakerFile):
    """The shared state as seen by a read-only command (status, health, doctor): read, never written.

    A monitoring cron running `tradebook status` against a broker that is down must not open
    the trading breaker (EXE-4 counts failures of the processes that trade). It still sees a
    breaker opened by those processes. The writer replaces the file atomically, so no lock is
    needed to read it, and nothing (not even runs/) is created.
    """

    def __repr__(self) -> str:
        return f"ReadOnlyBreakerFile({str(self.path)!r})"

    @contextmanager
    def update(self) -> Iterator[BreakerState]:
        yield self._read()   # changes made by the caller are dropped


class CircuitBreaker:
    """EXE-4: ``failures`` transient failures within ``window_s`` open it; ``on_open(reason)`` is told once.

    While open, the adapter reports it (``circuit_open``; CircuitOpen instead of a blind resubmit) and
    the order path runs reduce-only (EXE-4). It closes on the first
    successful call made at least ``window_s`` after the last failure. With a ``BreakerFile``
    store the count and the open state are shared by every process using the same file.
    """

    def __init__(self, failures: int, window_s: float, on_open: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time, store: BreakerStore | None = None):
        self.failures, self.window_s = failures, window_s
        self._on_open, self._clock = on_open, clock
        self.store = store or MemoryStore()

    @property
    def is_open(self) -> bool:
        with self.store.update() as state:
            return state.opened_at is not None

    @property
    def reason(self) -> str:
        with self.store.update() as state:
            return state.reason

    def record_failure(self, label: str) -> None:
        now, opened = self._clock(), None
        with self.store.update() as state:
            state.last_failure = now
            if state.opened_at is not None:
                return
            state.failures = [t for t in state.failures if t >= now - self.window_s] + [now]
            if len(state.failures) >= self.failures:
                state.opened_at = now
                state.reason = opened = (f"API circuit breaker open: {len(state.failures)} failures in "
                                         f"{self.window_s:g}s (last: {label})")
        if opened:
            log.error("%s; reported to the order path: reduce-only until it closes", opened)
            self._notify(opened)

    def _notify(self, reason: str) -> None:
        if self._on_open is None:
            return
        try:
            self._on_open(reason)
        except Exception as exc:   # the order path still reads circuit_open; make the failure loud
            log.error("on_circuit_open callback failed: %s: %s", type(exc).__name__, exc)

    def record_success(self) -> None:
        closed = False
        with self.store.update() as state:
            if state.opened_at is not None and self._clock() - state.last_failure >= self.window_s:
                state.opened_at, state.reason, state.failures, closed = None, "", [], True
        if closed:
            log.warning("API circuit breaker closed: a call succeeded %.0fs after the last failure", self.window_s)

    def status(self) -> dict[str, object]:
        with self.store.update() as state:
            recent = [t for t in state.failures if t >= self._clock() - self.window_s]
            return {"open": state.opened_at is not None, "reason": state.reason, "recent_failures": len(recent)}
