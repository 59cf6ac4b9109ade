"""AlpacaBroker: the Broker protocol over alpaca-py (TradingClient + StockHistoricalDataClient).

Safety rules (SPEC §2, EXE-1..5, OPS-6):
- Paper by default. Live needs params ``mode: live`` AND env ``TRADEBOOK_LIVE=1``; paper mode
  refuses the live trading URL. Keys come only from ``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY``.
- Every request has a timeout; the SDK's own 429/504 retry loop is switched off and replaced by
  ours (transient failures only, backoff; a 429 waits for X-RateLimit-Reset and is not a
  breaker failure). Business rejects are never retried.
- Trading answers are read raw and parsed item by item (one odd order or position is skipped
  and reported, never a failed reconcile); only us_equity positions are quoted or traded.
- Data: daily bars from ``bars_feed`` (sip by default, ending 15 min before now so a free plan
  may ask), quotes from ``feed`` (iex by default).
- GATE-11 sees non-marginable buying power unless ``alpaca.allow_margin: true``.
- Orders (``alpaca_orders``): idempotent submit by client_order_id, breaker-aware; fractional
  refusals raise FractionalNotSupported like SimBroker (the order path re-gates whole shares).
- An API circuit breaker reports an outage (``circuit_open``, CircuitOpen, an optional
  ``on_circuit_open(reason)``); it refuses nothing itself: the order path turns it into
  REDUCE_ONLY and GATE-1 decides what may still leave (the broker layer never writes the ledger).
- Keys never appear in errors, logs or repr: messages are redacted and typed errors carry no
  SDK exception (whose request holds the auth headers).
"""
from __future__ import annotations

import logging
import os
import time
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import urlsplit

from tradebook.broker.alpaca import convert as cv
from tradebook.broker.alpaca.orders import OrderDesk
from tradebook.broker.alpaca.breaker import BreakerStore
from tradebook.broker.alpaca.resilience import (CircuitBreaker, Redactor, RetryPolicy, TimeoutSession,
                                                call_with_retries, or_none_on_404)
from tradebook.broker.base import (Account, Asset, CancelResult, Clock, Order, OrderRequest, Position, Quote,
                                   Session)
from tradebook.errors import ConfigError, SecretsError, UnknownSymbol

if TYPE_CHECKING:
    import pandas as pd

    from tradebook.params import Params

log = logging.getLogger("tradebook.broker.alpaca")
T = TypeVar("T")
KEY_VARS = ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY")
PAPER_URL, LIVE_URL = "https://paper-api.alpaca.markets", "https://api.alpaca.markets"
LIVE_HOST = "api.alpaca.markets"
BARS_FEEDS = ("sip", "iex")                    # historical bars (Market Data API 1.1)
QUOTE_FEEDS = ("iex", "sip", "delayed_sip")    # latest quotes / snapshots (the ones tradebook supports)
SIP_DELAY = timedelta(minutes=15)


def check_feeds(bars_feed: str, quotes_feed: str) -> None:
    """The feed settings, validated at start with a message that says what to do."""
    if bars_feed not in BARS_FEEDS:
        raise ConfigError(f"alpaca.bars_feed {bars_feed!r} is not a historical-bars feed; use sip (any plan: "
                          "tradebook asks only for bars older than 15 minutes) or iex")
    if quotes_feed not in QUOTE_FEEDS:
        raise ConfigError(f"alpaca.feed {quotes_feed!r} is not a quotes feed; use iex (free plan), "
                          "sip (paid plan) or delayed_sip")


def check_start(params: "Params") -> None:
    """What the constructor refuses, checked without building a client or touching the network:
    mode and the live opt-in, feeds, keys. Runs call it before any file or ledger is created."""
    _check_mode(params.mode, params.alpaca.url_override)
    check_feeds(params.alpaca.bars_feed, params.alpaca.feed)
    _keys_from_env()


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
                 data_url_override: str | None = None, feed: str = "iex", bars_feed: str = "sip",
                 timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 rate_limit_max_wait_s: float = 60.0, breaker_failures: int = 5, breaker_window_s: float = 60.0,
                 fractional_enabled: bool = True, allow_margin: bool = False,
                 on_circuit_open: Callable[[str], None] | None = None,
                 on_incident: Callable[[str], None] | None = None, breaker_store: BreakerStore | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time):
        from alpaca.data.historical import StockHistoricalDataClient
        from alpaca.trading.client import TradingClient

        _check_mode(mode, url_override)
        check_feeds(bars_feed, feed)
        key_id, secret = _keys_from_env()
        self.mode, self.feed, self.bars_feed, self.fractional_enabled = mode, feed, bars_feed, fractional_enabled
        self.allow_margin, self._on_incident = allow_margin, on_incident
        self._redact = Redactor((key_id, secret))
        # raw_data: answers are parsed item by item here (alpaca_convert), never rejected whole.
        # Any: with raw_data the SDK's typed returns (models | dict) are always dicts.
        self._trading: Any = TradingClient(api_key=key_id, secret_key=secret, paper=mode == "paper",
                                      url_override=url_override or None, raw_data=True)
        self._data = StockHistoricalDataClient(api_key=key_id, secret_key=secret,
                                               url_override=data_url_override or None)
        for client in (self._trading, self._data):
            client._session = TimeoutSession(timeout_s)        # EXE-3: the SDK sets no timeout at all
            client._retry, client._retry_wait = 0, 0           # our retry policy replaces its 429/504 loop
        self.trading_url = str(getattr(self._trading._base_url, "value", self._trading._base_url))
        self.data_url = str(getattr(self._data._base_url, "value", self._data._base_url))
        if mode == "paper" and not url_override and self.trading_url != PAPER_URL:
            raise ConfigError(f"paper mode resolved to {self.trading_url}, expected {PAPER_URL}")
        self._policy = RetryPolicy(retries, backoff_s, max_backoff_s, sleep, rate_limit_max_wait_s)
        self.breaker = CircuitBreaker(breaker_failures, breaker_window_s, on_circuit_open, clock, breaker_store)
        self.orders = OrderDesk(self._trading, self._call, self.breaker, fractional_enabled)
        self._account_fractional: bool | None = None
        self._calendar: dict[tuple[date, date], list[Session]] = {}
        log.info("AlpacaBroker ready: mode=%s trading=%s data=%s timeout=%ss retries=%d",
                 mode, self.trading_url, self.data_url, timeout_s, retries)

    @classmethod
    def from_params(cls, params: "Params", on_circuit_open: Callable[[str], None] | None = None,
                    **overrides: Any) -> "AlpacaBroker":
        """Build from validated params; ``on_circuit_open(reason)`` is typically controls.reduce_only."""
        a = params.alpaca
        kwargs: dict[str, Any] = dict(
            mode=params.mode, url_override=a.url_override, data_url_override=a.data_url_override, feed=a.feed,
            bars_feed=a.bars_feed, timeout_s=a.timeout_s, retries=a.retries, backoff_s=a.backoff_s,
            max_backoff_s=a.max_backoff_s, rate_limit_max_wait_s=a.rate_limit_max_wait_s,
            breaker_failures=params.api_breaker_failures, breaker_window_s=params.api_breaker_window_s,
            fractional_enabled=params.fractional_enabled, allow_margin=a.allow_margin,
            on_circuit_open=on_circuit_open)
        kwargs.update(overrides)   # tests inject sleep/clock
        return cls(**kwargs)

    def __repr__(self) -> str:
        return f"AlpacaBroker(mode={self.mode!r}, trading_url={self.trading_url!r}, data_url={self.data_url!r})"

    def __reduce__(self):   # pickling would copy the SDK clients and with them the keys
        raise TypeError("AlpacaBroker holds credentials and cannot be pickled; rebuild it with from_params")

    # plumbing -------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return call_with_retries(fn, what=what, policy=self._policy, breaker=self.breaker, redact=self._redact)

    @property
    def circuit_open(self) -> bool:
        """True while the API circuit breaker is open (EXE-4): the order path then runs reduce-only."""
        return self.breaker.is_open

    # account and market ---------------------------------------------------------------------
    def account(self) -> Account:
        """Equity, cash, buying power; fractional_enabled = params AND the account's configuration."""
        acct = self._call("get account", self._trading.get_account)
        return cv.to_account(acct, self._account_allows_fractional(), self.allow_margin)

    def raw_account(self) -> dict[str, Any]:
        """The account object as Alpaca sends it (for ``tradebook doctor``)."""
        return self._call("get account", self._trading.get_account)

    def _account_allows_fractional(self) -> bool:
        if self._account_fractional is None:
            config = self._call("get account configurations", self._trading.get_account_configurations)
            self._account_fractional = bool(config.get("fractional_trading"))
        return self._account_fractional and self.fractional_enabled

    def _skipped(self, detail: str) -> None:
        if self._on_incident is not None:
            try:
                self._on_incident(detail)
            except Exception as exc:   # the skip is logged already; a failing reporter must not stop reconcile
                log.error("on_incident callback failed: %s: %s", type(exc).__name__, exc)

    def positions(self) -> list[Position]:
        """Open positions with Alpaca's current price; non-us_equity ones are kept but never traded."""
        found = cv.parse_items(self._call("list positions", self._trading.get_all_positions), cv.to_position,
                               "list positions", self._skipped)
        self.orders.not_equity.update(p.symbol for p in found if p.asset_class != cv.EQUITY)
        return found

    def open_orders(self) -> list[Order]:
        """Every open order (up to Alpaca's maximum page of 500), parsed item by item."""
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500, nested=False)
        raw = self._call("list open orders", lambda: self._trading.get_orders(request))
        return cv.parse_items(raw, cv.to_order, "list open orders", self._skipped)

    def get_order(self, client_order_id: str) -> Order | None:
        """Any order by client id; None when Alpaca has never seen it (404)."""
        return self.orders.get_order(client_order_id)

    def clock(self) -> Clock:
        """Alpaca's market clock, in New York time."""
        return cv.to_clock(self._call("get clock", self._trading.get_clock))

    def calendar(self, start: date, end: date) -> list[Session]:
        """Trading sessions in [start, end] (early closes included), New York time; cached per range."""
        from alpaca.trading.requests import GetCalendarRequest

        if (start, end) not in self._calendar:   # the calendar of a day does not change within a run
            request = GetCalendarRequest(start=start, end=end)
            raw = self._call("get calendar", lambda: self._trading.get_calendar(request))
            self._calendar[(start, end)] = cv.parse_items(raw, cv.to_session, "get calendar", self._skipped)
        return list(self._calendar[(start, end)])

    def asset(self, symbol: str) -> Asset:
        """Tradable/fractionable flags of a symbol; UnknownSymbol on Alpaca's 404."""
        found = self._call(f"get asset {symbol}", or_none_on_404(lambda: self._trading.get_asset(symbol)))
        if found is None:
            raise UnknownSymbol(f"Alpaca does not know the symbol {symbol!r}")
        return cv.to_asset(found)

    def _stocks(self, symbols: list[str]) -> list[str]:
        """Only us_equity symbols go to the stock data endpoints (crypto/options held are never quoted)."""
        return [s for s in symbols if s not in self.orders.not_equity and "/" not in s]

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """Latest bid/ask per symbol (from snapshots, which also give day_open and prev_close)."""
        from alpaca.data.requests import StockSnapshotRequest

        symbols = self._stocks(symbols)
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

        symbols = self._stocks(symbols)
        lo, hi = cv.day_bounds(start, end)
        if self.bars_feed == "sip" and symbols:
            # Free plans may not query SIP data newer than 15 minutes; completed daily bars never are.
            hi = min(hi, self.clock().now - SIP_DELAY)
        if not symbols or hi <= lo:
            return cv.bars_frame(None, start, end)
        request = StockBarsRequest(symbol_or_symbols=list(symbols), timeframe=TimeFrame.Day, start=lo, end=hi,
                                   adjustment=Adjustment.ALL, feed=self.bars_feed)
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
        self.orders.fractionable.update(result)
        return result

    # orders (alpaca_orders.OrderDesk) ----------------------------------------------------------
    def submit(self, request: OrderRequest) -> Order:
        """Submit idempotently by client_order_id (EXE-1); fractional refusals raise FractionalNotSupported."""
        return self.orders.submit(request)

    def submit_notional(self, symbol: str, side: str, notional: Decimal, client_order_id: str,
                        time_in_force: str = "day") -> Order:
        """A dollar-amount market order (needs fractional support; an extra beyond the Broker protocol)."""
        return self.orders.submit_notional(symbol, side, notional, client_order_id, time_in_force)

    def cancel(self, client_order_id: str) -> None:
        """Cancel by client id (look up the broker id, then cancel)."""
        self.orders.cancel(client_order_id)

    def cancel_all(self) -> CancelResult:
        """Cancel every open order; the client ids Alpaca accepted to cancel."""
        return self.orders.cancel_all(self.open_orders())

    def close_position(self, symbol: str, client_order_id: str) -> Order | None:
        """Market order for the whole position under our client id; None when flat."""
        return self.orders.close_position(symbol, client_order_id)
