"""AlpacaBroker: the Broker protocol over alpaca-py (TradingClient + StockHistoricalDataClient).

Safety rules (SPEC §2, EXE-1..5, OPS-6):
- Paper by default. Live needs params ``mode: live`` AND env ``TRADEBOOK_LIVE=1``; paper mode
  refuses the live trading URL. Keys come only from ``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY``.
- Every request has a timeout; the SDK's own 429/504 retry loop is switched off and replaced by
  ours (transient failures only, backoff, Retry-After). Business rejects are never retried.
- Submit is idempotent by client_order_id: after an unknown outcome the order is looked up
  before any resubmit, and a duplicate-client-id reject returns the existing order.
- An API circuit breaker refuses new entries (buys) while open and calls ``on_circuit_open``
  once, which the caller wires to ``controls.reduce_only``.
- Fractional qty is validated per symbol (account + asset); a fractional reject falls back to
  whole shares (floor), and a quantity that floors to 0 is skipped with FractionalNotSupported.
- Keys never appear in errors, logs or repr: messages are redacted and typed errors carry no
  SDK exception (whose request holds the auth headers).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import urlsplit

from tradebook.broker import alpaca_convert as cv
from tradebook.broker.alpaca_resilience import (CircuitBreaker, Redactor, RetryPolicy, TimeoutSession,
                                                call_with_retries, may_have_landed, status_of)
from tradebook.broker.base import (Account, Asset, CancelResult, Clock, Order, OrderRequest, Position, Quote,
                                   Session, to_qty)
from tradebook.errors import (BrokerError, BrokerRejected, BrokerUnavailable, CircuitOpen, ConfigError,
                              DuplicateClientOrderId, FractionalNotSupported, OrderOutcomeUnknown, SecretsError,
                              UnknownSymbol)

if TYPE_CHECKING:
    import pandas as pd

    from tradebook.params import Params

log = logging.getLogger("tradebook.broker.alpaca")
T = TypeVar("T")
KEY_VARS = ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY")
PAPER_URL, LIVE_URL = "https://paper-api.alpaca.markets", "https://api.alpaca.markets"
LIVE_HOST = "api.alpaca.markets"


def _keys_from_env() -> tuple[str, str]:
    """The key pair from the environment; SecretsError naming whatever is missing (never the values)."""
    values = [os.environ.get(name, "").strip() for name in KEY_VARS]
    missing = [name for name, value in zip(KEY_VARS, values) if not value]
    if missing:
        raise SecretsError(f"Alpaca keys missing: set {' and '.join(missing)} in the environment "
                           "(keys are never read from params files)")
    return values[0], values[1]


def _check_mode(mode: str, url_override: str | None) -> None:
    """Paper unless live is opted into twice; paper never talks to the live URL."""
    if mode not in ("paper", "live"):
        raise ConfigError(f"AlpacaBroker needs mode paper or live, not {mode!r} (mode sim uses SimBroker)")
    if mode == "live" and os.environ.get("TRADEBOOK_LIVE") != "1":
        raise SecretsError("mode: live needs a second opt-in: export TRADEBOOK_LIVE=1 (real money). "
                           "Without it tradebook refuses to start; use mode: paper to trade on paper.")
    if mode == "paper" and url_override and (urlsplit(url_override).hostname or "").lower() == LIVE_HOST:
        raise ConfigError("mode: paper but alpaca.url_override points at the live trading API "
                          f"({LIVE_URL}); remove the override or use the paper URL")


class AlpacaBroker:
    """Broker over the real alpaca-py SDK; construct with ``from_params``."""

    name = "alpaca"

    def __init__(self, *, mode: str = "paper", url_override: str | None = None,
                 data_url_override: str | None = None, feed: str = "iex", timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 breaker_failures: int = 5, breaker_window_s: float = 60.0, fractional_enabled: bool = True,
                 on_circuit_open: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        from alpaca.data.historical import StockHistoricalDataClient
        from alpaca.trading.client import TradingClient

        _check_mode(mode, url_override)
        key_id, secret = _keys_from_env()
        self.mode, self.feed, self.fractional_enabled = mode, feed, fractional_enabled
        self._redact = Redactor((key_id, secret))
        self._trading = TradingClient(api_key=key_id, secret_key=secret, paper=mode == "paper",
                                      url_override=url_override or None)
        self._data = StockHistoricalDataClient(api_key=key_id, secret_key=secret,
                                               url_override=data_url_override or None)
        for client in (self._trading, self._data):
            client._session = TimeoutSession(timeout_s)        # EXE-3: the SDK sets no timeout at all
            client._retry, client._retry_wait = 0, 0           # our retry policy replaces its 429/504 loop
        self.trading_url = str(getattr(self._trading._base_url, "value", self._trading._base_url))
        self.data_url = str(getattr(self._data._base_url, "value", self._data._base_url))
        if mode == "paper" and not url_override and self.trading_url != PAPER_URL:
            raise ConfigError(f"paper mode resolved to {self.trading_url}, expected {PAPER_URL}")
        self._policy = RetryPolicy(retries, backoff_s, max_backoff_s, sleep)
        self.breaker = CircuitBreaker(breaker_failures, breaker_window_s, on_circuit_open, clock)
        self._fractionable: dict[str, bool] = {}
        self._account_fractional: bool | None = None
        log.info("AlpacaBroker ready: mode=%s trading=%s data=%s timeout=%ss retries=%d",
                 mode, self.trading_url, self.data_url, timeout_s, retries)

    @classmethod
    def from_params(cls, params: "Params", on_circuit_open: Callable[[str], None] | None = None,
                    **overrides: Any) -> "AlpacaBroker":
        """Build from validated params; ``on_circuit_open(reason)`` is typically controls.reduce_only."""
        a = params.alpaca
        kwargs: dict[str, Any] = dict(
            mode=params.mode, url_override=a.url_override, data_url_override=a.data_url_override, feed=a.feed,
            timeout_s=a.timeout_s, retries=a.retries, backoff_s=a.backoff_s, max_backoff_s=a.max_backoff_s,
            breaker_failures=params.api_breaker_failures, breaker_window_s=params.api_breaker_window_s,
            fractional_enabled=params.fractional_enabled, on_circuit_open=on_circuit_open)
        kwargs.update(overrides)   # tests inject sleep/clock
        return cls(**kwargs)

    def __repr__(self) -> str:
        return f"AlpacaBroker(mode={self.mode!r}, trading_url={self.trading_url!r}, data_url={self.data_url!r})"

    def __reduce__(self):   # pickling would copy the SDK clients and with them the keys
        raise TypeError("AlpacaBroker holds credentials and cannot be pickled; rebuild it with from_params")

    # plumbing -------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return call_with_retries(fn, what=what, policy=self._policy, breaker=self.breaker, redact=self._redact)

    def _or_none_on_404(self, fn: Callable[[], T]) -> Callable[[], T | None]:
        def run() -> T | None:
            from alpaca.common.exceptions import APIError

            try:
                return fn()
            except APIError as exc:
                if status_of(exc) == 404:
                    return None
                raise
        return run

    @property
    def circuit_open(self) -> bool:
        """True while the API circuit breaker refuses new entries (EXE-4)."""
        return self.breaker.is_open

    # account and market ---------------------------------------------------------------------
    def account(self) -> Account:
        acct = self._call("get account", self._trading.get_account)
        return cv.to_account(acct, self._account_allows_fractional())

    def _account_allows_fractional(self) -> bool:
        if self._account_fractional is None:
            config = self._call("get account configurations", self._trading.get_account_configurations)
            self._account_fractional = bool(config.fractional_trading)
        return self._account_fractional and self.fractional_enabled

    def positions(self) -> list[Position]:
        return [cv.to_position(p) for p in self._call("list positions", self._trading.get_all_positions)]

    def open_orders(self) -> list[Order]:
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500, nested=False)
        return [cv.to_order(o) for o in self._call("list open orders", lambda: self._trading.get_orders(request))]

    def get_order(self, client_order_id: str) -> Order | None:
        """Any order by client id; None when Alpaca has never seen it (404)."""
        found = self._call(f"get order {client_order_id}", self._or_none_on_404(
            lambda: self._trading.get_order_by_client_id(client_order_id)))
        return None if found is None else cv.to_order(found)

    def clock(self) -> Clock:
        return cv.to_clock(self._call("get clock", self._trading.get_clock))

    def calendar(self, start: date, end: date) -> list[Session]:
        from alpaca.trading.requests import GetCalendarRequest

        request = GetCalendarRequest(start=start, end=end)
        return [cv.to_session(c) for c in self._call("get calendar", lambda: self._trading.get_calendar(request))]

    def asset(self, symbol: str) -> Asset:
        found = self._call(f"get asset {symbol}", self._or_none_on_404(lambda: self._trading.get_asset(symbol)))
        if found is None:
            raise UnknownSymbol(f"Alpaca does not know the symbol {symbol!r}")
        return cv.to_asset(found)

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """Latest bid/ask per symbol (from snapshots, which also give day_open and prev_close)."""
        from alpaca.data.requests import StockSnapshotRequest

        if not symbols:
            return {}
        request = StockSnapshotRequest(symbol_or_symbols=list(symbols), feed=self.feed)
        snaps = self._call("get snapshots", lambda: self._data.get_stock_snapshot(request))
        quotes = {s: cv.to_quote(s, snap) for s, snap in snaps.items()}
        return {s: q for s, q in quotes.items() if q is not None}

    def daily_bars(self, symbols: list[str], start: date, end: date) -> "pd.DataFrame":
        """Adjusted (corporate actions: all) daily bars, long format, dates in [start, end]."""
        from alpaca.data.enums import Adjustment
        from alpaca.data.requests import StockBarsRequest
        from alpaca.data.timeframe import TimeFrame

        lo, hi = cv.day_bounds(start, end)
        request = StockBarsRequest(symbol_or_symbols=list(symbols), timeframe=TimeFrame.Day, start=lo, end=hi,
                                   adjustment=Adjustment.ALL, feed=self.feed)
        return cv.bars_frame(self._call("get daily bars", lambda: self._data.get_stock_bars(request)), start, end)

    def validate_fractional(self, symbols: list[str]) -> dict[str, bool]:
        """EXE-5 start-up check: may each symbol trade fractional qty (params, account and asset)?"""
        account_ok = self._account_allows_fractional()
        result = {}
        for symbol in symbols:
            asset = self.asset(symbol)
            result[symbol] = account_ok and asset.tradable and asset.fractionable
            if not result[symbol]:
                why = ("fractional_enabled is false in params" if not self.fractional_enabled
                       else "the account has fractional trading off" if not account_ok
                       else "the asset is not tradable" if not asset.tradable else "the asset is not fractionable")
                log.warning("fractional shares off for %s (%s): orders will use whole shares", symbol, why)
        self._fractionable.update(result)
        return result

    # orders ---------------------------------------------------------------------------------
    def submit(self, request: OrderRequest) -> Order:
        """Submit idempotently by client_order_id; whole-share fallback on fractional rejects (EXE-5)."""
        return self._submit(request, reducing=request.side == "sell")

    def _submit(self, request: OrderRequest, reducing: bool) -> Order:
        if not reducing and self.breaker.is_open:
            raise CircuitOpen(f"{self.breaker.reason}; entry {request.client_order_id} refused (reduce-only)")
        request = self._whole_shares_if_needed(request)
        refused = None
        try:
            return self._submit_idempotent(request, cv.order_request(request), reducing)
        except FractionalNotSupported as exc:
            refused = str(exc)
        # The 422 left nothing at Alpaca, so the same client_order_id is reused for the whole shares.
        self._fractionable[request.symbol] = False
        whole = self._floor_or_skip(request, refused)
        return self._submit_idempotent(whole, cv.order_request(whole), reducing)

    def _whole_shares_if_needed(self, request: OrderRequest) -> OrderRequest:
        fractional = request.qty != request.qty.to_integral_value()
        allowed = self.fractional_enabled and self._fractionable.get(request.symbol, True)
        if fractional and not allowed:
            return self._floor_or_skip(request, f"{request.symbol} is not fractionable for this account")
        return request

    def _floor_or_skip(self, request: OrderRequest, why: str) -> OrderRequest:
        whole = request.qty.to_integral_value(rounding=ROUND_DOWN)
        if whole == request.qty:   # already whole: the reject is not about the quantity
            raise FractionalNotSupported(why)
        if whole <= 0:
            log.warning("order %s skipped: %s %s qty %s is fractional (%s) and rounds down to 0 whole shares",
                        request.client_order_id, request.side, request.symbol, request.qty, why)
            raise FractionalNotSupported(f"{request.symbol}: fractional qty {request.qty} refused ({why}) and "
                                         "whole shares round to 0; order skipped")
        log.warning("order %s: %s %s qty %s -> %s whole shares (%s)", request.client_order_id, request.side,
                    request.symbol, request.qty, whole, why)
        return replace(request, qty=to_qty(whole))

    def submit_notional(self, symbol: str, side: str, notional: Decimal, client_order_id: str,
                        time_in_force: str = "day") -> Order:
        """A dollar-amount market order (Alpaca needs fractional support for it)."""
        if side == "buy" and self.breaker.is_open:
            raise CircuitOpen(f"{self.breaker.reason}; entry {client_order_id} refused (reduce-only)")
        if not (self.fractional_enabled and self._fractionable.get(symbol, True)):
            raise FractionalNotSupported(f"{symbol}: notional orders need fractional support; submit a qty")
        # The OrderRequest only carries symbol/side/client id for the idempotency checks; qty is unused.
        ident = OrderRequest(symbol, side, Decimal(1), client_order_id, "market")  # type: ignore[arg-type]
        sdk = cv.notional_request(symbol, side, notional, client_order_id, time_in_force)
        return self._submit_idempotent(ident, sdk, reducing=side == "sell")

    def _submit_idempotent(self, request: OrderRequest, sdk_request: Any, reducing: bool) -> Order:
        """EXE-1: look up by client id after an unknown outcome, before any resubmit."""
        cid, unknown = request.client_order_id, [False]

        def once() -> Any:
            if unknown[0]:
                found = self._or_none_on_404(lambda: self._trading.get_order_by_client_id(cid))()
                if found is not None:
                    log.warning("order %s: outcome was unknown; Alpaca has it, not resubmitting", cid)
                    return found
                if not reducing and self.breaker.is_open:
                    raise CircuitOpen(f"{self.breaker.reason}; entry {cid} not resubmitted (reduce-only)")
            try:
                return self._trading.submit_order(sdk_request)
            except Exception as exc:
                unknown[0] = unknown[0] or may_have_landed(exc)
                raise

        what = f"submit {request.side} {request.symbol} (client_order_id {cid})"
        try:
            placed = self._call(what, once)
        except DuplicateClientOrderId:
            return self._existing(request)
        except BrokerUnavailable as exc:
            if unknown[0] and not isinstance(exc, CircuitOpen):
                raise OrderOutcomeUnknown(f"{exc}; the order may have reached Alpaca: look up client_order_id "
                                          f"{cid} before resubmitting") from None
            raise
        return self._checked(request, cv.to_order(placed))

    def _existing(self, request: OrderRequest) -> Order:
        """A duplicate client_order_id: the order is already at Alpaca; return it (never resubmit)."""
        found = self.get_order(request.client_order_id)
        if found is None:
            raise DuplicateClientOrderId(f"Alpaca reports client_order_id {request.client_order_id} as a duplicate "
                                         "but cannot find it; check the account before retrying")
        log.info("order %s already at Alpaca (duplicate client_order_id): returning it", request.client_order_id)
        return self._checked(request, found)

    @staticmethod
    def _checked(request: OrderRequest, order: Order) -> Order:
        if order.symbol and (order.symbol, order.side) != (request.symbol, request.side):
            raise DuplicateClientOrderId(f"client_order_id {request.client_order_id} belongs to a different order "
                                         f"({order.side} {order.symbol}); refusing to treat it as this one")
        return order

    def cancel(self, client_order_id: str) -> None:
        """Cancel by client id: look up the broker id, then cancel (SimBroker's error codes)."""
        order = self.get_order(client_order_id)
        if order is None:
            raise BrokerRejected(f"order {client_order_id} not found at Alpaca", code="ORDER_NOT_FOUND")
        if not order.is_open:
            raise BrokerRejected(f"order {client_order_id} is not cancelable (status {order.status})",
                                 code="ORDER_NOT_CANCELABLE")
        try:
            self._call(f"cancel order {client_order_id}", lambda: self._trading.cancel_order_by_id(order.broker_id))
        except BrokerRejected as exc:
            code = "ORDER_NOT_FOUND" if exc.code == "NOT_FOUND" else "ORDER_NOT_CANCELABLE"
            raise BrokerRejected(str(exc), code=code) from None

    def cancel_all(self) -> CancelResult:
        """Cancel every open order; returns the client ids Alpaca accepted to cancel."""
        by_id = {o.broker_id: o.client_order_id for o in self.open_orders()}
        if not by_id:
            return CancelResult()
        answers = self._call("cancel all orders", self._trading.cancel_orders)
        done = []
        for answer in answers:
            cid = by_id.get(str(answer.id)) or (answer.body or {}).get("client_order_id", str(answer.id))
            if 200 <= int(answer.status) < 300:
                done.append(cid)
            else:
                log.warning("cancel of %s answered HTTP %s", cid, answer.status)
        return CancelResult(tuple(done))

    def close_position(self, symbol: str, client_order_id: str) -> Order | None:
        """Market order for the whole position under our client id (idempotent); None if flat.

        A fractional position in an asset that refuses fractional orders is closed with Alpaca's
        DELETE /v2/positions/{symbol} instead (that order gets Alpaca's own client id).
        """
        pos = self._call(f"get position {symbol}", self._or_none_on_404(
            lambda: self._trading.get_open_position(symbol)))
        if pos is None or float(pos.qty) == 0:
            return None
        qty = to_qty(abs(Decimal(str(pos.qty))))
        side = "sell" if float(pos.qty) > 0 and cv._v(pos.side) != "short" else "buy"
        request = OrderRequest(symbol, side, qty, client_order_id, order_type="market")  # type: ignore[arg-type]
        fractional = qty != qty.to_integral_value()
        if not (fractional and not self._fractionable.get(symbol, True)):
            try:
                return self._submit_idempotent(request, cv.order_request(request), reducing=True)
            except FractionalNotSupported:
                self._fractionable[symbol] = False
        log.warning("closing fractional %s position %s via DELETE /v2/positions", symbol, qty)
        return cv.to_order(self._call(f"close position {symbol}", lambda: self._trading.close_position(symbol)))
