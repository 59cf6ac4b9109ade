"""SimBroker: the embedded, deterministic venue replaying real daily bars (SPEC §2).

A peer of AlpacaBroker behind ``Broker``. Its whole state (simulated clock, cash,
positions, orders, fills, pending faults) lives in its own DuckDB file, changed one
transaction per call, so a restarted process, or a notebook kernel and the demo
process taking turns, see the same account. Prices come from ``path`` (seeded
intraday path over adjusted bars), matching from ``orders``, acceptance from ``accept``;
the Broker calls are ``order_desk`` (orders) and ``reads`` (clock, account, positions,
quotes, bars) over ``access`` (the state file, one transaction per call, faults).

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

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tradebook import sessions
from tradebook.broker.base import Order, Position
from tradebook.broker.sim import orders as match
from tradebook.broker.sim import path as prices
from tradebook.broker.sim import state
from tradebook.broker.sim import venue
from tradebook.broker.sim.accept import CANCEL_FAULTS, FAULT_OPS, READ_FAULTS, SUBMIT_FAULTS
from tradebook.broker.sim.order_desk import SimOrderDesk
from tradebook.broker.sim.reads import SimReads
from tradebook.broker.sim.state import Fill
from tradebook.broker.sim.store import SimStore
from tradebook.errors import CalendarError

if TYPE_CHECKING:
    from tradebook.params import Params

__all__ = ["SimBroker", "Fill", "preload", "SUBMIT_FAULTS", "READ_FAULTS", "FAULT_OPS"]


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


class SimBroker(SimOrderDesk, SimReads):
    """The simulated venue. Cheap to construct; the state file is created on first use.

    Its order calls are ``order_desk``, its reads ``reads``, its state access ``access``;
    here: construction from params and the simulator's own controls (clock, faults, positions).
    """

    name = "sim"

    @classmethod
    def from_params(cls, params: "Params", root: Path | None = None) -> "SimBroker":
        """The SimBroker of ``params.sim``, state in ``params.sim_state_path(root)``."""
        sim = params.sim
        return cls(params.sim_state_path(root), start_date=sim.start_date, starting_cash=sim.starting_cash,
                   spread_bps=sim.spread_bps, seed=sim.seed, fractionable=tuple(sim.fractionable),
                   cancel_polls=sim.cancel_polls, wash_trade_check=sim.wash_trade_check)

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
