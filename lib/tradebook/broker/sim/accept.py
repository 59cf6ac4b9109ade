"""What the simulated venue does with a new order: validate, reserve, record, fill if it can.

Every check runs before anything changes, so a rejected order leaves no trace (like
Alpaca's 403/422 answers). Reject codes follow ``BrokerRejected.code``:
INSUFFICIENT_BUYING_POWER, INSUFFICIENT_QTY, ASSET_NOT_TRADABLE, plus the
DuplicateClientOrderId / FractionalNotSupported / UnknownSymbol subclasses.
"""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from tradebook import sessions
from tradebook.broker.sim import orders as match
from tradebook.broker.sim import path as prices
from tradebook.broker.sim import state
from tradebook.broker.base import Order, OrderRequest
from tradebook.errors import (BrokerRejected, BrokerUnavailable, DuplicateClientOrderId, FractionalNotSupported)

if TYPE_CHECKING:
    from tradebook.broker.sim.access import StateAccess

SUBMIT_FAULTS = ("timeout_after_accept", "http_500", "http_503", "http_429", "reject_buying_power",
                 "partial_fill", "fractional_reject")
READ_FAULTS = ("http_500", "http_503", "http_429")
CANCEL_FAULTS = READ_FAULTS + ("cancel_fill_race",)   # VEN-2: the order fills before the cancel lands
FAULT_OPS = ("submit", "get_order", "positions", "account", "open_orders", "cancel", "quotes")


def accept(sim: "StateAccess", con, book: state.Book, request: OrderRequest, *, partial: bool,
           liquidation: bool) -> Order:
    """Validate and record ``request`` in the book (the caller saves it); fill it at once when the
    market is open and it is marketable."""
    i, bid, ask = _validate(sim, con, book, request, liquidation)
    table = sessions.table()
    is_open = table.opens[i] * state.US <= book.now_us < table.closes[i] * state.US
    limit = float(request.limit_price) if request.limit_price is not None else None
    book.order_seq += 1
    row = state.OrderRow(
        seq=book.order_seq, client_order_id=request.client_order_id, broker_id=broker_id(sim.seed, book.order_seq),
        symbol=request.symbol, side=request.side, qty=float(request.qty), order_type=request.order_type,
        limit_price=limit, tif=request.time_in_force, status="new" if is_open else "accepted", filled_qty=0.0,
        filled_avg_price=None, submitted_us=book.now_us, updated_us=book.now_us,
        active_from_us=book.now_us if is_open else table.opens[i] * state.US,
        expires_us=table.closes[i] * state.US if request.time_in_force == "day" else None,
        reserve_price=limit if limit is not None else ask, partial=partial)
    book.new_orders.append(row)
    if is_open and match.crosses(row.side, limit, bid, ask):
        price = ask if row.side == "buy" else bid
        match.apply_fill(book, row, match.fill_qty(row, row.symbol in sim.fractionable), price, book.now_us)
    if row.tif == "ioc" and row.status in state.OPEN_DB_STATUSES:
        match.finish(book, row, "canceled", book.now_us)
    return match.to_order(row)


def broker_id(seed: int, seq: int) -> str:
    """Deterministic venue order id: the same seed and sequence give the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tradebook-sim/{seed}/{seq}"))


def _validate(sim: "StateAccess", con, book: state.Book, request: OrderRequest,
              liquidation: bool) -> tuple[int, float, float]:
    """Every venue check, before anything changes: (session index, bid, ask) when accepted."""
    if not isinstance(request, OrderRequest):
        raise TypeError("submit takes a tradebook.broker.base.OrderRequest")
    if con.execute("SELECT 1 FROM sim_orders WHERE client_order_id = ?", [request.client_order_id]).fetchone():
        raise DuplicateClientOrderId(f"client_order_id {request.client_order_id} must be unique "
                                     "(the venue already has an order with it; look it up)")
    table = sessions.table()
    now_s = book.now_us / state.US
    i = table.closing_after(now_s)          # the session this order trades in
    if i >= len(table):
        raise BrokerRejected(f"no {sessions.EXCHANGE} session after {state.from_us(book.now_us)} in the calendar",
                             code="ASSET_NOT_TRADABLE")
    _check_asset(sim, request, table.days[i], liquidation)
    point = prices.price_at(request.symbol, now_s, sim.seed)
    if point is None:
        raise BrokerRejected(f"asset {request.symbol} has no price yet", code="ASSET_NOT_TRADABLE")
    bid, ask = prices.bid_ask(point.mid, sim.spread_bps)
    reserve = float(request.limit_price) if request.limit_price is not None else ask
    if sim.wash_trade_check:
        from tradebook.broker.sim.venue import check_wash_trade

        check_wash_trade(book, request.symbol, request.side,
                         None if request.limit_price is None else float(request.limit_price))
    _check_funds(book, request, float(request.qty), reserve)
    return i, bid, ask


def _check_asset(sim: "StateAccess", request: OrderRequest, day, liquidation: bool) -> None:
    prices.symbol_bars(request.symbol)      # UnknownSymbol for data the simulator does not have
    if not prices.has_data(request.symbol, day) and not liquidation:
        raise BrokerRejected(f"asset {request.symbol} is not tradable on {day} (outside the replayed data)",
                             code="ASSET_NOT_TRADABLE")
    if request.qty == request.qty.to_integral_value() or liquidation:
        return  # closing a fractional position is always allowed, as at Alpaca
    if request.symbol not in sim.fractionable:
        raise FractionalNotSupported(f'asset "{request.symbol}" is not fractionable')
    if request.time_in_force != "day":
        raise FractionalNotSupported("fractional orders must be DAY orders")


def _check_funds(book: state.Book, request: OrderRequest, qty: float, reserve: float) -> None:
    if request.side == "buy":
        buying_power = book.cash - match.reserved_cash(book)
        cost = qty * reserve
        if cost > buying_power + 1e-6:
            raise BrokerRejected(f"insufficient buying power (buying_power {buying_power:.2f}, "
                                 f"cost_basis {cost:.2f})", code="INSUFFICIENT_BUYING_POWER")
        return
    held = book.positions.get(request.symbol, [0.0, 0.0])[0]
    available = held - match.reserved_qty(book, request.symbol)
    if qty > available + match.EPS:
        held_for_orders = match.reserved_qty(book, request.symbol)
        raise BrokerRejected(f"insufficient qty available for order (requested: {qty:g}, "
                             f"available: {max(available, 0.0):g}); held_for_orders {held_for_orders:g}, "
                             "the venue allows no shorts", code="INSUFFICIENT_QTY")


def fault_error(kind: str, op: str) -> Exception | None:
    """The exception an injected fault turns into (None for faults that do not raise at once)."""
    where = f"simulated venue, injected fault on {op}"
    return {
        "http_500": BrokerUnavailable(f"HTTP 500 internal server error ({where}); nothing was recorded"),
        "http_503": BrokerUnavailable(f"HTTP 503 service unavailable ({where}); nothing was recorded"),
        "http_429": BrokerUnavailable(f"HTTP 429 too many requests ({where}); nothing was recorded"),
        "reject_buying_power": BrokerRejected(f"insufficient buying power ({where})",
                                              code="INSUFFICIENT_BUYING_POWER"),
        "fractional_reject": FractionalNotSupported(f"fractional orders are not accepted ({where})"),
    }.get(kind)
