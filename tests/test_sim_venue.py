"""SimBroker's real-venue habits (VEN-1, VEN-2): asynchronous cancels, fill/cancel races,
held quantity and wash-trade refusals, and the one working/final status mapping."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_sim_broker import FRI, make_sim, ny, order
from tradebook.broker.base import (
    FINAL_STATUSES,
    WORKING_STATUSES,
    Order,
    is_final,
    is_working,
    needs_cancel_first,
)
from tradebook.errors import BrokerRejected


@pytest.fixture
def venue(tmp_path: Path):
    """A venue with asynchronous cancels (2 look-ups) and wash-trade checks, open at 10:00, 100 AAPL held."""
    sim = make_sim(tmp_path, cancel_polls=2, wash_trade_check=True)
    sim.advance_to(ny(FRI, 10))
    sim.seed_position("AAPL", 100, 300.0)
    return sim


def _far_sell(sim, qty=100, cid="s1"):
    bid = sim.quotes(["AAPL"])["AAPL"].bid
    return sim.submit(order("AAPL", "sell", qty, cid, limit=bid * 1.2))


def test_ven1_when_any_alpaca_status_then_working_or_final_and_unknown_is_working():
    """VEN-1: every Alpaca order status has a meaning; an unknown one is working (looked up again)."""
    alpaca = {"new", "accepted", "pending_new", "accepted_for_bidding", "partially_filled", "pending_cancel",
              "pending_replace", "done_for_day", "held", "calculated", "stopped", "suspended",
              "filled", "canceled", "expired", "rejected", "replaced"}
    assert WORKING_STATUSES | FINAL_STATUSES == alpaca and not WORKING_STATUSES & FINAL_STATUSES
    assert all(is_working(s) for s in ("pending_cancel", "done_for_day", "held", "something_new"))
    assert all(is_final(s) for s in ("filled", "canceled", "expired", "rejected", "replaced"))
    held = Order("b", "c", "AAPL", "sell", 1.0, "market", "done_for_day")
    assert held.is_open


def test_ven2_when_cancel_is_asynchronous_then_pending_cancel_until_confirmed(venue):
    """VEN-2: cancel -> pending_cancel (shares still held) -> canceled after the venue confirms."""
    _far_sell(venue)
    venue.cancel("s1")
    assert venue.get_order("s1").status == "pending_cancel"          # look-up 1
    with pytest.raises(BrokerRejected) as held:                      # its shares are still held
        venue.submit(order("AAPL", "sell", 100, "s2"))
    assert held.value.code == "INSUFFICIENT_QTY" and "held_for_orders 100" in str(held.value)
    assert "insufficient qty available for order (requested: 100, available: 0)" in str(held.value)
    assert needs_cancel_first(held.value)
    assert venue.get_order("s1").status == "canceled"                # look-up 2: confirmed
    assert venue.open_orders() == []
    assert venue.submit(order("AAPL", "sell", 100, "s2")).status == "filled"


def test_ven2_when_clock_moves_then_pending_cancel_lands(venue):
    _far_sell(venue)
    venue.cancel("s1")
    venue.advance_to(ny(FRI, 10, 1))
    assert venue.get_order("s1").status == "canceled"


def test_ven2_when_fill_races_cancel_then_order_ends_filled(venue):
    """VEN-2: a fill that reaches the venue before the cancel wins: the order ends filled."""
    _far_sell(venue)
    venue.inject_fault("cancel_fill_race", op="cancel")
    venue.cancel("s1")
    assert venue.get_order("s1").status == "pending_cancel"
    done = venue.get_order("s1")
    assert done.status == "filled" and done.filled_qty == 100
    assert venue.positions() == []


def test_ven2_when_market_sell_against_own_buy_limit_then_wash_trade_refused(venue):
    """VEN-2: an opposite-side market order against our working order is refused (Alpaca 403 40310000)."""
    ask = venue.quotes(["AAPL"])["AAPL"].ask
    venue.submit(order("AAPL", "buy", 10, "b1", limit=ask * 0.9))
    with pytest.raises(BrokerRejected) as refused:
        venue.submit(order("AAPL", "sell", 10, "s1"))
    assert refused.value.code == "WASH_TRADE" and "potential wash trade detected" in str(refused.value)
    assert needs_cancel_first(refused.value)
    # a sell limit that does not cross the resting buy is fine
    assert venue.submit(order("AAPL", "sell", 10, "s2", limit=ask * 1.2)).status == "new"


def test_ven2_when_checks_off_then_cancel_is_synchronous_and_no_wash_check(tmp_path):
    """The default venue keeps the old behaviour (switchable, VEN-2)."""
    sim = make_sim(tmp_path)
    sim.advance_to(ny(FRI, 10))
    sim.seed_position("AAPL", 100, 300.0)
    _far_sell(sim)
    sim.cancel("s1")
    assert sim.get_order("s1").status == "canceled"


def test_ven2_when_params_ask_for_real_venue_then_sim_from_params_has_it(tmp_path):
    import shutil

    from support import REPO
    from support.trading import make_ctx

    shutil.copytree(REPO / "params", tmp_path / "params")
    ctx = make_ctx(tmp_path, **{"sim.cancel_polls": 3, "sim.wash_trade_check": True})
    assert ctx.broker.cancel_polls == 3 and ctx.broker.wash_trade_check
