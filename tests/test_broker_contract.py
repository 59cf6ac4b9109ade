"""One broker contract, two brokers: SimBroker and AlpacaBroker on the loopback fake (VEN-1, VEN-2).

The same tests run against both peers behind ``Broker`` (STYLE: the simulator and the live
client are peers). A ``Venue`` harness gives each test the broker and the venue-side levers
(clock, seeded positions, faults, asynchronous cancels, wash-trade checks).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

from tradebook.broker.base import Broker, OrderRequest
from tradebook.errors import BrokerRejected
from tradebook.marketdata import load_bars

NY = ZoneInfo("America/New_York")
DAY = date(2011, 7, 6)                      # a Wednesday
OPEN = datetime(2011, 7, 6, 10, 0, tzinfo=NY)


@dataclass
class Venue:
    broker: Broker
    advance: Callable[[datetime], Any]
    seed: Callable[[str, float, float], Any]
    partial_next: Callable[[], None]
    async_cancels: Callable[[float], None]
    wash_checks: Callable[[], None]


def _sim(root, make_params) -> Venue:
    from tradebook.broker.sim.broker import SimBroker

    sim = SimBroker.from_params(make_params(**{"sim.start_date": DAY.isoformat()}), root)
    sim.advance_to(OPEN)

    def async_cancels(_seconds: float) -> None:
        sim.cancel_polls = 3   # SimBroker: pending_cancel for 3 look-ups or until time moves

    def wash_checks() -> None:
        sim.wash_trade_check = True

    return Venue(sim, sim.advance_to, sim.seed_position, lambda: sim.inject_fault("partial_fill"),
                 async_cancels, wash_checks)


@pytest.fixture(params=["sim", "alpaca"])
def venue(request, root, make_params, monkeypatch):
    if request.param == "sim":
        yield _sim(root, make_params)
        return
    from tradebook.broker.alpaca.broker import AlpacaBroker
    from tradebook.testing.alpaca_fake.server import FakeAlpacaServer

    monkeypatch.setenv("APCA_API_KEY_ID", "PKCONTRACTSUITE01")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "SKCONTRACTSUITESECRET01")
    with FakeAlpacaServer(start=OPEN) as fake:
        params = make_params(mode="paper", **{"alpaca.url_override": fake.url,
                                              "alpaca.data_url_override": fake.url})

        def async_cancels(seconds: float) -> None:
            fake.state.venue.cancel_delay_s = seconds

        def wash_checks() -> None:
            fake.state.venue.wash_trade_check = True

        yield Venue(AlpacaBroker.from_params(params, sleep=lambda s: None), fake.set_time, fake.seed_position,
                    lambda: fake.inject("partial_fill"), async_cancels, wash_checks)


def order(side="buy", qty="4", cid="k1", kind="market", limit=None, symbol="AAPL") -> OrderRequest:
    return OrderRequest(symbol, side, Decimal(qty), cid, kind, None if limit is None else Decimal(limit))


def test_submit_when_market_buy_then_filled_position_and_cash(venue):
    before = venue.broker.account()
    placed = venue.broker.submit(order())
    assert placed.status == "filled" and placed.filled_qty == 4 and placed.filled_avg_price > 0
    held = {p.symbol: p for p in venue.broker.positions()}
    assert held["AAPL"].qty == 4 and held["AAPL"].avg_price == pytest.approx(placed.filled_avg_price, rel=1e-4)
    after = venue.broker.account()
    assert after.cash == pytest.approx(before.cash - 4 * placed.filled_avg_price, abs=0.05)


def test_get_order_when_known_then_same_order_else_none(venue):
    placed = venue.broker.submit(order(kind="limit", limit="1.00"))
    found = venue.broker.get_order("k1")
    assert found is not None and (found.broker_id, found.status) == (placed.broker_id, placed.status)
    assert found.is_open and venue.broker.get_order("never-sent") is None


def test_cancel_when_sync_then_canceled_and_not_open(venue):
    venue.broker.submit(order(kind="limit", limit="1.00"))
    venue.broker.cancel("k1")
    assert venue.broker.get_order("k1").status == "canceled" and venue.broker.open_orders() == []
    with pytest.raises(BrokerRejected) as err:
        venue.broker.cancel("k1")
    assert err.value.code == "ORDER_NOT_CANCELABLE"


def test_cancel_when_async_then_pending_cancel_working_until_venue_confirms(venue):
    """VEN-2: the cancel is acknowledged first; the order stays working (pending_cancel) until confirmed."""
    venue.async_cancels(60)
    venue.broker.submit(order(kind="limit", limit="1.00"))
    venue.broker.cancel("k1")
    assert venue.broker.get_order("k1").status == "pending_cancel"
    assert [o.client_order_id for o in venue.broker.open_orders()] == ["k1"]
    venue.advance(OPEN + timedelta(minutes=2))
    assert venue.broker.get_order("k1").status == "canceled"


def test_submit_when_shares_held_by_working_sell_then_insufficient_qty(venue):
    """VEN-2: shares held by a working sell are not available for another sell."""
    venue.seed("MSFT", 5, 20.0)
    venue.broker.submit(order("sell", qty="5", cid="s1", kind="limit", limit="999", symbol="MSFT"))
    with pytest.raises(BrokerRejected) as err:
        venue.broker.submit(order("sell", qty="1", cid="s2", kind="limit", limit="998", symbol="MSFT"))
    assert err.value.code == "INSUFFICIENT_QTY"


def test_submit_when_opposite_order_working_then_wash_trade_refused(venue):
    """VEN-2: an order that could trade against our own working opposite order is refused."""
    venue.wash_checks()
    venue.seed("MSFT", 5, 20.0)
    venue.broker.submit(order("sell", qty="5", cid="s1", kind="limit", limit="999", symbol="MSFT"))
    with pytest.raises(BrokerRejected, match="wash trade"):
        venue.broker.submit(order("buy", qty="1", cid="b1", symbol="MSFT"))
    assert venue.broker.get_order("b1") is None


def test_submit_when_partial_fill_then_half_filled_and_still_open(venue):
    venue.partial_next()
    placed = venue.broker.submit(order(qty="4"))
    assert placed.status == "partially_filled" and placed.filled_qty == 2 and placed.is_open


def test_positions_when_seeded_outside_then_listed_with_avg_and_price(venue):
    venue.seed("MSFT", 7, 20.0)
    held = {p.symbol: p for p in venue.broker.positions()}
    assert held["MSFT"].qty == 7 and held["MSFT"].avg_price == 20.0 and held["MSFT"].market_price > 0


def test_submit_when_selling_more_than_held_then_insufficient_qty(venue):
    venue.seed("MSFT", 2, 20.0)
    with pytest.raises(BrokerRejected) as err:
        venue.broker.submit(order("sell", qty="3", symbol="MSFT"))
    assert err.value.code == "INSUFFICIENT_QTY" and venue.broker.get_order("k1") is None


def test_account_when_fresh_then_cash_equity_buying_power(venue):
    account = venue.broker.account()
    assert account.cash == account.equity == pytest.approx(100_000.0) and account.status == "ACTIVE"
    assert account.buying_power == pytest.approx(100_000.0)


def test_clock_when_wednesday_morning_then_open_until_four(venue):
    clock = venue.broker.clock()
    assert clock.is_open and clock.now == OPEN and clock.next_close == datetime(2011, 7, 6, 16, 0, tzinfo=NY)


def test_calendar_when_week_with_holiday_then_sessions_without_july_4(venue):
    days = [s.day for s in venue.broker.calendar(date(2011, 7, 1), date(2011, 7, 8))]
    assert days == [date(2011, 7, 1), date(2011, 7, 5), date(2011, 7, 6), date(2011, 7, 7), date(2011, 7, 8)]
    assert venue.broker.calendar(DAY, DAY)[0].open == datetime(2011, 7, 6, 9, 30, tzinfo=NY)


def test_daily_bars_when_past_range_then_the_bundled_adjusted_closes(venue):
    frame = venue.broker.daily_bars(["AAPL"], date(2011, 6, 27), date(2011, 7, 5))
    truth = load_bars(["AAPL"])
    truth = truth[(truth["date"] >= date(2011, 6, 27)) & (truth["date"] <= date(2011, 7, 5))]
    assert list(frame["date"]) == list(truth["date"])
    assert list(frame["close"].round(2)) == list(truth["close"].round(2))


def test_quotes_when_open_then_bid_below_ask_timestamped_now(venue):
    quote = venue.broker.quotes(["AAPL"])["AAPL"]
    assert 0 < quote.bid < quote.ask and quote.ts.date() == DAY and quote.prev_close is not None
