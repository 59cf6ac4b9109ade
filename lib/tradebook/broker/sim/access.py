"""SimBroker's access to its state file: one transaction per call, injected faults consumed.

Every call of the simulated venue goes through ``StateAccess``: the state file attached
and loaded (a brand-new account created on first use, the seed checked against the
params), the body run on a private copy of the book, or an injected fault raised
instead (consumed even though the call fails). Reads that change nothing are answered
from the in-memory snapshot while the state is unchanged.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Callable, Iterator

from tradebook import sessions
from tradebook.broker.sim import path as prices
from tradebook.broker.sim import state
from tradebook.broker.sim.accept import fault_error
from tradebook.broker.sim.store import SimStore
from tradebook.errors import ConfigError

DAY_START = time(8, 0)   # a new simulated account starts at 08:00 exchange time


def fault_pending(book: state.Book, op: str | None) -> bool:
    """An injected fault for ``op`` is still to fire (so the snapshot cannot answer)."""
    return any(f[0] == op and f[2] > 0 for f in book.faults)


class StateAccess:
    """The venue's configuration and its state file; the base of SimBroker's order desk and reads."""

    def __init__(self, state_path: str | Path, *, start_date: date = date(2011, 7, 1),
                 starting_cash: float = 100_000.0, spread_bps: float = 4.0, seed: int = 7,
                 fractionable: tuple[str, ...] | list[str] = ("AAPL", "GOOG", "IBM", "MSFT"),
                 lock_timeout_s: float = 15.0, cancel_polls: int = 0, wash_trade_check: bool = False):
        self.store = SimStore(state_path, lock_timeout_s)
        self.start_date = start_date
        self.starting_cash = float(starting_cash)
        self.spread_bps = float(spread_bps)
        self.seed = int(seed)
        self.fractionable = frozenset(fractionable)
        self.cancel_polls = int(cancel_polls)           # VEN-2: 0 = cancels confirmed at once
        self.wash_trade_check = bool(wash_trade_check)  # VEN-2: refuse orders crossing our own

    @contextmanager
    def _book(self) -> Iterator[tuple[Any, state.Book]]:
        """The state file attached and loaded (creating a brand-new account if needed).

        The book is a private copy: the call may change it and save it with ``store.save``.
        """
        with self.store.attached() as con:
            snap = self.store.recall()
            if snap is None:
                meta = state.read_meta(con) or self._create(con)
                snap = (meta, state.load_orders(con))
                self.store.remember(*snap)
            self._check_seed(snap[0][0])
            yield con, state.book_from(*snap, copy=True)

    def _create(self, con) -> tuple:
        first = sessions.first_session_on_or_after(self.start_date)
        start = datetime.combine(first.day, DAY_START, sessions.EXCHANGE_TZ)
        return self.store.create(con, self.seed, state.to_us(start), self.starting_cash, self.start_date)

    def _check_seed(self, seed: int) -> None:
        if seed != self.seed:
            raise ConfigError(f"sim.seed: the sim state {self.store.path} was created with seed {seed}, "
                              f"params say {self.seed}; use the same seed or move the file aside")

    def _call(self, op: str | None, body: Callable[[Any, state.Book], Any]) -> Any:
        """Run ``body`` on the attached state, unless an injected fault for ``op`` fires instead."""
        with self._book() as (con, book):
            fault = state.pop_fault(book, op) if op else None
            if fault:
                self.store.save(con, book)   # the fault is consumed even though the call fails
            result = None if fault else body(con, book)
        if fault:
            raise fault_error(fault, op)
        return result

    def _read(self, op: str | None, body: Callable[[state.Book], Any]) -> Any:
        """A read-only call: from the snapshot while the state is unchanged, else via the file."""
        snap = self.store.recall()
        if snap is not None:
            book = state.book_from(*snap, copy=False)
            if not fault_pending(book, op):
                self._check_seed(book.seed)
                return body(book)
        return self._call(op, lambda con, loaded: body(loaded))

    def _mid(self, symbol: str, book: state.Book) -> float:
        point = prices.price_at(symbol, book.now_us / state.US, self.seed)
        return point.mid if point else 0.0
