"""AlpacaBroker against the fake behaving like the real venue (issue 14; VEN-1, VEN-2, EXE-2..5, GATE-11).

Each test names the real-API behaviour it stands for; the fake's answers are checked against
Alpaca's contract by conftest.py while these run.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tradebook.broker import breaker_path, make_broker
from tradebook.broker.alpaca.broker import AlpacaBroker
from tradebook.broker.alpaca.breaker import BreakerFile
from tradebook.testing.alpaca_fake.server import FakeAlpacaServer
from tradebook.testing.alpaca_fake.venue import VenueOptions
from tradebook.broker.base import OrderRequest
from tradebook.errors import BrokerRejected, BrokerUnavailable, ConfigError

NY = ZoneInfo("America/New_York")
OPEN_DAY = datetime(2011, 7, 6, 10, 0, tzinfo=NY)


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", "PKVENUETEST0001")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "SKVENUETESTSECRET0001")


@pytest.fixture
def venue() -> VenueOptions:
    return VenueOptions(cancel_delay_s=60, margin=True, wash_trade_check=True)


@pytest.fixture
def fake(venue):
    with FakeAlpacaServer(start=OPEN_DAY, venue=venue) as server:
        yield server


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def make(keys, fake, make_params, waits):
    def factory(**overrides) -> AlpacaBroker:
        values = {"mode": "paper", "alpaca.url_override": fake.url, "alpaca.data_url_override": fake.url,
                  "alpaca.timeout_s": 2.0, "alpaca.retries": 2, "alpaca.backoff_s": 0.01, **overrides}
        return AlpacaBroker.from_params(make_params(**values), sleep=waits.append)
    return factory


@pytest.fixture
def broker(make) -> AlpacaBroker:
    return make()


def req(side="buy", qty="10", cid="c1", kind="market", limit=None, symbol="AAPL") -> OrderRequest:
    return OrderRequest(symbol, side, Decimal(qty), cid, kind, None if limit is None else Decimal(limit))


# --- account: margin (GATE-11) ------------------------------------------------------------------
def test_account_when_margin_account_then_buying_power_is_cash_unless_allow_margin(make, fake):
    """GATE-11: a paper account is a margin account (buying power ~2x); tradebook spends cash only
    unless params say alpaca.allow_margin: true."""
    assert make().account().buying_power == pytest.approx(100_000.0)
    assert make(**{"alpaca.allow_margin": True}).account().buying_power == pytest.approx(200_000.0)


def test_submit_when_margin_used_then_cash_negative_and_nonmarginable_zero(broker, fake):
    """A margin account lets a buy exceed cash; cash goes negative, non-marginable buying power is 0."""
    broker.submit(req(qty="3000"))   # ~ 45 * 3000 > 100k cash, < 200k margin buying power
    account = broker.account()
    assert account.cash < 0 and account.buying_power == 0.0


# --- orders: async cancel, held qty, wash trade -------------------------------------------------
def test_cancel_when_async_then_pending_cancel_until_delay_then_canceled(broker, fake):
    """VEN-2: a cancel is acknowledged (204) and the order stays pending_cancel (working) for a while."""
    broker.submit(req(kind="limit", limit="1.00"))
    broker.cancel("c1")
    assert broker.get_order("c1").status == "pending_cancel"
    assert [o.client_order_id for o in broker.open_orders()] == ["c1"]
    fake.set_time(OPEN_DAY + timedelta(seconds=61))
    assert broker.get_order("c1").status == "canceled" and broker.open_orders() == []


def test_cancel_when_fill_wins_race_then_filled_not_canceled(broker, fake):
    """VEN-2: while pending_cancel the order may still fill; the fill wins."""
    price = fake.market.quote("AAPL", OPEN_DAY)[1]
    broker.submit(req(kind="limit", limit=str(round(price - 0.05, 2))))
    broker.cancel("c1")
    fake.set_time(OPEN_DAY + timedelta(seconds=30))   # within the delay; the price path crosses the limit
    fake.state.orders[fake.state.by_client_id["c1"]].limit_price = Decimal("999")   # make it marketable now
    fake.set_time(OPEN_DAY + timedelta(seconds=40))
    assert broker.get_order("c1").status == "filled"


def test_submit_when_shares_held_by_working_sell_then_insufficient_qty_403(broker, fake):
    """VEN-2: shares held for a working sell are not available (Alpaca's held_for_orders)."""
    broker.submit(req(qty="10"))
    broker.submit(req("sell", qty="10", cid="s1", kind="limit", limit="999"))
    with pytest.raises(BrokerRejected, match="insufficient qty available") as err:
        broker.submit(req("sell", qty="1", cid="s2", kind="limit", limit="998"))
    assert err.value.code == "INSUFFICIENT_QTY"
    assert fake.state.held_for_orders("AAPL") == 10


def test_submit_when_opposite_order_working_then_wash_trade_403(broker, fake):
    """VEN-2: a buy that could trade against our own working sell is refused as a potential wash trade."""
    broker.submit(req(qty="10"))
    broker.submit(req("sell", qty="5", cid="s1", kind="limit", limit="300"))
    with pytest.raises(BrokerRejected, match="wash trade"):
        broker.submit(req(qty="1", cid="b2"))
    assert broker.get_order("b2") is None


# --- parsing item by item ------------------------------------------------------------------------
def test_open_orders_when_status_unknown_then_kept_as_is_not_failed(broker, fake, alpaca_contract):
    """VEN-1: an order status Alpaca's enum lacks does not fail the list; the order comes back with it."""
    broker.submit(req(kind="limit", limit="1.00"))
    fake.show_status("c1", "awaiting_review")
    assert [o.status for o in broker.open_orders()] == ["awaiting_review"]
    assert broker.get_order("c1").status == "awaiting_review"
    assert alpaca_contract.take()   # the fake broke the contract on purpose


def test_positions_when_one_item_unreadable_then_skipped_with_incident(make, fake, alpaca_contract, monkeypatch):
    """An unparseable item is skipped and reported (incident callback), never a failed reconcile."""
    seen: list[str] = []
    broker = make()
    broker._on_incident = seen.append
    fake.seed_position("MSFT", 5, 20.0)
    fake.seed_position("IBM", 3, 150.0)
    original = fake.state.position_json
    monkeypatch.setattr(fake.state, "position_json",
                        lambda s: {k: v for k, v in original(s).items() if not (s == "IBM" and k == "qty")})
    assert [p.symbol for p in broker.positions()] == ["MSFT"]
    assert len(seen) == 1 and "IBM" in seen[0] and "skipped" in seen[0]
    alpaca_contract.take()


def test_positions_when_crypto_held_then_shown_but_never_quoted_or_traded(broker, fake, alpaca_contract):
    """Only us_equity positions are traded or quoted; others are reconciled and shown, never touched."""
    fake.seed_position("BTCUSD", 0.5, 30000.0, asset_class="crypto")
    fake.seed_position("MSFT", 5, 20.0)
    held = {p.symbol: p.asset_class for p in broker.positions()}
    assert held == {"BTCUSD": "crypto", "MSFT": "us_equity"}
    snapshots = fake.count("GET", "/v2/stocks/snapshots")
    assert set(broker.quotes(["BTCUSD", "MSFT"])) == {"MSFT"}
    assert fake.requests[-1].query["symbols"] == "MSFT" and fake.count("GET", "/v2/stocks/snapshots") == snapshots + 1
    bars = broker.daily_bars(["BTCUSD", "MSFT"], date(2011, 6, 27), date(2011, 7, 5))
    assert set(bars["symbol"]) == {"MSFT"} and fake.requests[-1].query["symbols"] == "MSFT"
    with pytest.raises(BrokerRejected, match="not a us_equity") as err:
        broker.close_position("BTCUSD", "x1")
    assert err.value.code == "NOT_US_EQUITY" and fake.count("POST", "/v2/orders") == 0


# --- duplicates and look-up before reject (EXE-1) ----------------------------------------------------
@pytest.mark.parametrize("status,body", [
    (409, {"code": 40910000, "message": "duplicate order"}),
    (422, {"code": 40010001, "message": "client order id should be unique"}),
    (422, {"code": 40010002, "message": "Client_Order_ID is not unique for this account"}),
])
def test_submit_when_duplicate_worded_differently_then_existing_order_returned(broker, fake, status, body):
    """EXE-1: a duplicate client id is recognised by code 40910000/409 or any wording with client order id + unique."""
    first = broker.submit(req(qty="1"))
    fake.inject("reply", path="/v2/orders", method="POST", status=status, body=body)
    again = broker.submit(req(qty="1"))
    assert again.broker_id == first.broker_id and fake.count("POST", "/v2/orders") == 2


def test_submit_when_reject_answered_but_order_landed_then_looked_up_not_rejected(broker, fake):
    """EXE-1: an order is always looked up by client id before it is treated as rejected."""
    fake.inject("reply", path="/v2/orders", method="POST", status=403, handle=True,
                body={"code": 40310000, "message": "forbidden"})
    placed = broker.submit(req(qty="1"))
    assert placed.status == "filled" and fake.count("GET", "/v2/orders:by_client_order_id") == 1


# --- fills, calendar, data feeds --------------------------------------------------------------------
def test_get_order_when_filled_then_filled_at_stamped(broker, fake):
    """EXE-6: fills are stamped with Alpaca's filled_at, not updated_at."""
    broker.submit(req(kind="limit", limit="1.00"))
    fake.state.orders[fake.state.by_client_id["c1"]].limit_price = Decimal("999")
    fake.set_time(OPEN_DAY + timedelta(minutes=5))
    order = broker.get_order("c1")
    assert order.status == "filled" and order.filled_at == OPEN_DAY + timedelta(minutes=5)


def test_calendar_when_asked_twice_then_one_request(broker, fake):
    """window_end asks for a day's calendar per open order per tick: cached for the broker's life."""
    day = date(2011, 7, 6)
    assert broker.calendar(day, day) == broker.calendar(day, day)
    assert fake.count("GET", "/v2/calendar") == 1


def test_daily_bars_when_free_plan_then_sip_ending_15_minutes_ago(broker, fake):
    """A free plan refuses SIP data newer than 15 minutes: bars are asked with feed sip, end <= now - 15 min."""
    frame = broker.daily_bars(["AAPL"], date(2011, 6, 27), date(2011, 7, 6))
    bars = [r for r in fake.requests if r.path == "/v2/stocks/bars"][-1]
    assert bars.query["feed"] == "sip"
    assert datetime.fromisoformat(bars.query["end"]) <= OPEN_DAY - timedelta(minutes=15)
    assert frame["date"].max() == date(2011, 7, 5)


def test_quotes_when_default_feed_then_iex_and_sip_quotes_refused_on_free_plan(broker, make, fake):
    """Quotes come from iex by default; a free-plan key asking SIP quotes gets Alpaca's 403."""
    assert "AAPL" in broker.quotes(["AAPL"]) and fake.requests[-1].query["feed"] == "iex"
    with pytest.raises(BrokerRejected, match="subscription does not permit"):
        make(**{"alpaca.feed": "sip"}).quotes(["AAPL"])


def test_construct_when_bars_feed_invalid_then_clear_config_error(keys, fake):
    with pytest.raises(ConfigError, match="delayed_sip' is not a historical-bars feed"):
        AlpacaBroker(url_override=fake.url, data_url_override=fake.url, bars_feed="delayed_sip")


# --- EXE-4: the breaker's count survives the process ---------------------------------------------------
def test_breaker_when_failures_spread_over_phase_runs_then_count_adds_up(keys, fake, make_params, root):
    """EXE-4: each phase run is a new process (a new broker); failures within the window add up via runs/."""
    params = make_params(mode="paper", api_breaker_failures=3, **{
        "alpaca.url_override": fake.url, "alpaca.data_url_override": fake.url, "alpaca.retries": 0})
    for _ in range(3):   # three "phase runs", one failure each
        run = make_broker(params, root)
        fake.inject("http_500", path="/v2/clock")
        with pytest.raises(BrokerUnavailable):
            run.clock()
    fresh = make_broker(params, root)   # a fourth run: opens already open (the order path goes REDUCE_ONLY)
    assert fresh.circuit_open and "3 failures in 60s" in fresh.breaker.reason
    assert breaker_path(params, root).is_file()


def test_breaker_file_when_window_passed_then_old_failures_forgotten(tmp_path):
    from tradebook.broker.alpaca.breaker import CircuitBreaker

    t = [1000.0]
    first = CircuitBreaker(2, 60, clock=lambda: t[0], store=BreakerFile(tmp_path / "b.json"))
    first.record_failure("x")
    t[0] += 61
    second = CircuitBreaker(2, 60, clock=lambda: t[0], store=BreakerFile(tmp_path / "b.json"))
    second.record_failure("y")
    assert not second.is_open and second.status()["recent_failures"] == 1


def test_order_update_when_fill_reported_then_stamped_with_filled_at_not_updated_at():
    """EXE-6: the fill's time is Alpaca's filled_at; updated_at moves on later changes of the order."""
    from tradebook.broker.base import Order
    from tradebook.phases.order_sync import OrderRow, order_update

    sent, filled, touched = (OPEN_DAY + timedelta(minutes=m) for m in (0, 3, 9))
    row = OrderRow("tb-x-a1", "x", 1, "b1", "AAPL", "buy", 10.0, "new", 0.0, None, sent, "planned", 45.0, 0.7,
                   "SUBMITTED", 1)
    truth = Order("b1", "tb-x-a1", "AAPL", "buy", 10.0, "limit", "filled", 45.0, 10.0, 44.9, sent, touched,
                  filled_at=filled)
    update = order_update(row, truth, window_over=False, now=touched)
    assert update is not None and update.fill_qty == 10.0 and update.fill_ts == filled
