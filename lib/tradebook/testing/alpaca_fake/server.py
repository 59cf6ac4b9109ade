"""A loopback Alpaca-compatible HTTP server: Trading API v2 + Market Data v2, the subset tradebook uses.

It is a real ``ThreadingHTTPServer`` on 127.0.0.1 (ephemeral port), so AlpacaBroker runs the
real alpaca-py client against it: ``with FakeAlpacaServer() as fake: ... url_override=fake.url``.
Prices replay the bundled daily bars under a settable simulated clock (``set_time`` or
``POST /_fake/clock {"now": iso}``), and faults are scriptable (``inject`` or
``POST /_fake/faults``). ``tradebook demo --broker alpaca-fake`` runs the notebooks against it.

Fault kinds (``times`` answers each; ``path``/``method`` narrow them, ``path`` may end in ``*``):
  latency                    handle the request, then wait ``seconds`` before answering (client timeout)
  http_500 / http_503 / http_504   answer that status without handling (503/504 bodies are HTML)
  http_429                   rate limited: 429 with X-RateLimit-* (Reset = now + ``retry_after`` s)
  reject_buying_power        403 insufficient buying power          (default: POST /v2/orders)
  duplicate_client_order_id  422 client_order_id must be unique     (default: POST /v2/orders)
  fractional_reject          422 asset is not fractionable          (default: POST /v2/orders)
  lost_response              record the order, then drop the connection (default: POST /v2/orders)
  accept_then_504            record the order, then answer 504      (default: POST /v2/orders)
  drop_connection            drop the connection without handling the request
  partial_fill               the order's first fill is half of it (default: POST /v2/orders)
  reply                      answer ``status`` with the JSON ``body`` (``handle=True``: handle the request
                             first, so an order may land and still be answered with an error)

Venue realism (``VenueOptions``, alpaca_fake_venue): async cancels, margin account, wash-trade
check, a rate limit, the market-data plan. Unknown order statuses (``show_status``) and asset
classes (``seed_position(..., asset_class=...)``) on demand. ``FakeAlpacaServer.observers``
(class-level) see every answer; the test suite checks each one against Alpaca's contract.
"""
from __future__ import annotations

import hmac
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime, time as dtime
from decimal import Decimal
from http.server import ThreadingHTTPServer
from typing import Any, Callable, Iterator

from tradebook.testing.alpaca_fake.market import NY, FakeMarket
from tradebook.testing.alpaca_fake.models import Fault, RequestRecord
from tradebook.testing.alpaca_fake.routes import Answer, FakeHandler
from tradebook.testing.alpaca_fake.state import FakeBrokerState
from tradebook.testing.alpaca_fake.venue import RateLimiter, VenueOptions

ORDER_FAULTS = ("reject_buying_power", "duplicate_client_order_id", "fractional_reject", "lost_response",
                "accept_then_504", "partial_fill")
FAULT_KINDS = ("latency", "http_500", "http_503", "http_504", "http_429", "drop_connection",
               "reply") + ORDER_FAULTS
DEFAULT_SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT", "FB")
DEFAULT_START = datetime(2011, 7, 1, 8, 0, tzinfo=NY)   # params.sim.start_date, before the open
FAKE_LEDGER_FILE = "alpaca-fake-ledger.duckdb"   # never a paper/live default (OPS-8)


class FakeAlpacaServer:
    """Context manager around the loopback server; also the demo's clock (``advance_to``)."""

    # Called with (method, path, status, headers, payload) for every API answer (tests: contract checks).
    observers: list[Callable[..., None]] = []

    def __init__(self, *, start: datetime | date | None = None, symbols: tuple[str, ...] = DEFAULT_SYMBOLS,
                 cash: float = 100_000.0, spread_bps: float = 4.0, key_id: str | None = None,
                 secret_key: str | None = None, account_fractional: bool = True,
                 non_fractionable: tuple[str, ...] = (), page_size: int = 10_000,
                 venue: VenueOptions | None = None):
        if isinstance(start, date) and not isinstance(start, datetime):
            start = datetime.combine(start, dtime(8, 0), tzinfo=NY)
        self.market = FakeMarket(tuple(symbols), spread_bps)
        self.state = FakeBrokerState(self.market, start or DEFAULT_START, cash, account_fractional,
                                     non_fractionable, venue)
        v = self.state.venue
        self.limiter = RateLimiter(v.rate_limit, v.rate_window_s) if v.rate_limit > 0 else None
        self.page_size = page_size
        self._keys = (key_id, secret_key)
        self._faults: list[Fault] = []
        self._requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:   # never show the configured keys
        return f"FakeAlpacaServer(url={self._url_or_none()!r}, now={self.state.now.isoformat()!r})"

    # lifecycle -----------------------------------------------------------------------------
    def start(self) -> "FakeAlpacaServer":
        """Bind 127.0.0.1 on an ephemeral port and serve in a daemon thread."""
        if self._httpd is None:
            self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeHandler)
            self._httpd.daemon_threads = True
            self._httpd.fake = self  # type: ignore[attr-defined]
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="fake-alpaca", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self) -> "FakeAlpacaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _url_or_none(self) -> str | None:
        return None if self._httpd is None else f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def url(self) -> str:
        """Base URL for ``url_override``/``data_url_override`` (no ``/v2``)."""
        url = self._url_or_none()
        if url is None:
            raise RuntimeError("FakeAlpacaServer is not started")
        return url

    def overrides(self) -> dict[str, Any]:
        """Params overrides pointing AlpacaBroker (paper mode) at this server, with a ledger of its own.

        The fake's account is not the user's paper account (OPS-8): it never gets the paper
        default ledger (``paper-ledger.duckdb``), which it would bind to the fake's identity.
        """
        return {"mode": "paper", "ledger_file": FAKE_LEDGER_FILE,
                "alpaca.url_override": self.url, "alpaca.data_url_override": self.url}

    # clock (the demo drives it like SimBroker) -------------------------------------------------
    @property
    def now(self) -> datetime:
        return self.state.now

    def set_time(self, now: datetime) -> None:
        """Move the simulated time forward; open orders fill or expire on the way."""
        self.state.set_time(now)

    advance_to = set_time

    def clock(self):
        from tradebook.broker.base import Clock

        next_open, next_close = self.market.next_open_close(self.now)
        return Clock(self.now, self.market.is_open(self.now), next_open, next_close)

    def first_session_on_or_after(self, day: date):
        from tradebook.broker.base import Session

        s = self.market.first_session_on_or_after(day)
        return Session(s.day, s.open, s.close)

    def session_times(self, day: date):
        from tradebook.broker.base import Session

        s = self.market.session(day)
        return None if s is None else Session(s.day, s.open, s.close)

    # faults and inspection ---------------------------------------------------------------
    def inject(self, kind: str, times: int = 1, path: str | None = None, method: str | None = None,
               seconds: float = 1.0, retry_after: int = 1, status: int = 0, body: Any = None,
               handle: bool = False) -> None:
        """Script the next ``times`` matching requests to fail in the ``kind`` way (see module doc)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if kind in ORDER_FAULTS and path is None:
            path, method = "/v2/orders", method or "POST"
        with self._lock:
            self._faults.append(Fault(kind, int(times), path, method, float(seconds), int(retry_after),
                                      int(status), body, bool(handle)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def count(self, method: str, path: str) -> int:
        """How many API requests the server received for (method, path)."""
        return sum(1 for r in self.requests if r.method == method and r.path == path)

    def seed_position(self, symbol: str, qty: float, avg_price: float, asset_class: str = "us_equity") -> None:
        self.state.seed_position(symbol, qty, avg_price, asset_class)

    def show_status(self, client_order_id: str, status: str | None) -> None:
        """Answer this order with ``status`` (e.g. one the spec lacks) until reset with None."""
        self.state.show_status(client_order_id, status)

    def rate_limit(self) -> tuple[bool, dict[str, str]]:
        """(allowed, X-RateLimit-* headers) for one API request."""
        if self.limiter is None:
            return True, {}
        return self.limiter.take()

    def observe(self, method: str, path: str, status: int, headers: dict[str, str], payload: Any,
                raw: bytes) -> None:
        if path.startswith("/_fake/"):
            return
        for observer in list(self.observers):
            observer(method, path, status, headers, payload, raw)

    def _authorised(self, headers: Any) -> bool:
        got = (headers.get("APCA-API-KEY-ID") or "", headers.get("APCA-API-SECRET-KEY") or "")
        want = self._keys
        if want[0] is None:
            return bool(got[0] and got[1])
        return hmac.compare_digest(got[0], want[0] or "") and hmac.compare_digest(got[1], want[1] or "")

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    # routing -----------------------------------------------------------------------------
    def control(self, method: str, path: str, body: Any) -> Answer:
        """/_fake/* endpoints: clock, faults, request log (no auth; loopback only)."""
        try:
            if path == "/_fake/clock" and method == "POST":
                self.set_time(datetime.fromisoformat(str(body["now"])))
            elif path == "/_fake/faults" and method == "POST":
                self.inject(**{k: (float(v) if isinstance(v, Decimal) else v) for k, v in (body or {}).items()})  # type: ignore[arg-type]
            elif path == "/_fake/faults" and method == "DELETE":
                self.clear_faults()
            elif path == "/_fake/requests" and method == "GET":
                return Answer(200, [{"method": r.method, "path": r.path} for r in self.requests])
            elif not (path == "/_fake/clock" and method == "GET"):
                return Answer(404, {"message": "unknown fake control endpoint"})
        except (KeyError, TypeError, ValueError) as exc:
            return Answer(400, {"message": f"bad fake control request: {exc}"})
        return Answer(200, {"now": self.now.isoformat()})


DEMO_KEYS = ("PKFAKEDEMOKEY000000000", "SKFAKEDEMOSECRET0000000000000000000000")
# The demo's venue is a real paper account's: async cancels, a margin account, wash-trade checks, a
# rate limit (per second here, so waits stay short) and a free market-data plan.
DEMO_VENUE = VenueOptions(cancel_delay_s=90.0, margin=True, wash_trade_check=True, rate_limit=10,
                          rate_window_s=1.0, data_plan="free")


@contextmanager
def demo_fake(start: datetime | date | None = None) -> Iterator[tuple[dict[str, Any], FakeAlpacaServer]]:
    """For ``tradebook demo --broker alpaca-fake``: a started fake and the params overrides for it.

    The process environment gets the fake's own key pair for the duration (kernels started
    inside inherit it), so real keys, if set, are never sent even to loopback; restored after.
    """
    names = ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict(zip(names, DEMO_KEYS)))
    try:
        with FakeAlpacaServer(start=start, key_id=DEMO_KEYS[0], secret_key=DEMO_KEYS[1],
                              venue=replace(DEMO_VENUE)) as fake:
            yield fake.overrides(), fake
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: list[str] | None = None) -> None:
    """``python -m tradebook.testing.alpaca_fake.server [--start YYYY-MM-DD]``: serve until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=date.fromisoformat, default=DEFAULT_START.date())
    parser.add_argument("--realistic", action="store_true",
                        help="behave like a fresh paper account (async cancels, margin, wash trades, rate limit)")
    parser.add_argument("--plan", choices=("free", "unlimited"), default="free", help="market-data plan of the key")
    args = parser.parse_args(argv)
    venue = replace(DEMO_VENUE if args.realistic else VenueOptions(), data_plan=args.plan)
    with FakeAlpacaServer(start=args.start, venue=venue) as fake:
        print(f"fake Alpaca at {fake.url} (simulated time {fake.now.isoformat()}); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
