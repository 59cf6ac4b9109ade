"""alpaca-py models ⇄ tradebook broker types (pure functions, no I/O).

Trading API answers are read raw (alpaca-py with ``raw_data=True``) and parsed here field by
field, item by item: alpaca-py's models reject a whole list when one item carries an enum
value they lack (``asset_class: ipo``, a new order status). Money arrives as decimal
strings; results are floats (broker/base.py).
Order quantities and prices leave as floats built from our quantised Decimals (the SDK
serialises qty, notional and limit_price as JSON floats).
"""
from __future__ import annotations

import logging
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from zoneinfo import ZoneInfo

from tradebook.broker.base import Account, Asset, Clock, Order, OrderRequest, Position, Quote, Session

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("tradebook.broker.alpaca")
T = TypeVar("T")

NY = ZoneInfo("America/New_York")
EQUITY = "us_equity"


def _f(value: Any, default: float = 0.0) -> float:
    return default if value is None or value == "" else float(value)


def _ts(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (Z or offset, up to nanoseconds) as an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def to_account(acct: dict[str, Any], fractional: bool, allow_margin: bool = False) -> Account:
    """GATE-11 spends non-marginable buying power (cash) unless params say ``allow_margin: true``.

    Alpaca paper accounts are margin accounts: ``buying_power`` is about 2x cash there.
    """
    margin_bp = _f(acct.get("buying_power"))
    cash_bp = acct.get("non_marginable_buying_power")
    bp = margin_bp if allow_margin or cash_bp in (None, "") else min(_f(cash_bp), margin_bp)
    return Account(equity=_f(acct.get("equity")), cash=_f(acct.get("cash")), buying_power=bp,
                   currency=acct.get("currency") or "USD", status=str(acct.get("status") or ""),
                   fractional_enabled=fractional,
                   last_equity=_f(acct["last_equity"]) if acct.get("last_equity") not in (None, "") else None)


def to_position(pos: dict[str, Any]) -> Position:
    """One item of GET /v2/positions (raw JSON; unknown asset classes are kept, never traded)."""
    qty = _f(pos["qty"])
    if pos.get("side") == "short" and qty > 0:
        qty = -qty
    avg = _f(pos["avg_entry_price"])
    return Position(symbol=str(pos["symbol"]), qty=qty, avg_price=avg, market_price=_f(pos.get("current_price"), avg),
                    asset_class=str(pos.get("asset_class") or EQUITY))


def to_order(order: dict[str, Any]) -> Order:
    """One Order object (raw JSON). Unknown statuses pass through (VEN-1 treats them as working)."""
    status = str(order["status"])
    qty = order.get("qty") if order.get("qty") is not None else order.get("filled_qty")
    limit, avg = order.get("limit_price"), order.get("filled_avg_price")
    return Order(
        broker_id=str(order["id"]), client_order_id=str(order["client_order_id"]), symbol=order.get("symbol") or "",
        side=str(order.get("side") or ""), qty=_f(qty),  # type: ignore[arg-type]
        order_type=str(order.get("type") or order.get("order_type") or ""),  # type: ignore[arg-type]
        status=status, limit_price=None if limit is None else float(limit), filled_qty=_f(order.get("filled_qty")),
        filled_avg_price=None if avg is None else float(avg), submitted_at=_ts(order.get("submitted_at")),
        updated_at=_ts(order.get("updated_at")), reject_reason="rejected by Alpaca" if status == "rejected" else None,
        filled_at=_ts(order.get("filled_at")))


def parse_items(items: Any, parse: Callable[[dict[str, Any]], T], what: str,
                on_skip: Callable[[str], None] | None = None) -> list[T]:
    """Parse a list answer item by item: an unparseable item is skipped and reported, never fatal."""
    out: list[T] = []
    for item in items if isinstance(items, list) else []:
        try:
            out.append(parse(item))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            ident = (item.get("client_order_id") or item.get("symbol") or item.get("id")) if isinstance(item, dict) else "?"
            detail = f"Alpaca {what}: skipped an item it could not read ({ident}: {type(exc).__name__}: {exc})"
            log.error("%s", detail)
            if on_skip is not None:
                on_skip(detail)
    return out


def to_clock(clock: dict[str, Any]) -> Clock:
    return Clock(now=_ts(clock["timestamp"]).astimezone(NY), is_open=bool(clock["is_open"]),  # type: ignore[union-attr]
                 next_open=_ts(clock["next_open"]).astimezone(NY),  # type: ignore[union-attr]
                 next_close=_ts(clock["next_close"]).astimezone(NY))  # type: ignore[union-attr]


def to_session(cal: dict[str, Any]) -> Session:
    """Alpaca's calendar gives the date and 'HH:MM' open/close in New York time."""
    day = date.fromisoformat(str(cal["date"])[:10])

    def at(hhmm: str) -> datetime:
        hour, minute = str(hhmm).replace(":", "")[:2], str(hhmm).replace(":", "")[2:4]
        return datetime.combine(day, time(int(hour), int(minute)), tzinfo=NY)

    return Session(day=day, open=at(cal["open"]), close=at(cal["close"]))


def to_asset(asset: dict[str, Any]) -> Asset:
    tradable = bool(asset.get("tradable")) and asset.get("status", "active") == "active"
    return Asset(symbol=str(asset["symbol"]), tradable=tradable, fractionable=bool(asset.get("fractionable")))


def to_quote(symbol: str, snap: Any) -> Quote | None:
    """A Quote from a snapshot: bid/ask from latestQuote; day_open and prev_close from the daily bars.

    Before the open Alpaca's dailyBar is the previous session's bar, so it becomes prev_close and
    day_open stays unknown.
    """
    q = getattr(snap, "latest_quote", None)
    if q is None or not q.bid_price or not q.ask_price:
        return None
    ts = q.timestamp.astimezone(NY)
    daily, prev = snap.daily_bar, snap.previous_daily_bar
    day_open = prev_close = None
    if daily is not None and daily.timestamp.astimezone(NY).date() == ts.date():
        day_open = float(daily.open)
        prev_close = float(prev.close) if prev is not None else None
    elif daily is not None:
        prev_close = float(daily.close)
    return Quote(symbol=symbol, bid=float(q.bid_price), ask=float(q.ask_price), ts=ts,
                 day_open=day_open, prev_close=prev_close)


def bars_frame(barset: Any, start: date, end: date) -> "pd.DataFrame":
    """Long-format adjusted daily bars (symbol, date, open, high, low, close, volume)."""
    import pandas as pd

    from tradebook.marketdata import COLUMNS

    data = barset.data if barset is not None else {}
    rows = [(sym, b.timestamp.astimezone(NY).date(), b.open, b.high, b.low, b.close, b.volume)
            for sym, bars in data.items() for b in bars]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame = frame[(frame["date"] >= start) & (frame["date"] <= end)]
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, end 23:59:59] New York, so the daily bar stamped at midnight NY is included."""
    return (datetime.combine(start, time(0), tzinfo=NY), datetime.combine(end, time(23, 59, 59), tzinfo=NY))


def order_request(req: OrderRequest, qty: Decimal | None = None) -> Any:
    """The SDK request for one of our orders (qty overridable for the whole-share fallback)."""
    from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

    common = dict(symbol=req.symbol, qty=float(qty if qty is not None else req.qty), side=req.side,
                  time_in_force=req.time_in_force, client_order_id=req.client_order_id)
    if req.order_type == "limit":
        return LimitOrderRequest(limit_price=float(req.limit_price), **common)  # type: ignore[arg-type]
    return MarketOrderRequest(**common)


def notional_request(symbol: str, side: str, notional: Decimal, client_order_id: str,
                     time_in_force: str = "day") -> Any:
    from alpaca.trading.requests import MarketOrderRequest

    return MarketOrderRequest(symbol=symbol, notional=float(notional.quantize(Decimal("0.01"))), side=side,
                              time_in_force=time_in_force, client_order_id=client_order_id)
