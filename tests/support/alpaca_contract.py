"""Alpaca's published contract, the facts tradebook depends on (VEN-1, VEN-2, EXE-2..5).

Taken (facts, not text) from Alpaca's OpenAPI specifications, Trading API 2.0.1 and Market
Data API 1.1, as published in alpacahq/alpaca-mcp-server (src/alpaca_mcp_server/specs/
trading-api.json and market-data-api.json), and from alpaca-py 0.44's models. Every answer the
loopback fake gives during the test suite is checked against them (conftest.py); an answer
that breaks them fails the test that caused it.

Field notation: ``"str"``, ``"int"``, ``"num"`` (int or float), ``"bool"``, ``"uuid"``,
``"datetime"`` (RFC 3339), ``"date"``, ``"array"``, ``"object"``, ``"enum:Name"``,
a schema name (nested object); a trailing ``?`` means nullable. A field the spec does not
name is a violation unless it is listed in ``DELIBERATE``.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime
from typing import Any

ENUMS: dict[str, tuple[str, ...]] = {
    "OrderStatus": ("new", "partially_filled", "filled", "done_for_day", "canceled", "expired", "replaced",
                    "pending_cancel", "pending_replace", "accepted", "pending_new", "accepted_for_bidding",
                    "stopped", "rejected", "suspended", "calculated", "held"),
    "AccountStatus": ("INACTIVE", "PAPER_ONLY", "ONBOARDING", "SUBMISSION_FAILED", "SUBMITTED", "ACCOUNT_UPDATED",
                      "APPROVAL_PENDING", "ACTIVE", "REJECTED", "ACCOUNT_CLOSED", "APPROVED",
                      "ACCOUNT_CLOSED_PENDING", "ACTION_REQUIRED", "LIMITED"),
    "AssetClass": ("us_equity", "us_option", "crypto", "ipo"),
    "OrderSide": ("buy", "sell"),
    "OrderType": ("market", "limit", "stop", "stop_limit", "trailing_stop"),
    "TimeInForce": ("day", "gtc", "opg", "cls", "ioc", "fok"),
    "OrderClass": ("simple", "bracket", "oco", "oto", "mleg", ""),
    "PositionIntent": ("buy_to_open", "buy_to_close", "sell_to_open", "sell_to_close"),
    "PositionSide": ("long", "short"),
    "Exchange": ("AMEX", "ARCA", "BATS", "NYSE", "NASDAQ", "NYSEARCA", "OTC"),
    "ExchangeForPosition": ("AMEX", "ARCA", "BATS", "NYSE", "NASDAQ", "NYSEARCA", "OTC", ""),
    "AssetStatus": ("active", "inactive"),
    "DtbpCheck": ("both", "entry", "exit"),
}
S = "str"
SCHEMAS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "Account": (("id", "status"), {
        "id": "uuid", "status": "enum:AccountStatus", "crypto_status": "enum:AccountStatus", "account_number": S,
        "currency": S, "buying_power": S, "regt_buying_power": S, "daytrading_buying_power": S,
        "non_marginable_buying_power": S, "options_buying_power": S, "cash": S, "accrued_fees": S,
        "portfolio_value": S, "equity": S, "last_equity": S, "long_market_value": S, "short_market_value": S,
        "initial_margin": S, "maintenance_margin": S, "last_maintenance_margin": S, "sma": S, "multiplier": S,
        "shorting_enabled": "bool", "pattern_day_trader": "bool", "daytrade_count": "int",
        "trading_blocked": "bool", "transfers_blocked": "bool", "account_blocked": "bool",
        "trade_suspended_by_user": "bool", "created_at": "datetime", "balance_asof": S,
        "intraday_adjustments": S, "pending_reg_taf_fees": S, "pending_transfer_in": S,
        "pending_transfer_out": S, "options_approved_level": "int", "options_trading_level": "int"}),
    "AccountConfigurations": ((), {
        "dtbp_check": "enum:DtbpCheck", "fractional_trading": "bool", "max_margin_multiplier": S,
        "no_shorting": "bool", "pdt_check": S, "suspend_trade": "bool", "trade_confirm_email": S,
        "ptp_no_exception_entry": "bool", "disable_overnight_trading": "bool", "max_options_trading_level": "int"}),
    "Position": (("asset_id", "symbol", "exchange", "asset_class", "avg_entry_price", "qty", "side",
                  "market_value", "cost_basis", "unrealized_pl", "unrealized_plpc", "unrealized_intraday_pl",
                  "unrealized_intraday_plpc", "current_price", "lastday_price", "change_today",
                  "asset_marginable"), {
        "asset_id": "uuid", "symbol": S, "exchange": "enum:ExchangeForPosition", "asset_class": "enum:AssetClass",
        "asset_marginable": "bool", "avg_entry_price": S, "qty": S, "qty_available": S,
        "side": "enum:PositionSide", "market_value": S, "cost_basis": S, "unrealized_pl": S, "unrealized_plpc": S,
        "unrealized_intraday_pl": S, "unrealized_intraday_plpc": S, "current_price": S, "lastday_price": S,
        "change_today": S}),
    # The spec requires notional, type, time_in_force; tradebook also reads the rest (and alpaca-py requires them).
    "Order": (("notional", "type", "time_in_force", "id", "client_order_id", "status", "created_at", "filled_qty",
               "side", "symbol"), {
        "id": "uuid", "client_order_id": S, "created_at": "datetime", "updated_at": "datetime?",
        "submitted_at": "datetime?", "filled_at": "datetime?", "expired_at": "datetime?",
        "canceled_at": "datetime?", "failed_at": "datetime?", "replaced_at": "datetime?", "replaced_by": "uuid?",
        "replaces": "uuid?", "asset_id": "uuid", "symbol": S, "asset_class": "enum:AssetClass", "notional": "str?",
        "qty": "str?", "filled_qty": S, "filled_avg_price": "str?", "order_class": "enum:OrderClass",
        "order_type": S, "type": "enum:OrderType", "side": "enum:OrderSide", "position_intent": "enum:PositionIntent",
        "time_in_force": "enum:TimeInForce", "limit_price": "str?", "stop_price": "str?", "status": "enum:OrderStatus",
        "extended_hours": "bool", "legs": "array?", "trail_percent": "str?", "trail_price": "str?", "hwm": "str?",
        "expires_at": "datetime", "ratio_qty": "str?"}),
    "CanceledOrderResponse": ((), {"id": "uuid", "status": "int"}),
    "PositionClosed": (("symbol", "status"), {"symbol": S, "status": "int", "body": "Order"}),
    "Clock": (("timestamp", "is_open", "next_open", "next_close"), {
        "timestamp": "datetime", "is_open": "bool", "next_open": "datetime", "next_close": "datetime"}),
    "CalendarDay": (("date", "open", "close", "session_open", "session_close", "settlement_date"), {
        "date": "date", "open": S, "close": S, "session_open": S, "session_close": S, "settlement_date": "date"}),
    "Asset": (("id", "class", "exchange", "symbol", "name", "status", "tradable", "marginable", "shortable",
               "easy_to_borrow", "fractionable"), {
        "id": "uuid", "class": "enum:AssetClass", "exchange": "enum:Exchange", "symbol": S, "name": S,
        "status": "enum:AssetStatus", "tradable": "bool", "marginable": "bool", "shortable": "bool",
        "easy_to_borrow": "bool", "fractionable": "bool", "attributes": "array", "cusip": "str?",
        "maintenance_margin_requirement": "num", "margin_requirement_long": S, "margin_requirement_short": S,
        "min_order_size": S, "min_trade_increment": S, "price_increment": S}),
    "Error": (("code", "message"), {"code": "num", "message": S}),
    "ErrorResponse": (("message",), {"message": S}),
    "Bar": (("t", "o", "h", "l", "c", "v", "n", "vw"), {
        "t": "datetime", "o": "num", "h": "num", "l": "num", "c": "num", "v": "int", "n": "int", "vw": "num"}),
    "Quote": (("t", "bx", "bp", "bs", "ap", "as", "ax", "c", "z"), {
        "t": "datetime", "bx": S, "bp": "num", "bs": "int", "ap": "num", "as": "int", "ax": S, "c": "array", "z": S}),
    "Trade": (("t", "i", "x", "p", "s", "c", "z"), {
        "t": "datetime", "i": "int", "x": S, "p": "num", "s": "int", "c": "array", "z": S}),
    "Snapshot": ((), {"latestTrade": "Trade", "latestQuote": "Quote", "minuteBar": "Bar", "dailyBar": "Bar",
                      "prevDailyBar": "Bar"}),
    "BarsResponse": (("bars", "next_page_token"), {"bars": "map:list:Bar", "next_page_token": "str?",
                                                    "currency": S}),
    "LatestQuotesResponse": (("quotes",), {"quotes": "map:Quote", "currency": S}),
}
# Fields the fake sends on purpose although the spec does not name them (with the reason).
DELIBERATE: dict[str, dict[str, str]] = {
    # alpaca-py's CancelOrderResponse reads a body (the order) that the spec's schema leaves out.
    "CanceledOrderResponse": {"body": "alpaca-py CancelOrderResponse.body"},
    # Alpaca's real 403 bodies carry these details (alpaca-py issue #225; user reports).
    "Error": {"buying_power": "insufficient buying power details", "cost_basis": "insufficient buying power details",
              "existing_qty": "insufficient qty details", "held_for_orders": "insufficient qty details",
              "symbol": "insufficient qty details", "related_orders": "insufficient qty details",
              "reject_reason": "wash trade details", "existing_order_id": "wash trade details"},
}

DELIBERATE_KINDS = {"body": "Order", "related_orders": "array"}   # shapes of deliberate extras, where checked

# (method, path pattern) -> {status: schema}; "[X]" = array of X; "{X}" = map of X; None = empty body.
TRADING_ERRORS = {400: "Error", 401: "ErrorResponse", 403: "Error", 404: "Error", 409: "Error", 422: "Error",
                  429: "Error", 500: "Error"}
DATA_ERRORS = {400: "ErrorResponse", 401: "ErrorResponse", 403: "ErrorResponse", 429: "Error",
               500: "ErrorResponse"}
ENDPOINTS: list[tuple[str, str, dict[int, str | None]]] = [
    ("GET", r"/v2/account", {200: "Account"}),
    ("GET", r"/v2/account/configurations", {200: "AccountConfigurations"}),
    ("GET", r"/v2/positions", {200: "[Position]"}),
    ("DELETE", r"/v2/positions", {207: "[PositionClosed]"}),
    ("GET", r"/v2/positions/[^/]+", {200: "Position"}),
    ("DELETE", r"/v2/positions/[^/]+", {200: "Order"}),
    ("GET", r"/v2/orders", {200: "[Order]"}),
    ("POST", r"/v2/orders", {200: "Order"}),
    ("DELETE", r"/v2/orders", {207: "[CanceledOrderResponse]"}),
    ("GET", r"/v2/orders:by_client_order_id", {200: "Order"}),
    ("GET", r"/v2/orders/[^/]+", {200: "Order"}),
    ("DELETE", r"/v2/orders/[^/]+", {204: None}),
    ("GET", r"/v2/clock", {200: "Clock"}),
    ("GET", r"/v2/calendar", {200: "[CalendarDay]"}),
    ("GET", r"/v2/assets/[^/]+", {200: "Asset"}),
    ("GET", r"/v2/stocks/bars", {200: "BarsResponse"}),
    ("GET", r"/v2/stocks/snapshots", {200: "{Snapshot}"}),
    ("GET", r"/v2/stocks/quotes/latest", {200: "LatestQuotesResponse"}),
]
DATA_PREFIX = "/v2/stocks/"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
GATEWAY_HTML = (502, 503, 504)   # gateway errors arrive as HTML pages, not JSON


def check_answer(method: str, path: str, status: int, headers: dict[str, str], payload: Any,
                 raw: bytes = b"") -> list[str]:
    """Every way one answer breaks the contract (empty: it keeps it)."""
    where = f"{method} {path} -> {status}"
    problems = [f"{where}: {p}" for p in _check_headers(status, headers)]
    if status in GATEWAY_HTML:
        return problems
    expected = _expected(method, path, status)
    if expected is False:
        return problems + [f"{where}: status {status} is not an answer Alpaca documents for this endpoint"]
    if expected is None:
        if raw.strip():
            problems.append(f"{where}: body must be empty")
        return problems
    if payload is None and raw.strip():
        payload = json.loads(raw)
    return problems + [f"{where}: {p}" for p in check_value(expected, payload, "body")]


def _expected(method: str, path: str, status: int) -> str | None | bool:
    for verb, pattern, answers in ENDPOINTS:
        if verb == method and re.fullmatch(pattern, path):
            if status in answers:
                return answers[status]
            errors = DATA_ERRORS if path.startswith(DATA_PREFIX) else TRADING_ERRORS
            return errors.get(status, False)
    return False


def _check_headers(status: int, headers: dict[str, str]) -> list[str]:
    present = {h for h in RATE_HEADERS if any(k.lower() == h.lower() for k in headers)}
    out = []
    if status == 429 and present != set(RATE_HEADERS):
        out.append(f"429 without {', '.join(sorted(set(RATE_HEADERS) - present))}")
    if present and present != set(RATE_HEADERS):
        out.append("X-RateLimit-* headers come as a set of three")
    for name, value in headers.items():
        if name.lower() in {h.lower() for h in RATE_HEADERS} and not re.fullmatch(r"\d+", str(value)):
            out.append(f"{name} must be an integer (Reset: UNIX epoch seconds), got {value!r}")
        if name.lower() == "retry-after":
            out.append("Retry-After is not a header Alpaca documents (X-RateLimit-Reset is)")
    return out


def check_value(kind: str, value: Any, where: str) -> list[str]:
    """Problems of ``value`` against a field kind or schema name."""
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        return [] if nullable else [f"{where}: null where {kind} is not nullable"]
    if kind.startswith("[") and kind.endswith("]"):
        if not isinstance(value, list):
            return [f"{where}: expected an array, got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in check_value(kind[1:-1], item, f"{where}[{i}]")]
    if kind.startswith("{") and kind.endswith("}"):
        kind = "map:" + kind[1:-1]
    if kind.startswith("map:"):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        inner = kind[4:]
        inner = f"[{inner[5:]}]" if inner.startswith("list:") else inner
        return [p for key, item in value.items() for p in check_value(inner, item, f"{where}.{key}")]
    if kind in SCHEMAS:
        return check_object(kind, value, where)
    return _check_scalar(kind, value, where)


def check_object(name: str, value: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: {name} must be an object, got {type(value).__name__}"]
    required, fields = SCHEMAS[name]
    out = [f"{where}: {name} lacks required field {field!r}" for field in required if field not in value]
    allowed = DELIBERATE.get(name, {})
    for key, item in value.items():
        if key in fields:
            out += check_value(fields[key], item, f"{where}.{key}")
        elif key in allowed and key in DELIBERATE_KINDS:
            out += check_value(DELIBERATE_KINDS[key], item, f"{where}.{key}")
        elif key not in allowed:
            out.append(f"{where}: {name} has no field {key!r} in Alpaca's spec")
    return out


def _check_scalar(kind: str, value: Any, where: str) -> list[str]:
    if kind.startswith("enum:"):
        values = ENUMS[kind[5:]]
        return [] if value in values else [f"{where}: {value!r} is not a {kind[5:]} value"]
    ok = {"str": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "num": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict),
          "uuid": _is_uuid, "datetime": _is_datetime, "date": _is_date}[kind]
    return [] if ok(value) else [f"{where}: expected {kind}, got {value!r}"]


def _is_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(uuid.UUID(value))
    except ValueError:
        return False


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str) or not re.search(r"(Z|[+-]\d\d:\d\d)$", value):
        return False   # RFC 3339 needs an offset
    try:
        return bool(datetime.fromisoformat(value))
    except ValueError:
        return False


def _is_date(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(date.fromisoformat(value))
    except ValueError:
        return False


class ContractLog:
    """Collects violations from the fake's answers during one test (see conftest.py)."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.checked = 0
        self.seen: list[tuple[str, str, int]] = []   # (method, path, status) of every answer checked

    def __call__(self, method: str, path: str, status: int, headers: dict[str, str], payload: Any,
                 raw: bytes = b"") -> None:
        self.checked += 1
        self.seen.append((method, path, status))
        self.violations += check_answer(method, path, status, headers, payload, raw)

    def take(self) -> list[str]:
        """The violations so far (cleared): for tests that break the contract on purpose."""
        out, self.violations = self.violations, []
        return out
