"""SimBroker: the embedded, deterministic venue replaying real daily bars (SPEC §2).

A peer of AlpacaBroker behind ``Broker``. Its whole state (simulated clock, cash,
positions, orders, fills, pending faults) lives in its own DuckDB file, changed one
transaction per call, so a restarted process, or a notebook kernel and the demo
process taking turns, see the same account. Prices come from ``sim_path`` (seeded
intraday path over adjusted bars), matching from ``sim_orders``.

Venue rules (chosen to mirror Alpaca):
- Market orders fill at the ask (buy) / bid (sell) at submit time when the market is
  open. Sent while closed they are *accepted* and fill at the next open's first quote.
- Limit orders fill when the path crosses the limit between submit and the time the
  clock is advanced to; a marketable limit fills at once at the better quote.
- Day orders expire at their session's close; gtc orders stay open; ioc orders fill
  what they can at submit and cancel the rest.
- Fractional qty only for ``sim.fractionable`` symbols and day orders.
- Cash account: buying power = cash - open buy orders' remaining notional (limit
  price, or the ask at submit for market orders); no shorts.
- Rejections raise (BrokerRejected and subclasses) and leave nothing at the venue, as
  Alpaca's 403/422 do; ``get_order`` then returns None.
- Cancelling an unknown order raises BrokerRejected(code ORDER_NOT_FOUND), an order no
  longer open BrokerRejected(code ORDER_NOT_CANCELABLE) (Alpaca's 404/422).
- A buy whose fill would cost more than the cash left (a market order queued overnight
  that gaps up) is marked rejected at fill time with a reason; cash never goes negative.
- Faults (``inject_fault``) are persisted and consumed one per call of their op:
  http_500/503/429 -> BrokerUnavailable, nothing recorded; timeout_after_accept -> the
  order is processed, then OrderOutcomeUnknown; reject_buying_power / fractional_reject
  -> business rejects; partial_fill -> the order's next fill is half, the rest stays
  open (no more fills) until it expires or is cancelled; cancel_fill_race (op cancel)
  -> the cancel is accepted, then the order fills first.
- Real-venue habits, switchable (VEN-2, sim_venue): asynchronous cancels
  (``cancel_polls``), wash-trade refusals (``wash_trade_check``).
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from tradebook import sessions
from tradebook.broker.sim import orders as match
from tradebook.broker.sim import path as prices
from tradebook.broker.sim import state
from tradebook.broker.base import (Account, Asset, CancelResult, Clock, Order, OrderRequest, Position,
                                   Quote, Session, to_qty)
from tradebook.broker.sim import venue
from tradebook.broker.sim.accept import CANCEL_FAULTS, FAULT_OPS, READ_FAULTS, SUBMIT_FAULTS, accept, fault_error
from tradebook.broker.sim.state import Fill
from tradebook.broker.sim.store import SimStore
from tradebook.errors import BrokerRejected, CalendarError, ConfigError, OrderOutcomeUnknown

if TYPE_CHECKING:
    import pandas as pd

    from tradebook.params import Params

__all__ = ["SimBroker", "Fill", "preload", "SUBMIT_FAULTS", "READ_FAULTS", "FAULT_OPS"]
DAY_START = time(8, 0)   # a new simulated account starts at 08:00 exchange time


def _fault_pending(book: state.Book, op: str | None) -> bool:
    return any(f[0] == op and f[2] > 0 for f in book.faults)


def preload(symbols: tuple[str, ...] = ("AAPL", "GOOG", "IBM", "MSFT", "FB")) -> None:
    """Load the calendar and bars now (~1 s once per process), e.g. in a kernel pool before forking."""
    sessions.table()
    for symbol in symbols:
        prices.symbol_bars(symbol)


def stored_now(path: str | Path, lock_timeout_s: float = 15.0) -> datetime | None:
    """The simulated time kept in the state file at ``path``, read without params or a seed check
    (a halt whose params are invalid still takes the simulation's time); None for a new state."""
    with SimStore(path, lock_timeout_s).attached() as con:
        meta = state.read_meta(con)
    return state.from_us(meta[1]) if meta else None


class SimBroker:
    """The simulated venue. Cheap to construct; the state file is created on first use."""

    name = "sim"

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

    @classmethod
    def from_params(cls, params: "Params", root: Path | None = None) -> "SimBroker":
        """The SimBroker of ``params.sim``, state in ``params.sim_state_path(root)``."""
        sim = params.sim
        return cls(params.sim_state_path(root), start_date=sim.start_date, starting_cash=sim.starting_cash,
                   spread_bps=sim.spread_bps, seed=sim.seed, fractionable=tuple(sim.fractionable),
                   cancel_polls=sim.cancel_polls, wash_trade_check=sim.wash_trade_check)

    # --- state plumbing -----------------------------------------------------------------
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
            if not _fault_pending(book, op):
                self._check_seed(book.seed)
                return body(book)
        return self._call(op, lambda con, loaded: body(loaded))

    def _mid(self, symbol: str, book: state.Book) -> float:
        point = prices.price_at(symbol, book.now_us / state.US, self.seed)
        return point.mid if point else 0.0

    # --- Broker protocol: reads -----------------------------------------------------------
    def now(self) -> datetime:
        """The simulated time (exchange time)."""
        return self._read(None, lambda book: state.from_us(book.now_us))

    def clock(self) -> Clock:
        """The simulated clock (is_open, next_open, next_close as Alpaca reports them)."""
        now = self.now()
        current = sessions.current_or_next_session(now)
        return Clock(now=now, is_open=current.open <= now < current.close,
                     next_open=sessions.next_session(now).open, next_close=current.close)

    def account(self) -> Account:
        """Cash, equity at current mids, buying power (cash minus reserved buy notional) and
        last_equity: the equity at the previous session's close, as Alpaca reports it."""
        def body(book):
            equity = book.cash + sum(q * self._mid(s, book) for s, (q, _) in book.positions.items())
            return Account(equity=equity, cash=book.cash,
                           buying_power=max(0.0, book.cash - match.reserved_cash(book)),
                           fractional_enabled=bool(self.fractionable), last_equity=self._last_equity(book))
        return self._read("account", body)

    def _last_equity(self, book: state.Book) -> float | None:
        """The previous close's equity; read from the fills only when today's cash or positions changed."""
        key = (state.from_us(book.now_us).date(), book.cash, tuple(sorted(book.positions.items())))
        cached = getattr(self, "_last_equity_cache", None)
        if cached is None or cached[0] != key:
            value = self._call(None, lambda con, loaded: self._close_equity(con, loaded))
            cached = self._last_equity_cache = (key, value)
        return cached[1]

    def _close_equity(self, con: Any, book: state.Book) -> float | None:
        """Equity at the close of the session before today's: today's fills undone, previous closes."""
        today = state.from_us(book.now_us).date()
        previous = sessions.previous_session(today)
        if previous is None:
            return None
        close_us = state.to_us(previous.close)
        cash, qty = book.cash, {s: q for s, (q, _) in book.positions.items()}
        for f in state.load_fills(con):
            if state.to_us(f.ts) <= close_us:
                continue
            sign = 1.0 if f.side == "buy" else -1.0
            cash += sign * f.qty * f.price
            qty[f.symbol] = qty.get(f.symbol, 0.0) - sign * f.qty
        marks = {s: prices.price_at(s, close_us / state.US - 1, self.seed) for s in qty}
        return cash + sum(q * (marks[s].mid if marks[s] else 0.0) for s, q in qty.items())

    def positions(self) -> list[Position]:
        """Held positions with avg_price and the current mid as market_price."""
        def body(book):
            return [Position(s, q, p, self._mid(s, book)) for s, (q, p) in sorted(book.positions.items())]
        return self._read("positions", body)

    def open_orders(self) -> list[Order]:
        if self._cancels_pending():
            return self._call("open_orders", lambda con, book: self._polled(con, book, None))
        return self._read("open_orders", lambda book: [match.to_order(o) for o in book.open_orders])

    def _cancels_pending(self) -> bool:
        snap = self.store.recall()
        return snap is None or venue.cancels_pending(state.book_from(*snap, copy=False).faults)

    def _polled(self, con, book: state.Book, cid: str | None):
        """A look-up that also lets pending cancels progress (VEN-2); open orders, or one order."""
        if venue.progress(book, lambda row: self._race_price(row, book)):
            self.store.save(con, book)
        if cid is None:
            return [match.to_order(o) for o in state.open_rows(book)]
        rows = state.load_orders(con, "client_order_id = ?", [cid])
        return match.to_order(rows[0]) if rows else None

    def _race_price(self, row, book: state.Book) -> float:
        if row.limit_price is not None:
            return row.limit_price
        bid, ask = prices.bid_ask(self._mid(row.symbol, book), self.spread_bps)
        return ask if row.side == "buy" else bid

    def get_order(self, client_order_id: str) -> Order | None:
        """Any order (open or final) by client id; None when the venue never accepted it."""
        if self._cancels_pending():
            return self._call("get_order", lambda con, book: self._polled(con, book, client_order_id))
        snap = self.store.recall()
        if snap is not None and not _fault_pending(state.book_from(*snap, copy=False), "get_order"):
            for row in snap[1]:                  # the common poll: an order still open
                if row.client_order_id == client_order_id:
                    return match.to_order(row)

        def body(con, book):
            rows = state.load_orders(con, "client_order_id = ?", [client_order_id])
            return match.to_order(rows[0]) if rows else None
        return self._call("get_order", body)

    def fills(self) -> list[Fill]:
        """Every fill so far in time order (extra, for tests, demos and reports)."""
        return self._call(None, lambda con, book: state.load_fills(con))

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """Bid/ask around the path price now; symbols without data yet (not listed) are left out."""
        def body(book):
            now = state.from_us(book.now_us)
            quotes = {s: prices.quote(s, now, self.seed, self.spread_bps) for s in symbols}
            return {s: q for s, q in quotes.items() if q is not None}
        for symbol in symbols:
            prices.symbol_bars(symbol)  # UnknownSymbol for data the simulator does not have
        return self._read("quotes", body)

    def daily_bars(self, symbols: list[str], start: date, end: date) -> "pd.DataFrame":
        """Adjusted daily bars up to the last *closed* session: today's bar only after the close."""
        closed = sessions.last_closed_session(self.now())
        return prices.bars_through(symbols, start, min(end, closed.day) if closed else date.min)

    def asset(self, symbol: str) -> Asset:
        """Tradable while the replayed data covers the current (or next) session."""
        prices.symbol_bars(symbol)
        day = sessions.current_or_next_session(self.now()).day
        return Asset(symbol, prices.has_data(symbol, day), symbol in self.fractionable)

    def calendar(self, start: date, end: date) -> list[Session]:
        return sessions.sessions(start, end)

    def session_times(self, day: date) -> Session:
        """The session on ``day``; CalendarError when the exchange is closed that day."""
        session = sessions.session_on(day)
        if session is None:
            raise CalendarError(f"{day} is not an {sessions.EXCHANGE} trading session")
        return session

    def first_session_on_or_after(self, day: date) -> Session:
        return sessions.first_session_on_or_after(day)

    # --- Broker protocol: orders ------------------------------------------------------------
    def submit(self, request: OrderRequest) -> Order:
        """Send an order to the simulated venue (rules in the module docstring)."""
        return self._submit(lambda book: request, liquidation=False)

    def close_position(self, symbol: str, client_order_id: str) -> Order | None:
        """Market-sell the whole position; None when nothing is held."""
        def build(book):
            held = book.positions.get(symbol)
            if not held or held[0] <= 0:
                return None
            return OrderRequest(symbol, "sell", to_qty(held[0]), client_order_id, order_type="market")
        return self._submit(build, liquidation=True)

    def _submit(self, build: Callable[[state.Book], OrderRequest | None], liquidation: bool) -> Order | None:
        pending: Exception | None = None
        order = None
        with self._book() as (con, book):
            fault = state.pop_fault(book, "submit")
            pending = fault_error(fault, "submit") if fault else None
            request = None if pending else build(book)
            try:
                if request is not None:
                    order = accept(self, con, book, request, partial=fault == "partial_fill",
                                   liquidation=liquidation)
            except BrokerRejected as exc:
                pending = exc     # raised after the commit, so the consumed fault stays consumed
            if fault == "timeout_after_accept":
                cid = request.client_order_id if request else "?"
                pending = OrderOutcomeUnknown(f"submit of {cid} timed out after the simulated venue received "
                                              "it (injected fault); look the order up by client_order_id")
            if fault or order is not None:
                self.store.save(con, book)
        if pending is not None:
            raise pending
        return order

    def cancel(self, client_order_id: str) -> None:
        """Ask to cancel an open order (BrokerRejected when unknown or no longer open); with
        ``cancel_polls`` the order goes to pending_cancel first (VEN-2)."""
        with self._book() as (con, book):
            fault = state.pop_fault(book, "cancel")
            error = fault_error(fault, "cancel") if fault else None
            if error is None:
                rows = [o for o in book.open_orders if o.client_order_id == client_order_id] or \
                    state.load_orders(con, "client_order_id = ?", [client_order_id])
                if not rows:
                    error = BrokerRejected(f"order {client_order_id} not found", code="ORDER_NOT_FOUND")
                elif rows[0].status not in state.OPEN_DB_STATUSES:
                    error = BrokerRejected(f"order {client_order_id} is not cancelable (status {rows[0].status})",
                                           code="ORDER_NOT_CANCELABLE")
                else:
                    venue.request_cancel(book, rows[0], self.cancel_polls, race=fault == "cancel_fill_race")
            self.store.save(con, book)
        if error is not None:
            raise error

    def cancel_all(self) -> CancelResult:
        """Ask to cancel every open order (asynchronous with ``cancel_polls``)."""
        def body(con, book):
            for row in book.open_orders:
                venue.request_cancel(book, row, self.cancel_polls, race=False)
            self.store.save(con, book)
            return CancelResult(tuple(o.client_order_id for o in book.open_orders))
        return self._call("cancel", body)

    # --- simulator controls -----------------------------------------------------------------
    def advance_to(self, dt: datetime) -> list[Order]:
        """Move the clock forward to ``dt``, filling and expiring orders along the path.

        Returns the orders that changed on the way (fills, partial fills, expiries).
        """
        target = state.to_us(dt)

        def body(con, book):
            start = book.now_us
            if target < book.now_us:
                raise CalendarError(f"the simulated clock is at {state.from_us(book.now_us)}; it cannot move "
                                    f"back to {dt}")
            changed = match.advance(book, target, self.seed, self.spread_bps, self.fractionable)
            if target > start and venue.cancels_pending(book.faults):   # the cancel lands once time moves
                venue.progress(book, lambda row: self._race_price(row, book), all_now=True)
                changed = sorted(book.changed.values(), key=lambda o: o.seq)
            self.store.save(con, book)
            return [match.to_order(o) for o in changed]
        return self._call(None, body)

    def inject_fault(self, kind: str, times: int = 1, op: str = "submit") -> None:
        """Make the next ``times`` calls of ``op`` fail with ``kind`` (persisted, one per call)."""
        if op not in FAULT_OPS:
            raise ValueError(f"fault op must be one of {', '.join(FAULT_OPS)}, not {op!r}")
        allowed = SUBMIT_FAULTS if op == "submit" else CANCEL_FAULTS if op == "cancel" else READ_FAULTS
        if kind not in allowed:
            raise ValueError(f"fault kind for {op} must be one of {', '.join(allowed)}, not {kind!r}")
        if times < 1:
            raise ValueError("times must be >= 1")

        def body(con, book):
            book.faults.append([op, kind, int(times)])
            self.store.save(con, book)
        self._call(None, body)

    def clear_faults(self) -> None:
        """Drop every injected fault not yet consumed (pending cancels stay: they are venue state)."""
        def body(con, book):
            book.faults[:] = [f for f in book.faults if f[0] == venue.CANCEL_KEY]
            self.store.save(con, book)
        self._call(None, body)

    def seed_position(self, symbol: str, qty: float, avg_price: float) -> Position:
        """Set a position as if changed outside tradebook (cash untouched); EXTERNAL reconcile tests."""
        prices.symbol_bars(symbol)
        if qty <= 0 or avg_price <= 0:
            raise ValueError("seed_position needs qty > 0 and avg_price > 0 (use drop_position to remove)")

        def body(con, book):
            book.positions[symbol] = [round(float(qty), 9), float(avg_price)]
            self.store.save(con, book)
            return Position(symbol, book.positions[symbol][0], float(avg_price), self._mid(symbol, book))
        return self._call(None, body)

    def drop_position(self, symbol: str) -> None:
        """Remove a position as if closed outside tradebook (cash untouched)."""
        def body(con, book):
            book.positions.pop(symbol, None)
            self.store.save(con, book)
        self._call(None, body)
