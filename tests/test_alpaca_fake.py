"""The loopback Alpaca fake itself: auth, control endpoints, faults, fill rules, no look-ahead (SPEC §2)."""
from __future__ import annotations

import time
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import requests

from tradebook.testing.alpaca_fake.server import FakeAlpacaServer
from tradebook.marketdata import load_bars

NY = ZoneInfo("America/New_York")
AUTH = {"APCA-API-KEY-ID": "PKFAKETEST1", "APCA-API-SECRET-KEY": "SKFAKETEST1"}
WED_10 = datetime(2011, 7, 6, 10, 0, tzinfo=NY)


@pytest.fixture
def fake():
    with FakeAlpacaServer(start=WED_10, non_fractionable=("IBM",)) as server:
        yield server


def call(fake, method, path, json=None, **params):
    return requests.request(method, fake.url + path, headers=AUTH, json=json, params=params or None, timeout=5)


def order(symbol="AAPL", qty="2", side="buy", cid="c1", **extra):
    return {"symbol": symbol, "qty": qty, "side": side, "type": "market", "time_in_force": "day",
            "client_order_id": cid, **extra}


def test_request_when_auth_headers_missing_then_401_and_not_recorded(fake):
    answer = requests.get(fake.url + "/v2/account", timeout=5)
    assert answer.status_code == 401 and answer.json() == {"message": "unauthorized"}
    assert fake.requests == []


def test_request_when_configured_keys_differ_then_401():
    with FakeAlpacaServer(start=WED_10, key_id="PKRIGHT", secret_key="SKRIGHT") as strict:
        assert call(strict, "GET", "/v2/account").status_code == 401
        good = {"APCA-API-KEY-ID": "PKRIGHT", "APCA-API-SECRET-KEY": "SKRIGHT"}
        assert requests.get(strict.url + "/v2/account", headers=good, timeout=5).status_code == 200
        assert "SKRIGHT" not in repr(strict)


def test_account_when_served_then_money_as_decimal_strings(fake):
    body = call(fake, "GET", "/v2/account").json()
    assert body["status"] == "ACTIVE" and body["cash"] == "100000" and isinstance(body["buying_power"], str)


def test_control_clock_when_posted_then_time_moves_and_never_backwards(fake):
    later = datetime(2011, 7, 7, 11, 0, tzinfo=NY)
    assert requests.post(fake.url + "/_fake/clock", json={"now": later.isoformat()}, timeout=5).ok
    assert fake.now == later
    clock = call(fake, "GET", "/v2/clock").json()
    assert clock["is_open"] is True and clock["timestamp"].startswith("2011-07-07T11:00:00")
    back = requests.post(fake.url + "/_fake/clock", json={"now": WED_10.isoformat()}, timeout=5)
    assert back.status_code == 400 and "only moves forward" in back.json()["message"]


def test_control_faults_when_posted_then_next_matching_request_fails_once(fake):
    posted = requests.post(fake.url + "/_fake/faults", json={"kind": "http_503", "path": "/v2/clock"}, timeout=5)
    assert posted.ok
    assert call(fake, "GET", "/v2/account").status_code == 200
    failed = call(fake, "GET", "/v2/clock")
    assert failed.status_code == 503 and failed.headers["Content-Type"] == "text/html"
    assert call(fake, "GET", "/v2/clock").status_code == 200
    bad = requests.post(fake.url + "/_fake/faults", json={"kind": "meteor"}, timeout=5)
    assert bad.status_code == 400


def test_inject_when_wildcard_path_and_method_then_only_those_match(fake):
    fake.inject("http_500", times=2, path="/v2/orders*", method="GET")
    assert call(fake, "POST", "/v2/orders", order()).status_code == 200
    assert call(fake, "GET", "/v2/orders:by_client_order_id", client_order_id="c1").status_code == 500
    assert call(fake, "GET", "/v2/orders").status_code == 500
    assert call(fake, "GET", "/v2/orders").status_code == 200
    with pytest.raises(ValueError, match="unknown fault kind"):
        fake.inject("meteor")


def test_fault_when_429_then_x_ratelimit_headers_and_no_retry_after(fake):
    """Alpaca documents X-RateLimit-Limit/Remaining/Reset (epoch seconds) on 429, not Retry-After."""
    fake.inject("http_429", retry_after=7)
    answer = call(fake, "GET", "/v2/account")
    assert answer.status_code == 429 and "Retry-After" not in answer.headers
    assert answer.json()["code"] == 42910000 and answer.headers["X-RateLimit-Remaining"] == "0"
    assert 5 <= int(answer.headers["X-RateLimit-Reset"]) - time.time() <= 8


def test_fault_when_lost_response_then_order_recorded_but_connection_dropped(fake):
    fake.inject("lost_response")
    with pytest.raises(requests.ConnectionError):
        call(fake, "POST", "/v2/orders", order())
    assert call(fake, "GET", "/v2/orders:by_client_order_id", client_order_id="c1").json()["status"] == "filled"


def test_submit_when_same_client_id_twice_then_422_unique(fake):
    assert call(fake, "POST", "/v2/orders", order()).ok
    dup = call(fake, "POST", "/v2/orders", order())
    assert dup.status_code == 422 and dup.json() == {"code": 40010001, "message": "client_order_id must be unique"}


@pytest.mark.parametrize("body, message", [
    (order(symbol="IBM", qty="1.5"), 'asset "IBM" is not fractionable'),
    (order(qty="1.5", time_in_force="gtc"), "fractional orders must be DAY orders"),
    (order(qty=None, notional="100", type="limit", limit_price="40"), "notional orders must be market orders"),
])
def test_submit_when_fractional_rule_broken_then_422(fake, body, message):
    answer = call(fake, "POST", "/v2/orders", body)
    assert answer.status_code == 422 and answer.json() == {"code": 42210000, "message": message}
    assert fake.state.orders == {}


def test_submit_when_cost_exceeds_buying_power_then_403_with_details(fake):
    answer = call(fake, "POST", "/v2/orders", order(qty="5000"))
    body = answer.json()
    assert answer.status_code == 403 and body["code"] == 40310000 and body["message"] == "insufficient buying power"
    assert body["buying_power"] == "100000"


def test_market_order_when_sent_after_close_then_accepted_and_fills_at_next_open(fake):
    fake.set_time(datetime(2011, 7, 8, 17, 0, tzinfo=NY))   # Friday evening
    placed = call(fake, "POST", "/v2/orders", order()).json()
    assert placed["status"] == "accepted" and placed["filled_qty"] == "0"
    fake.set_time(datetime(2011, 7, 11, 9, 45, tzinfo=NY))   # Monday after the open
    filled = call(fake, "GET", f"/v2/orders/{placed['id']}").json()
    open_ask = fake.market.quote("AAPL", datetime(2011, 7, 11, 9, 30, tzinfo=NY))[1]
    assert filled["status"] == "filled" and float(filled["filled_avg_price"]) == open_ask


def test_prices_when_before_during_after_session_then_prev_close_line_close(fake):
    bars = load_bars(["MSFT"]).set_index("date")
    m, day = fake.market, date(2011, 7, 6)
    prev, today = bars.loc[date(2011, 7, 5)], bars.loc[day]
    assert m.mid("MSFT", datetime(2011, 7, 6, 9, 0, tzinfo=NY)) == round(prev["close"], 2)
    assert m.mid("MSFT", datetime(2011, 7, 6, 9, 30, tzinfo=NY)) == round(today["open"], 2)
    noon = m.mid("MSFT", datetime(2011, 7, 6, 12, 45, tzinfo=NY))
    assert noon == round((today["open"] + today["close"]) / 2, 2)
    assert m.mid("MSFT", datetime(2011, 7, 6, 17, 0, tzinfo=NY)) == round(today["close"], 2)
    bid, ask = m.quote("MSFT", WED_10)
    assert ask > bid


def test_bars_when_session_in_progress_then_today_served_only_after_close(fake):
    params = {"symbols": "AAPL", "timeframe": "1Day", "start": "2011-07-01T00:00:00-04:00", "feed": "iex"}
    during = call(fake, "GET", "/v2/stocks/bars", **params).json()["bars"]["AAPL"]
    assert during[-1]["t"] == "2011-07-05T04:00:00Z" and {"n", "vw"} <= set(during[-1])
    fake.set_time(datetime(2011, 7, 6, 16, 0, tzinfo=NY))
    after = call(fake, "GET", "/v2/stocks/bars", **params).json()["bars"]["AAPL"]
    assert after[-1]["t"] == "2011-07-06T04:00:00Z"


def test_close_all_positions_when_sdk_calls_then_positions_flat(fake):
    """DELETE /v2/positions?cancel_orders=True, parsed by alpaca-py's ClosePositionResponse."""
    from alpaca.trading.client import TradingClient

    fake.seed_position("AAPL", 3, 40.0)
    fake.seed_position("MSFT", 1.5, 20.0)
    client = TradingClient("PKFAKETEST1", "SKFAKETEST1", url_override=fake.url)
    responses = client.close_all_positions(cancel_orders=True)
    assert sorted(r.symbol for r in responses) == ["AAPL", "MSFT"] and client.get_all_positions() == []


def test_clock_protocol_when_demo_drives_it_then_sessions_and_advance(fake):
    """The demo drives the fake like SimBroker: clock(), first_session_on_or_after(), advance_to()."""
    session = fake.first_session_on_or_after(date(2011, 11, 24))   # Thanksgiving -> the half day after
    assert session.day == date(2011, 11, 25) and session.close.hour == 13
    fake.advance_to(session.open)
    assert fake.clock().now == session.open and fake.clock().is_open


def test_request_log_when_calls_made_then_counted_and_served_remotely(fake):
    call(fake, "GET", "/v2/clock")
    call(fake, "GET", "/v2/clock")
    assert fake.count("GET", "/v2/clock") == 2
    remote = requests.get(fake.url + "/_fake/requests", timeout=5).json()
    assert remote == [{"method": "GET", "path": "/v2/clock"}] * 2


def test_server_when_stopped_then_connection_refused():
    server = FakeAlpacaServer(start=WED_10).start()
    url = server.url
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/v2/clock", headers=AUTH, timeout=2)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url


def test_demo_fake_when_entered_then_fake_keys_used_and_env_restored(monkeypatch, make_params):
    """The demo never sends real keys, even to loopback; the environment is restored after."""
    from tradebook.broker.alpaca.broker import AlpacaBroker
    from tradebook.testing.alpaca_fake.server import demo_fake

    monkeypatch.setenv("APCA_API_KEY_ID", "PKREALKEYDONOTSEND")
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    with demo_fake(start=date(2011, 7, 1)) as (overrides, fake):
        assert fake.now == datetime(2011, 7, 1, 8, 0, tzinfo=NY) and overrides["mode"] == "paper"
        broker = AlpacaBroker.from_params(make_params(**overrides))
        assert broker.account().cash == 100_000.0   # the fake accepts only its own demo keys
    import os
    assert os.environ["APCA_API_KEY_ID"] == "PKREALKEYDONOTSEND" and "APCA_API_SECRET_KEY" not in os.environ


# --- venue realism (issue 14, VEN-2) ------------------------------------------------------------
def test_holding_when_partial_exit_of_multiday_position_then_intraday_weighted_eod_fifo():
    """Alpaca's average entry price: weighted average intraday (a sell leaves it), compressed FIFO at end of day."""
    from decimal import Decimal as D

    from tradebook.testing.alpaca_fake.venue import Holding

    h = Holding(D(0), D(0))
    h.buy(D(10), D(100))
    h.end_of_day()
    h.buy(D(10), D(110))
    assert h.avg == D(105)
    h.sell(D(10))
    assert h.avg == D(105) and h.qty == D(10)    # intraday: unchanged by the sell
    h.end_of_day()
    assert h.avg == D(110)                       # FIFO: the day-1 lot was sold first


def test_bars_when_feed_unknown_then_400_and_sip_recent_on_free_plan_then_403(fake):
    base = {"symbols": "AAPL", "timeframe": "1Day", "start": "2011-06-01T00:00:00Z"}
    assert call(fake, "GET", "/v2/stocks/bars", feed="delayed_sip", **base).status_code == 400
    refused = call(fake, "GET", "/v2/stocks/bars", feed="sip", **base)
    assert refused.status_code == 403 and "recent SIP" in refused.json()["message"]
    old = call(fake, "GET", "/v2/stocks/bars", feed="sip", end="2011-07-06T09:30:00-04:00", **base)
    iex = call(fake, "GET", "/v2/stocks/bars", feed="iex", end="2011-07-06T09:30:00-04:00", **base)
    assert old.ok and iex.ok and iex.json()["bars"]["AAPL"][-1]["v"] < old.json()["bars"]["AAPL"][-1]["v"] / 10


def test_rate_limit_when_exceeded_then_429_with_x_ratelimit_headers():
    from tradebook.testing.alpaca_fake.venue import VenueOptions

    with FakeAlpacaServer(start=WED_10, venue=VenueOptions(rate_limit=2, rate_window_s=30)) as limited:
        answers = [call(limited, "GET", "/v2/clock") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["X-RateLimit-Remaining"] == "1" and answers[2].headers["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" not in answers[2].headers and int(answers[2].headers["X-RateLimit-Reset"]) > time.time()


def test_account_when_clock_passes_a_close_then_last_equity_is_that_closes_equity(fake):
    """Alpaca's last_equity is "equity as of previous trading day at 16:00:00 ET" (Trading API spec,
    Account; balance_asof: "the date of the snapshot for last_* fields"): it stays put while equity
    moves during the session and rolls when the clock passes a session close."""
    from tradebook.broker.alpaca.convert import to_account

    fake.seed_position("AAPL", 100, 40.0)
    before = call(fake, "GET", "/v2/account").json()
    prev_close = round(fake.state.market.previous_bar("AAPL", WED_10.date()).close, 2)
    assert before["balance_asof"] == "2011-07-05"
    assert float(before["last_equity"]) == pytest.approx(100_000 + 100 * prev_close)
    fake.set_time(datetime(2011, 7, 6, 15, 0, tzinfo=NY))
    during = call(fake, "GET", "/v2/account").json()
    assert during["equity"] != before["equity"] and during["last_equity"] == before["last_equity"]
    fake.set_time(datetime(2011, 7, 7, 9, 0, tzinfo=NY))      # Wednesday's close has passed
    after = call(fake, "GET", "/v2/account").json()
    wed_close = round(fake.state.market.bar("AAPL", date(2011, 7, 6)).close, 2)
    assert after["balance_asof"] == "2011-07-06"
    assert float(after["last_equity"]) == pytest.approx(100_000 + 100 * wed_close)
    assert to_account(after, True).last_equity == pytest.approx(100_000 + 100 * wed_close)
