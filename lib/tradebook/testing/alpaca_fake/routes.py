"""HTTP layer of the loopback Alpaca fake: the request handler, routes to the state, fault answers."""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, urlsplit

from tradebook.testing.alpaca_fake.market import NY, bar_json, quote_json, snapshot_json
from tradebook.testing.alpaca_fake.models import Fault, Reply, RequestRecord
from tradebook.testing.alpaca_fake.venue import feed_refusal, iex_bar

if TYPE_CHECKING:
    from tradebook.testing.alpaca_fake.server import FakeAlpacaServer

log = logging.getLogger("tradebook.testing.alpaca_fake")


@dataclass
class Answer:
    status: int
    payload: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


def route(fake: "FakeAlpacaServer", method: str, path: str, query: dict[str, str], body: Any) -> Answer:
    """Route one API request to the state (Reply errors become their status/body)."""
    for verb, pattern, handler in _ROUTES:
        match = pattern.fullmatch(path)
        if verb == method and match:
            try:
                return handler(fake, query, body, **match.groupdict())
            except Reply as reply:
                return Answer(reply.status, reply.body)
            except (ValueError, KeyError) as exc:
                return Answer(422, {"code": 40010001, "message": f"invalid request: {exc}"})
    return Answer(404, {"code": 40410000, "message": "endpoint not found"})


def _flag(value: str | None) -> bool:
    return str(value).lower() == "true"   # the SDK sends Python's True/False


def _refused(fake: "FakeAlpacaServer", q: dict[str, str], kind: str, end: datetime | None) -> Answer | None:
    """Feed permissions of the key's market-data plan (400 unknown feed, 403 not in the plan)."""
    refusal = feed_refusal(q.get("feed"), kind, end, fake.now, fake.state.venue.data_plan)
    return None if refusal is None else Answer(refusal[0], {"message": refusal[1]})


def _bars(fake: "FakeAlpacaServer", q: dict[str, str], _body: Any) -> Answer:
    if q.get("timeframe", "1Day") != "1Day":
        return Answer(422, {"message": "the fake serves 1Day bars only"})
    start = datetime.fromisoformat(q["start"]) if "start" in q else datetime(2000, 1, 1, tzinfo=NY)
    end = datetime.fromisoformat(q["end"]) if "end" in q else fake.now
    refused = _refused(fake, q, "bars", end)
    if refused is not None:
        return refused
    shown = iex_bar if q.get("feed") == "iex" else (lambda bar: bar)
    rows = []
    for sym in [s for s in q.get("symbols", "").split(",") if s]:
        for bar in fake.market.completed_bars(sym, start.astimezone(NY).date(), end.astimezone(NY).date(),
                                              fake.now):
            midnight = datetime(bar.day.year, bar.day.month, bar.day.day, tzinfo=NY)
            if start <= midnight <= end:
                rows.append((sym, bar))
    offset = int(q.get("page_token") or 0)
    size = min(int(q.get("limit") or 1000), fake.page_size)
    page, more = rows[offset:offset + size], offset + size < len(rows)
    out: dict[str, list] = {}
    for sym, bar in page:
        out.setdefault(sym, []).append(shown(bar_json(bar)))
    return Answer(200, {"bars": out, "next_page_token": str(offset + size) if more else None})


def _snapshots(fake: "FakeAlpacaServer", q: dict[str, str], _body: Any) -> Answer:
    refused = _refused(fake, q, "latest", None)
    if refused is not None:
        return refused
    snaps = {s: snapshot_json(fake.market, s, fake.now) for s in q.get("symbols", "").split(",") if s}
    return Answer(200, {s: v for s, v in snaps.items() if v is not None})


def _latest_quotes(fake: "FakeAlpacaServer", q: dict[str, str], _body: Any) -> Answer:
    refused = _refused(fake, q, "latest", None)
    if refused is not None:
        return refused
    quotes = {s: quote_json(fake.market, s, fake.now) for s in q.get("symbols", "").split(",") if s}
    return Answer(200, {"quotes": {s: v for s, v in quotes.items() if v is not None}})


def _calendar(fake: "FakeAlpacaServer", q: dict[str, str], _body: Any) -> Answer:
    today = fake.now.astimezone(NY).date()
    start = date.fromisoformat(q["start"][:10]) if "start" in q else today
    end = date.fromisoformat(q["end"][:10]) if "end" in q else start
    return Answer(200, fake.state.calendar_json(start, end))


def _close_all(fake: "FakeAlpacaServer", q: dict[str, str], _body: Any) -> Answer:
    if _flag(q.get("cancel_orders")):
        fake.state.cancel_all()
    out = [{"symbol": s, "status": 200, "body": fake.state.close_position(s)} for s in list(fake.state.positions)]
    return Answer(207, out)


def _r(method: str, path: str, handler: Callable[..., Answer]) -> tuple[str, re.Pattern, Callable]:
    return method, re.compile(path), handler


_ROUTES = [
    _r("GET", "/v2/account", lambda f, q, b: Answer(200, f.state.account_json())),
    _r("GET", "/v2/account/configurations", lambda f, q, b: Answer(200, f.state.config_json())),
    _r("GET", "/v2/positions", lambda f, q, b: Answer(200, f.state.positions_json())),
    _r("DELETE", "/v2/positions", _close_all),
    _r("GET", "/v2/positions/(?P<sym>[^/]+)", lambda f, q, b, sym: Answer(200, f.state.position_json(sym))),
    _r("DELETE", "/v2/positions/(?P<sym>[^/]+)", lambda f, q, b, sym: Answer(
        200, f.state.close_position(sym, q.get("qty"), q.get("percentage")))),
    _r("GET", "/v2/orders", lambda f, q, b: Answer(200, f.state.list_orders(
        q.get("status", "open"), int(q.get("limit") or 50),
        [s for s in q.get("symbols", "").split(",") if s], q.get("direction", "desc")))),
    _r("POST", "/v2/orders", lambda f, q, b: Answer(200, f.state.submit(b or {}))),
    _r("DELETE", "/v2/orders", lambda f, q, b: Answer(207, f.state.cancel_all())),
    _r("GET", "/v2/orders:by_client_order_id", lambda f, q, b: Answer(
        200, f.state.order_by_client_id(q.get("client_order_id", "")))),
    _r("GET", "/v2/orders/(?P<oid>[^/]+)", lambda f, q, b, oid: Answer(200, f.state.order_json(oid))),
    _r("DELETE", "/v2/orders/(?P<oid>[^/]+)", lambda f, q, b, oid: (f.state.cancel(oid), Answer(204))[1]),
    _r("GET", "/v2/clock", lambda f, q, b: Answer(200, f.state.clock_json())),
    _r("GET", "/v2/calendar", _calendar),
    _r("GET", "/v2/assets/(?P<sym>[^/]+)", lambda f, q, b, sym: Answer(200, f.state.asset_json(sym))),
    _r("GET", "/v2/stocks/bars", _bars),
    _r("GET", "/v2/stocks/snapshots", _snapshots),
    _r("GET", "/v2/stocks/quotes/latest", _latest_quotes),
]


# --- faults --------------------------------------------------------------------------------
HTML_ERRORS = {503: b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
         504: b"<html><body><h1>504 Gateway Time-out</h1></body></html>"}


def fault_answer(fault: "Fault", body: Any) -> Answer | None:
    """The answer a fault gives instead of handling the request (None: handle it)."""
    kind, symbol = fault.kind, (body or {}).get("symbol", "?") if isinstance(body, dict) else "?"
    if kind in ("http_503", "http_504"):
        code = int(kind[-3:])
        return Answer(code, headers={"Content-Type": "text/html"}, raw=HTML_ERRORS[code])
    if kind == "reply" and not fault.handle:
        return Answer(fault.status, fault.body)
    if kind == "http_500":
        return Answer(500, {"code": 50010000, "message": "internal server error occurred"})
    if kind == "http_429":   # Alpaca documents X-RateLimit-* (Reset: UNIX epoch seconds), not Retry-After
        return rate_limited({"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "0",
                             "X-RateLimit-Reset": str(int(time.time()) + fault.retry_after)})
    if kind == "reject_buying_power":
        return Answer(403, {"buying_power": "0", "code": 40310000, "cost_basis": "1",
                             "message": "insufficient buying power"})
    if kind == "duplicate_client_order_id":
        return Answer(422, {"code": 40010001, "message": "client_order_id must be unique"})
    if kind == "fractional_reject":
        return Answer(422, {"code": 42210000, "message": f'asset "{symbol}" is not fractionable'})
    return None


def rate_limited(headers: dict[str, str]) -> Answer:
    return Answer(429, {"code": 42910000, "message": "too many requests"}, dict(headers))


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeAlpaca/1.0"
    # One send per answer (headers + body) and no Nagle: avoids 40 ms delayed-ACK stalls on loopback.
    wbufsize = -1
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_PATCH = do_GET

    def log_message(self, fmt: str, *args: Any) -> None:   # request line only: never headers
        log.debug("fake alpaca %s %s", self.command, urlsplit(self.path).path)

    def _dispatch(self) -> None:
        fake: FakeAlpacaServer = self.server.fake  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        path, query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            body = self._read_body()
        except ValueError:
            self._send(Answer(400, {"message": "request body is not valid JSON"}))
            return
        if path.startswith("/_fake/"):
            self._send(fake.control(self.command, path, body))
            return
        if not fake._authorised(self.headers):
            self._send(Answer(401, {"message": "unauthorized"}))
            return
        fake._record(RequestRecord(self.command, path, query, body))
        allowed, limits = fake.rate_limit()
        if not allowed:
            self._send(rate_limited(limits))
            return
        fault = fake._take_fault(self.command, path)
        if fault and fault.kind == "partial_fill" and isinstance(body, dict):
            body["_partial"] = True
        if fault and fault.kind == "drop_connection":
            self.close_connection = True
            return
        answer = fault_answer(fault, body) if fault else None
        if answer is None:
            answer = route(fake, self.command, path, query, body)
        if fault and fault.kind == "lost_response":
            self.close_connection = True   # the order is recorded; the client never hears back
            return
        if fault and fault.kind == "reply" and fault.handle:
            answer = Answer(fault.status, fault.body)
        if fault and fault.kind == "accept_then_504":
            answer = Answer(504, headers={"Content-Type": "text/html"}, raw=HTML_ERRORS[504])
        if fault and fault.kind == "latency":
            time.sleep(fault.seconds)
        answer.headers = {**limits, **answer.headers}
        self._send(answer)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw, parse_float=Decimal) if raw.strip() else None

    def _send(self, answer: Answer) -> None:
        raw = answer.raw if answer.raw is not None else (
            b"" if answer.payload is None else json.dumps(answer.payload).encode())
        fake = getattr(self.server, "fake", None)
        if fake is not None and answer.status < 600:
            fake.observe(self.command, urlsplit(self.path).path, answer.status, answer.headers, answer.payload, raw)
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
            for key, value in answer.headers.items():
                if key != "Content-Type":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):   # the client gave up (timeout fault)
            self.close_connection = True
