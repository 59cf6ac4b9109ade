"""The Alpaca contract checks themselves (VEN-1, VEN-2): they see every fake answer and they bite.

conftest.py's autouse ``alpaca_contract`` fixture checks each answer of the loopback fake
against tests/support/alpaca_contract.py (facts from Alpaca's OpenAPI specs and alpaca-py). These
tests show the checks run, and that a wrong field type, an unknown enum value, a missing
field, a null where the spec has none and an undocumented header all fail them.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from support.alpaca_contract import check_answer, check_object, check_value

from tradebook.testing.alpaca_fake import models as alpaca_fake_models
from tradebook.testing.alpaca_fake.server import FakeAlpacaServer
from tradebook.testing.alpaca_fake.venue import VenueOptions

NY = ZoneInfo("America/New_York")
AUTH = {"APCA-API-KEY-ID": "PKCONTRACT1", "APCA-API-SECRET-KEY": "SKCONTRACT1"}
OPEN_DAY = datetime(2011, 7, 6, 10, 0, tzinfo=NY)


@pytest.fixture
def fake():
    venue = VenueOptions(cancel_delay_s=30, margin=True, wash_trade_check=True)
    with FakeAlpacaServer(start=OPEN_DAY, venue=venue) as server:
        yield server


def call(fake, method, path, json=None, **params):
    return requests.request(method, fake.url + path, headers=AUTH, json=json, params=params or None, timeout=5)


def order(cid, side="buy", qty="2", **extra):
    return {"symbol": "AAPL", "qty": qty, "side": side, "type": "market", "time_in_force": "day",
            "client_order_id": cid, **extra}


def test_fake_when_every_endpoint_called_then_each_answer_checked_and_clean(fake, alpaca_contract):
    """VEN-2: one call per endpoint tradebook uses, success and error answers, all within the contract."""
    call(fake, "POST", "/v2/orders", order("c1"))
    call(fake, "POST", "/v2/orders", order("c2", side="sell", qty="1", type="limit", limit_price="999",
                                           time_in_force="gtc"))
    for path, params in [("/v2/account", {}), ("/v2/account/configurations", {}), ("/v2/positions", {}),
                         ("/v2/positions/AAPL", {}), ("/v2/orders", {"status": "all"}),
                         ("/v2/orders:by_client_order_id", {"client_order_id": "c1"}), ("/v2/clock", {}),
                         ("/v2/calendar", {"start": "2011-07-01", "end": "2011-07-08"}), ("/v2/assets/AAPL", {}),
                         ("/v2/stocks/bars", {"symbols": "AAPL", "timeframe": "1Day", "feed": "iex",
                                              "start": "2011-06-01T00:00:00Z"}),
                         ("/v2/stocks/snapshots", {"symbols": "AAPL,MSFT", "feed": "iex"}),
                         ("/v2/stocks/quotes/latest", {"symbols": "AAPL", "feed": "iex"}),
                         ("/v2/positions/ZZZZ", {}), ("/v2/assets/ZZZZ", {})]:
        call(fake, "GET", path, **params)
    call(fake, "POST", "/v2/orders", order("c1"))                          # 422 duplicate
    call(fake, "POST", "/v2/orders", order("c3", side="sell", qty="5"))    # 403 insufficient qty
    call(fake, "DELETE", "/v2/orders/" + fake.state.by_client_id["c2"])    # 204, pending_cancel
    call(fake, "DELETE", "/v2/orders")
    call(fake, "DELETE", "/v2/positions/AAPL", qty="1")
    call(fake, "DELETE", "/v2/positions", cancel_orders="True")
    call(fake, "GET", "/v2/stocks/bars", symbols="AAPL", timeframe="1Day", feed="sip")   # 403 recent SIP
    fake.inject("http_429")
    call(fake, "GET", "/v2/clock")
    fake.inject("http_503")
    call(fake, "GET", "/v2/clock")
    # Observers are per class: a server left by an earlier test in this worker may answer a late
    # request too, so count this fake's answers by path rather than the total.
    mine = [s for s in alpaca_contract.seen if s[1].startswith("/v2/")]
    assert len(mine) >= 25 and alpaca_contract.violations == []
    assert {s[1].split("?")[0] for s in mine} >= {
        "/v2/orders", "/v2/account", "/v2/account/configurations", "/v2/positions", "/v2/positions/AAPL",
        "/v2/orders:by_client_order_id", "/v2/clock", "/v2/calendar", "/v2/assets/AAPL", "/v2/stocks/bars",
        "/v2/stocks/snapshots", "/v2/stocks/quotes/latest", "/v2/positions/ZZZZ", "/v2/assets/ZZZZ"}


def test_fake_when_field_type_wrong_then_contract_fails(fake, alpaca_contract, monkeypatch):
    """A quantity sent as a JSON number (the spec says string) is caught."""
    original = alpaca_fake_models.FakeOrder.to_json
    monkeypatch.setattr(alpaca_fake_models.FakeOrder, "to_json",
                        lambda self: {**original(self), "qty": float(self.qty or 0)})
    call(fake, "POST", "/v2/orders", order("c1"))
    found = alpaca_contract.take()
    assert found and "body.qty: expected str, got 2.0" in found[0]


def test_fake_when_order_status_unknown_then_contract_fails(fake, alpaca_contract):
    """VEN-1: an order status outside Alpaca's OrderStatus enum is a contract violation (shown on demand)."""
    call(fake, "POST", "/v2/orders", order("c1"))
    fake.show_status("c1", "awaiting_moon")
    call(fake, "GET", "/v2/orders:by_client_order_id", client_order_id="c1")
    assert alpaca_contract.take() == ["GET /v2/orders:by_client_order_id -> 200: body.status: 'awaiting_moon' "
                                      "is not a OrderStatus value"]


def test_fake_when_asset_class_unknown_then_contract_fails(fake, alpaca_contract):
    fake.seed_position("XYZ", 1, 10.0, asset_class="tokenized_art")
    call(fake, "GET", "/v2/positions")
    assert any("'tokenized_art' is not a AssetClass value" in v for v in alpaca_contract.take())


def test_check_when_required_missing_null_or_unknown_field_then_named():
    bar = {"t": "2011-07-05T04:00:00Z", "o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 10, "n": None}
    problems = check_object("Bar", {**bar, "volume": 3}, "bar")
    assert "bar: Bar lacks required field 'vw'" in problems
    assert "bar.n: null where int is not nullable" in problems
    assert "bar: Bar has no field 'volume' in Alpaca's spec" in problems
    assert check_value("datetime", "2011-07-05T04:00:00", "t") == ["t: expected datetime, got '2011-07-05T04:00:00'"]


def test_check_when_429_has_retry_after_only_then_fails():
    """Alpaca documents X-RateLimit-Limit/Remaining/Reset on 429; Retry-After alone is not the contract."""
    problems = check_answer("GET", "/v2/clock", 429, {"Retry-After": "3"}, {"code": 42910000, "message": "slow"})
    assert any("429 without X-RateLimit-Limit" in p for p in problems)
    assert any("Retry-After is not a header Alpaca documents" in p for p in problems)


def test_check_when_status_undocumented_then_fails():
    assert check_answer("GET", "/v2/clock", 418, {}, {"code": 1, "message": "teapot"}) == [
        "GET /v2/clock -> 418: status 418 is not an answer Alpaca documents for this endpoint"]


def test_observers_when_test_ends_then_fixture_removed_its_log(alpaca_contract):
    assert FakeAlpacaServer.observers.count(alpaca_contract) == 1


def test_fake_divergences_when_triggered_then_each_listed_extra_is_sent_and_only_tolerated_by_name(fake):
    """Where the fake diverges from the spec on purpose (DELIBERATE), the extras are real: the fake sends
    each of them, and without its DELIBERATE entry each would be a violation."""
    from support import alpaca_contract as contract

    call(fake, "POST", "/v2/orders", order("c1"))
    answers = [call(fake, "POST", "/v2/orders", order("big", qty="100000")).json(),             # buying power
               call(fake, "POST", "/v2/orders", order("c2", side="sell", qty="5")).json()]       # held qty
    fake.state.venue.wash_trade_check = True
    call(fake, "POST", "/v2/orders", order("c3", side="sell", qty="1", type="limit", limit_price="999"))
    answers.append(call(fake, "POST", "/v2/orders", order("c4")).json())                          # wash trade
    answers.append(call(fake, "DELETE", "/v2/orders").json()[0])                                  # cancel body
    sent = {key for answer in answers for key in answer}
    for schema, extras in contract.DELIBERATE.items():
        assert set(extras) <= sent, f"{schema}: {set(extras) - sent} never sent by the fake"
    saved = dict(contract.DELIBERATE)
    try:
        contract.DELIBERATE.clear()
        assert check_object("Error", answers[0], "b") and check_object("CanceledOrderResponse", answers[3], "b")
    finally:
        contract.DELIBERATE.update(saved)


def _minimal(schema: str, **values):
    """An object with only the contract's required fields (sample values by kind)."""
    import uuid as _uuid

    from support.alpaca_contract import ENUMS, SCHEMAS

    required, fields = SCHEMAS[schema]
    sample = {"str": "1", "int": 1, "num": 1.0, "bool": True, "uuid": str(_uuid.uuid4()), "array": [],
              "datetime": "2011-07-06T14:00:00Z", "date": "2011-07-06"}
    out = {}
    for name in required:
        kind = fields[name].rstrip("?")
        out[name] = ENUMS[kind[5:]][0] if kind.startswith("enum:") else sample.get(kind)
    return {**out, **values}


def test_adapter_when_answers_carry_only_required_fields_then_parsed():
    """The adapter depends only on what Alpaca's contract guarantees (required fields; the rest optional)."""
    from tradebook.broker.alpaca import convert as cv

    order = cv.to_order(_minimal("Order"))
    position = cv.to_position(_minimal("Position"))
    account = cv.to_account(_minimal("Account"), fractional=True)
    clock = cv.to_clock(_minimal("Clock"))
    session = cv.to_session(_minimal("CalendarDay", open="09:30", close="13:00"))
    asset = cv.to_asset(_minimal("Asset"))
    assert order.status == "new" and position.qty == 1.0 and account.buying_power == 0.0
    assert clock.is_open and session.close.hour == 13 and asset.tradable


def test_parse_items_when_spec_ipo_example_and_a_broken_item_then_others_kept():
    """alpaca-py rejects a whole list on one enum value it lacks (the spec's IPO order: asset_class ipo);
    tradebook reads item by item and skips only what it cannot read, reporting it."""
    from tradebook.broker.alpaca import convert as cv

    good, ipo = _minimal("Order", client_order_id="a"), _minimal("Order", client_order_id="b", asset_class="ipo")
    broken = {k: v for k, v in _minimal("Order", client_order_id="c").items() if k != "id"}
    skipped: list[str] = []
    parsed = cv.parse_items([good, ipo, broken], cv.to_order, "list open orders", skipped.append)
    assert [o.client_order_id for o in parsed] == ["a", "b"] and len(skipped) == 1 and "(c: KeyError" in skipped[0]
