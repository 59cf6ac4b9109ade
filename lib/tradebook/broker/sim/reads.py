"""SimBroker's reads of the Broker protocol: clock, account, positions, fills, quotes, bars, calendar.

The account is cash plus positions at current mids; buying power is cash minus the
notional reserved by open buy orders; ``last_equity`` is the previous session's close
equity, as Alpaca reports it. Daily bars stop at the last *closed* session.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from tradebook import sessions
from tradebook.broker.base import Account, Asset, Clock, Position, Quote, Session
from tradebook.broker.sim import orders as match
from tradebook.broker.sim import path as prices
from tradebook.broker.sim import state
from tradebook.broker.sim.access import StateAccess
from tradebook.broker.sim.state import Fill
from tradebook.errors import CalendarError

if TYPE_CHECKING:
    import pandas as pd


class SimReads(StateAccess):
    """The reading half of SimBroker (its orders are ``order_desk``)."""

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
