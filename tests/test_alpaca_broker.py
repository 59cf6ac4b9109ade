"""AlpacaBroker: the real alpaca-py client against the loopback fake (SPEC §2, EXE-1..5, OPS-6).

Every Broker call the adapter makes goes over HTTP to ``FakeAlpacaServer`` on 127.0.0.1.
Retry waits go to a recorder instead of ``time.sleep`` and the breaker reads a hand-moved
clock, so the tests are fast and deterministic; only the timeout tests wait (≤ 0.3 s).
"""
from __future__ import annotations

import logging
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tradebook.broker.alpaca.broker import LIVE_URL, PAPER_URL, AlpacaBroker
from tradebook.testing.alpaca_fake.server import FakeAlpacaServer
from tradebook.broker.base import Broker, OrderRequest
from tradebook.errors import (BrokerRejected, BrokerUnavailable, CircuitOpen, ConfigError, DuplicateClientOrderId,
                              FractionalNotSupported, OrderOutcomeUnknown, SecretsError, UnknownSymbol)
from tradebook.marketdata import load_bars

NY = ZoneInfo("America/New_York")
KEY, SECRET = "PKADAPTERTEST0001", "SKADAPTERTESTSECRET0001"
OPEN_DAY = datetime(2011, 7, 6, 10, 0, tzinfo=NY)   # a Wednesday, market open


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    monkeypatch.delenv("TRADEBOOK_LIVE", raising=False)


@pytest.fixture
def fake():
    with FakeAlpacaServer(start=OPEN_DAY, non_fractionable=("IBM",)) as server:
        yield server


class Ticker:
    """A hand-moved monotonic clock for the circuit breaker."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def make_broker(keys, fake, make_params, waits, ticker):
    def factory(on_circuit_open=None, **overrides) -> AlpacaBroker:
        values = {"mode": "paper", "alpaca.url_override": fake.url, "alpaca.data_url_override": fake.url,
                  "alpaca.timeout_s": 2.0, "alpaca.retries": 2, "alpaca.backoff_s": 0.01,
                  "alpaca.max_backoff_s": 0.05, **overrides}
        return AlpacaBroker.from_params(make_params(**values), on_circuit_open, sleep=waits.append, clock=ticker)
    return factory


@pytest.fixture
def broker(make_broker) -> AlpacaBroker:
    return make_broker()


def buy(symbol="AAPL", qty="2", cid="cid-1", kind="market", limit=None, tif="day") -> OrderRequest:
    return OrderRequest(symbol, "buy", Decimal(qty), cid, kind, None if limit is None else Decimal(limit), tif)


# --- mode safety and keys -------------------------------------------------------------------
def test_construct_when_keys_missing_then_secrets_error_names_variables(monkeypatch, make_params):
    """SPEC §2: keys only from env; the error names the variables, never values."""
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    with pytest.raises(SecretsError) as info:
        AlpacaBroker.from_params(make_params(mode="paper"))
    assert "APCA_API_KEY_ID" in str(info.value) and SECRET not in str(info.value)
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    with pytest.raises(SecretsError, match="APCA_API_KEY_ID and APCA_API_SECRET_KEY"):
        AlpacaBroker.from_params(make_params(mode="paper"))


def test_construct_when_live_without_env_opt_in_then_refused(keys, fake, make_params, monkeypatch):
    """SPEC §2: live needs params mode live AND env TRADEBOOK_LIVE=1."""
    params = make_params(mode="live", **{"alpaca.url_override": fake.url})
    with pytest.raises(SecretsError, match="TRADEBOOK_LIVE=1"):
        AlpacaBroker.from_params(params)
    monkeypatch.setenv("TRADEBOOK_LIVE", "yes")
    with pytest.raises(SecretsError):
        AlpacaBroker.from_params(params)
    monkeypatch.setenv("TRADEBOOK_LIVE", "1")
    live = AlpacaBroker.from_params(params)
    assert live.mode == "live" and live.account().equity == 100_000.0
    assert AlpacaBroker.from_params(make_params(mode="live")).trading_url == LIVE_URL   # no request made


def test_construct_when_paper_without_override_then_paper_url(keys, make_params):
    """Paper mode resolves to the paper trading URL (no request is made)."""
    assert AlpacaBroker.from_params(make_params(mode="paper")).trading_url == PAPER_URL


def test_construct_when_paper_points_at_live_url_then_config_error(keys, make_params):
    params = make_params(mode="paper", **{"alpaca.url_override": "https://api.alpaca.markets"})
    with pytest.raises(ConfigError, match="live trading API"):
        AlpacaBroker.from_params(params)


def test_construct_when_mode_sim_then_config_error(keys, make_params):
    with pytest.raises(ConfigError, match="paper or live"):
        AlpacaBroker.from_params(make_params())


def test_make_broker_when_mode_paper_then_alpaca_broker(keys, fake, make_params, root):
    from tradebook.broker import make_broker as factory

    made = factory(make_params(mode="paper", **{"alpaca.url_override": fake.url}), root)
    assert isinstance(made, AlpacaBroker) and isinstance(made, Broker)


def test_repr_when_keys_set_then_hidden_and_pickle_refused(broker):
    """OPS-6: neither repr nor pickling exposes the keys."""
    import pickle

    assert KEY not in repr(broker) and SECRET not in repr(broker)
    with pytest.raises(TypeError, match="credentials"):
        pickle.dumps(broker)


def test_call_when_keys_refused_then_secrets_error_without_keys(keys, make_params, waits):
    """A 401 is a key problem, not transient: no retry, a clear SecretsError."""
    with FakeAlpacaServer(start=OPEN_DAY, key_id="PKOTHER0000", secret_key="SKOTHER0000") as other:
        b = AlpacaBroker.from_params(make_params(mode="paper", **{"alpaca.url_override": other.url}),
                                     sleep=waits.append)
        with pytest.raises(SecretsError, match="refused") as info:
            b.account()
        assert KEY not in str(info.value) and SECRET not in str(info.value) and waits == []


# --- every call the adapter uses -----------------------------------------------------------
def test_account_when_fresh_then_cash_equity_and_fractional(broker):
    acct = broker.account()
    assert (acct.cash, acct.equity, acct.buying_power, acct.status) == (100_000.0, 100_000.0, 100_000.0, "ACTIVE")
    assert acct.fractional_enabled


def test_submit_when_market_fractional_then_filled_and_position(broker, fake):
    order = broker.submit(buy(qty="1.5"))
    ask = fake.market.quote("AAPL", OPEN_DAY)[1]
    assert (order.status, order.filled_qty, order.filled_avg_price) == ("filled", 1.5, ask)
    [pos] = broker.positions()
    assert (pos.symbol, pos.qty, pos.avg_price) == ("AAPL", 1.5, ask)
    assert broker.get_order("cid-1").broker_id == order.broker_id
    assert broker.account().cash == pytest.approx(100_000 - 1.5 * ask, abs=0.01)


def test_get_order_when_unknown_client_id_then_none(broker):
    assert broker.get_order("never-sent") is None


def test_submit_when_limit_not_marketable_then_open_and_cancel_by_client_id(broker):
    order = broker.submit(buy(kind="limit", limit="10.00", tif="gtc"))
    assert order.status == "new" and order.limit_price == 10.0
    assert [o.client_order_id for o in broker.open_orders()] == ["cid-1"]
    broker.cancel("cid-1")
    assert broker.get_order("cid-1").status == "canceled" and broker.open_orders() == []
    with pytest.raises(BrokerRejected) as again:
        broker.cancel("cid-1")
    assert again.value.code == "ORDER_NOT_CANCELABLE"
    with pytest.raises(BrokerRejected) as unknown:
        broker.cancel("nope")
    assert unknown.value.code == "ORDER_NOT_FOUND"


def test_submit_when_limit_becomes_marketable_later_then_fills_at_limit_else_expires(broker, fake):
    """The fake's AAPL rises on 2011-07-06 (bid 44.86 at 10:00, 45.20 at the close)."""
    fake.seed_position("AAPL", 5, 40.0)
    sell = broker.submit(OrderRequest("AAPL", "sell", Decimal(5), "s-1", "limit", Decimal("45.10")))
    broker.submit(buy(cid="b-1", kind="limit", limit="44.00"))
    assert sell.status == "new"
    fake.set_time(datetime(2011, 7, 6, 16, 5, tzinfo=NY))
    filled = broker.get_order("s-1")
    assert (filled.status, filled.filled_avg_price) == ("filled", 45.10)
    assert broker.get_order("b-1").status == "expired" and broker.positions() == []


def test_submit_notional_when_fractionable_then_fractional_fill(broker):
    order = broker.submit_notional("AAPL", "buy", Decimal("100"), "notional-1")
    assert order.status == "filled" and 0 < order.filled_qty < 3 and order.filled_qty != int(order.filled_qty)


def test_cancel_all_when_two_open_then_both_client_ids(broker):
    broker.submit(buy(cid="a", kind="limit", limit="10.00"))
    broker.submit(buy(cid="b", kind="limit", limit="11.00"))
    assert sorted(broker.cancel_all().client_order_ids) == ["a", "b"]
    assert broker.cancel_all().client_order_ids == ()


def test_close_position_when_held_then_sold_under_our_client_id(broker):
    broker.submit(buy(qty="3"))
    order = broker.close_position("AAPL", "close-AAPL")
    assert (order.client_order_id, order.side, order.qty, order.status) == ("close-AAPL", "sell", 3.0, "filled")
    assert broker.positions() == [] and broker.close_position("AAPL", "close-AAPL-2") is None


def test_close_position_when_fractional_in_non_fractionable_asset_then_delete_endpoint(broker, fake):
    """EXE-5: a fractional remainder Alpaca will not take as an order goes via DELETE /v2/positions."""
    fake.seed_position("IBM", 2.5, 170.0)
    broker.validate_fractional(["IBM"])
    order = broker.close_position("IBM", "close-IBM")
    assert order.status == "filled" and order.qty == 2.5
    assert fake.count("DELETE", "/v2/positions/IBM") == 1 and broker.positions() == []


def test_clock_and_calendar_when_asked_then_new_york_times_and_half_days(broker):
    clock = broker.clock()
    assert clock.now == OPEN_DAY and clock.is_open and clock.next_close == datetime(2011, 7, 6, 16, tzinfo=NY)
    sessions = broker.calendar(date(2011, 11, 23), date(2011, 11, 28))
    assert [s.day for s in sessions] == [date(2011, 11, 23), date(2011, 11, 25), date(2011, 11, 28)]
    assert sessions[1].close == datetime(2011, 11, 25, 13, 0, tzinfo=NY)


def test_asset_when_known_then_fractionable_flag_else_unknown_symbol(broker):
    assert broker.asset("AAPL").fractionable and not broker.asset("IBM").fractionable
    with pytest.raises(UnknownSymbol):
        broker.asset("ZZZZ")


def test_quotes_when_open_then_bid_ask_day_open_prev_close(broker):
    bars = load_bars(["AAPL"]).set_index("date")
    q = broker.quotes(["AAPL", "MSFT"])["AAPL"]
    assert q.bid < q.ask and q.ts == OPEN_DAY
    assert q.day_open == pytest.approx(bars.loc[date(2011, 7, 6), "open"], abs=1e-3)
    assert q.prev_close == pytest.approx(bars.loc[date(2011, 7, 5), "close"], abs=1e-3)


def test_quotes_when_before_open_then_prev_close_only(broker, fake):
    fake.set_time(datetime(2011, 7, 7, 9, 0, tzinfo=NY))
    q = broker.quotes(["AAPL"])["AAPL"]
    assert q.day_open is None
    assert q.prev_close == pytest.approx(load_bars(["AAPL"]).set_index("date").loc[date(2011, 7, 6), "close"], abs=1e-3)


def test_daily_bars_when_range_then_adjusted_bars_without_today(broker):
    frame = broker.daily_bars(["AAPL", "MSFT"], date(2011, 6, 1), date(2011, 7, 6))
    ref = load_bars(["AAPL", "MSFT"])
    ref = ref[(ref["date"] >= date(2011, 6, 1)) & (ref["date"] < date(2011, 7, 6))].reset_index(drop=True)
    assert list(frame.columns) == list(ref.columns) and len(frame) == len(ref)
    assert frame["close"].to_numpy() == pytest.approx(ref["close"].to_numpy(), abs=1e-3)


def test_daily_bars_when_no_symbols_then_empty_frame_without_request(broker, fake):
    frame = broker.daily_bars([], date(2011, 6, 1), date(2011, 6, 30))
    assert frame.empty and list(frame.columns) == list(load_bars(["AAPL"]).columns)
    assert fake.count("GET", "/v2/stocks/bars") == 0


def test_daily_bars_when_paged_then_all_pages_joined(keys, make_params):
    with FakeAlpacaServer(start=OPEN_DAY, page_size=7) as small:
        b = AlpacaBroker.from_params(make_params(mode="paper", **{"alpaca.url_override": small.url,
                                                                 "alpaca.data_url_override": small.url}))
        frame = b.daily_bars(["AAPL"], date(2011, 6, 1), date(2011, 6, 30))
        days = load_bars(["AAPL"])["date"]
        expected = int(((days >= date(2011, 6, 1)) & (days <= date(2011, 6, 30))).sum())
        assert len(frame) == expected and small.count("GET", "/v2/stocks/bars") == -(-expected // 7) > 1


# --- transient faults: retry ------------------------------------------------------------------
def test_call_when_500_once_then_retried_after_backoff(broker, fake, waits):
    """EXE-2: a 5xx is transient: retried with backoff."""
    fake.inject("http_500", path="/v2/account")
    assert broker.account().cash == 100_000.0
    assert fake.count("GET", "/v2/account") == 2 and waits == [0.01]


def test_call_when_503_persists_then_broker_unavailable_after_retries(broker, fake, waits):
    fake.inject("http_503", times=10, path="/v2/positions")
    with pytest.raises(BrokerUnavailable, match="HTTP 503.*3 attempt") as info:
        broker.positions()
    assert "<html>" not in str(info.value) and waits == [0.01, 0.02]


def test_call_when_429_then_waits_until_x_ratelimit_reset_capped(make_broker, fake, waits):
    """EXE-2: a 429 waits until X-RateLimit-Reset (epoch seconds), capped by alpaca.rate_limit_max_wait_s."""
    broker = make_broker(**{"alpaca.rate_limit_max_wait_s": 5.0})
    fake.inject("http_429", path="/v2/clock", retry_after=2)
    fake.inject("http_429", path="/v2/clock", retry_after=30)
    assert broker.clock().is_open
    assert 1.0 <= waits[0] <= 2.0 and waits[1] == 5.0 and fake.count("GET", "/v2/clock") == 3


def test_call_when_429s_exceed_breaker_threshold_then_breaker_stays_closed(make_broker, fake, waits):
    """EXE-4: rate limiting is the API answering, not failing: 429s never count toward the breaker."""
    broker = make_broker(api_breaker_failures=2, **{"alpaca.retries": 3})
    fake.inject("http_429", times=3, path="/v2/clock", retry_after=1)
    assert broker.clock().is_open and len(waits) == 3
    assert not broker.circuit_open and broker.breaker.status()["recent_failures"] == 0


def test_call_when_timeout_then_retried_and_succeeds(make_broker, fake, waits):
    """EXE-3: every call has a timeout; a slow answer is a transient failure."""
    broker = make_broker(**{"alpaca.timeout_s": 0.2})
    fake.inject("latency", path="/v2/account", seconds=0.6)
    assert broker.account().cash == 100_000.0 and len(waits) == 1


def test_call_when_timeout_and_no_retries_then_unavailable(make_broker, fake):
    broker = make_broker(**{"alpaca.timeout_s": 0.2, "alpaca.retries": 0})
    fake.inject("latency", path="/v2/clock", seconds=0.6)
    with pytest.raises(BrokerUnavailable, match="timeout after 1 attempt"):
        broker.clock()


def test_submit_when_429_persists_then_unavailable_not_unknown(broker, fake):
    """A 429 means the order was not taken: BrokerUnavailable, no look-ups."""
    fake.inject("http_429", times=5)
    with pytest.raises(BrokerUnavailable) as info:
        broker.submit(buy())
    assert not isinstance(info.value, OrderOutcomeUnknown)
    assert fake.count("GET", "/v2/orders:by_client_order_id") == 0


# --- business rejects: never retried -------------------------------------------------------------
def test_submit_when_buying_power_fault_then_rejected_once(broker, fake, waits):
    """EXE-2: 403 insufficient buying power is a business reject: exactly one POST."""
    fake.inject("reject_buying_power")
    with pytest.raises(BrokerRejected) as info:
        broker.submit(buy())
    assert info.value.code == "INSUFFICIENT_BUYING_POWER"
    assert fake.count("POST", "/v2/orders") == 1 and waits == []


def test_submit_when_order_exceeds_cash_then_buying_power_reject(broker, fake):
    with pytest.raises(BrokerRejected) as info:
        broker.submit(buy(qty="10000"))
    assert info.value.code == "INSUFFICIENT_BUYING_POWER" and fake.count("POST", "/v2/orders") == 1


def test_submit_when_selling_more_than_held_then_insufficient_qty(broker):
    with pytest.raises(BrokerRejected) as info:
        broker.submit(OrderRequest("AAPL", "sell", Decimal(1), "s-1", "market"))
    assert info.value.code == "INSUFFICIENT_QTY"


# --- idempotent submit (EXE-1) ---------------------------------------------------------------------
def test_submit_when_same_client_id_twice_then_existing_order_returned(broker, fake):
    """EXE-1: a natural 422 duplicate is answered by looking the order up, not resubmitting."""
    first = broker.submit(buy())
    second = broker.submit(buy())
    assert second.broker_id == first.broker_id and len(fake.state.orders) == 1
    assert fake.count("GET", "/v2/orders:by_client_order_id") == 1


def test_submit_when_duplicate_fault_and_no_such_order_then_duplicate_error(broker, fake):
    fake.inject("duplicate_client_order_id")
    with pytest.raises(DuplicateClientOrderId, match="cannot find it"):
        broker.submit(buy())


def test_submit_when_client_id_belongs_to_other_order_then_refused(broker):
    broker.submit(buy(symbol="MSFT"))
    with pytest.raises(DuplicateClientOrderId, match="different order"):
        broker.submit(buy(symbol="AAPL"))


@pytest.mark.parametrize("kind", ["lost_response", "accept_then_504"])
def test_submit_when_response_lost_then_lookup_not_resubmit(broker, fake, kind):
    """EXE-1: accepted but the answer was lost: look up by client id, one POST only."""
    fake.inject(kind)
    order = broker.submit(buy())
    assert order.client_order_id == "cid-1" and order.status == "filled"
    assert fake.count("POST", "/v2/orders") == 1 and len(fake.state.orders) == 1


def test_submit_when_timeout_after_accept_then_lookup_finds_it(make_broker, fake):
    broker = make_broker(**{"alpaca.timeout_s": 0.2})
    fake.inject("latency", path="/v2/orders", method="POST", seconds=0.6)
    order = broker.submit(buy())
    assert order.status == "filled" and fake.count("POST", "/v2/orders") == 1


def test_submit_when_connection_dropped_before_accept_then_resubmitted_once(broker, fake):
    fake.inject("drop_connection", path="/v2/orders", method="POST")
    order = broker.submit(buy())
    assert order.status == "filled" and fake.count("POST", "/v2/orders") == 2
    assert fake.count("GET", "/v2/orders:by_client_order_id") == 1 and len(fake.state.orders) == 1


def test_submit_when_server_unreachable_then_unavailable_not_unknown(keys, make_params, waits):
    """Connection refused: the POST never left, so the outcome is known (not placed)."""
    down = FakeAlpacaServer(start=OPEN_DAY).start()
    url = down.url
    down.stop()
    b = AlpacaBroker.from_params(make_params(mode="paper", **{"alpaca.url_override": url,
                                                             "alpaca.backoff_s": 0.0}), sleep=waits.append)
    with pytest.raises(BrokerUnavailable, match="connection error after 4 attempt") as info:
        b.submit(buy())
    assert not isinstance(info.value, OrderOutcomeUnknown)


def test_submit_when_5xx_persists_then_outcome_unknown(broker, fake):
    """EXE-1: after retries the outcome is unknown: the caller must look it up, never resubmit blind."""
    fake.inject("http_503", times=10, path="/v2/orders", method="POST")
    with pytest.raises(OrderOutcomeUnknown, match="look up client_order_id cid-1"):
        broker.submit(buy())
    assert fake.count("POST", "/v2/orders") == 3 and fake.count("GET", "/v2/orders:by_client_order_id") == 2


# --- circuit breaker (EXE-4) ---------------------------------------------------------------------
def test_breaker_when_failures_reach_threshold_then_callback_and_circuit_reported_not_enforced(make_broker, fake,
                                                                                              ticker):
    """EXE-4: N failures in the window open the breaker: callback once and ``circuit_open`` reported. The
    adapter refuses nothing itself (issue 15 item 5): the order path turns the report into REDUCE_ONLY and
    GATE-1 decides, so a buy handed to the adapter still reaches Alpaca."""
    reasons: list[str] = []
    broker = make_broker(reasons.append, api_breaker_failures=3, api_breaker_window_s=60)
    broker.submit(buy(qty="2"))
    fake.inject("http_503", times=3, path="/v2/account")
    with pytest.raises(BrokerUnavailable):
        broker.account()
    assert broker.circuit_open and len(reasons) == 1 and "3 failures in 60s" in reasons[0]
    posts = fake.count("POST", "/v2/orders")
    assert broker.submit(buy(cid="entry-2")).status == "filled"
    assert broker.submit(OrderRequest("AAPL", "sell", Decimal(1), "exit-1", "market")).status == "filled"
    assert fake.count("POST", "/v2/orders") == posts + 2
    ticker.t += 61
    broker.account()
    assert not broker.circuit_open and len(reasons) == 1


def test_breaker_when_failures_spread_beyond_window_then_stays_closed(make_broker, fake, ticker):
    broker = make_broker(lambda r: None, api_breaker_failures=3, api_breaker_window_s=60, **{"alpaca.retries": 0})
    for _ in range(4):
        fake.inject("http_500", path="/v2/clock")
        with pytest.raises(BrokerUnavailable):
            broker.clock()
        ticker.t += 31
    assert not broker.circuit_open


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_breaker_when_it_opens_mid_submit_then_circuit_open_reported_for_either_side_not_resubmitted(make_broker,
                                                                                                    fake, side):
    """EXE-1/EXE-4: the failure that opens the circuit leaves the outcome unknown; looked up and not found, the
    order is not resubmitted blind: CircuitOpen is reported whatever the side (the order path decides)."""
    broker = make_broker(api_breaker_failures=1)
    fake.inject("drop_connection", path="/v2/orders", method="POST")
    with pytest.raises(CircuitOpen, match="not resubmitted while the API circuit is open"):
        broker.submit(OrderRequest("AAPL", side, Decimal(1), f"{side}-1", "market"))
    assert fake.count("POST", "/v2/orders") == 1 and fake.count("GET", "/v2/orders:by_client_order_id") == 1
    assert fake.state.orders == {}


def test_breaker_when_open_then_ledger_reduce_only(make_broker, fake, ctx):
    """EXE-4/CTL-3: wired to controls.reduce_only, an open breaker puts the system in REDUCE_ONLY."""
    controls = pytest.importorskip("tradebook.safety.controls")

    def trip(reason: str) -> None:
        controls.reduce_only(ctx.ledger, reason, source="api_breaker")

    broker = make_broker(trip, api_breaker_failures=2)
    fake.inject("http_500", times=3, path="/v2/positions")
    with pytest.raises(BrokerUnavailable):
        broker.positions()
    status = controls.effective_state(ctx.params, ctx.root, ctx.ledger)
    assert status.state == "REDUCE_ONLY" and "API circuit breaker open" in " ".join(status.reasons)


# --- fractional shares (EXE-5) ---------------------------------------------------------------------
def test_validate_fractional_when_asset_not_fractionable_then_false_and_logged(broker, caplog):
    with caplog.at_level(logging.WARNING, logger="tradebook.broker.alpaca"):
        assert broker.validate_fractional(["AAPL", "IBM"]) == {"AAPL": True, "IBM": False}
    assert "IBM" in caplog.text and "not fractionable" in caplog.text


def test_validate_fractional_when_account_has_it_off_then_all_false(keys, make_params):
    with FakeAlpacaServer(start=OPEN_DAY, account_fractional=False) as off:
        b = AlpacaBroker.from_params(make_params(mode="paper", **{"alpaca.url_override": off.url}))
        assert b.validate_fractional(["AAPL", "MSFT"]) == {"AAPL": False, "MSFT": False}
        assert not b.account().fractional_enabled


def test_submit_when_symbol_known_non_fractionable_then_refused_without_request(broker, fake):
    """EXE-5: like SimBroker, submit raises FractionalNotSupported; execute re-gates whole shares."""
    broker.validate_fractional(["IBM"])
    with pytest.raises(FractionalNotSupported, match="use whole shares"):
        broker.submit(buy(symbol="IBM", qty="2.5"))
    assert fake.count("POST", "/v2/orders") == 0
    assert broker.submit(buy(symbol="IBM", qty="2")).status == "filled"


def test_submit_when_alpaca_rejects_fractional_then_raised_logged_and_remembered(broker, fake, caplog):
    with caplog.at_level(logging.WARNING, logger="tradebook.broker.alpaca"):
        with pytest.raises(FractionalNotSupported, match="not fractionable"):
            broker.submit(buy(symbol="IBM", qty="2.5"))
    assert "refused fractional qty 2.5" in caplog.text
    with pytest.raises(FractionalNotSupported):
        broker.submit(buy(symbol="IBM", qty="1.5", cid="cid-2"))
    assert fake.count("POST", "/v2/orders") == 1 and fake.state.orders == {}


def test_submit_when_fractional_disabled_in_params_then_refused_before_sending(make_broker, fake):
    broker = make_broker(fractional_enabled=False)
    with pytest.raises(FractionalNotSupported):
        broker.submit(buy(qty="1.9"))
    assert fake.count("POST", "/v2/orders") == 0 and not broker.account().fractional_enabled


