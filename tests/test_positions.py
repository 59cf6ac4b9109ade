"""Position state and the add-on decision tree (POS-1, POS-2, POS-3) and fill bookkeeping (EXE-6)."""
from __future__ import annotations

from datetime import date

import pytest

from tradebook.ledger import closed_today, cooldowns
from tradebook.ledger import fills as fill_store
from tradebook.ledger import trades as trade_store
from tradebook.phases.positions import (EXTERNAL, STRATEGY, FillInfo, LedgerPosition, apply_fill, decide_entry,
                                 load_positions, next_position, size_qty, slippage_bps)
from support.trading import make_ctx, ny

EQUITY = 100_000.0


def _pos(qty: float, price: float = 100.0, origin: str = STRATEGY) -> LedgerPosition:
    return LedgerPosition("AAPL", qty, price, origin, None, 0.7 if origin == STRATEGY else None, "TIER3", "Technology")


@pytest.mark.parametrize("position,confidence,overrides,approved,code,kind", [
    (None, 0.05, {}, False, "LOW_CONFIDENCE", None),                           # entries need signal_threshold
    (None, 0.5, {}, True, "NEW_POSITION", "ENTRY"),
    (_pos(10, origin=EXTERNAL), 0.99, {}, False, "EXTERNAL_ONLY", None),       # POS-1
    (_pos(10), 0.9, {"add_on_enabled": False}, False, "ADD_ON_DISABLED", None),  # POS-2
    (_pos(50), 0.9, {}, False, "AT_MAX_ALLOCATION", None),                     # 5,000 / 100,000 = 5%
    (_pos(60), 0.9, {}, False, "AT_MAX_ALLOCATION", None),
    (_pos(10), 0.5, {}, False, "ADD_ON_CONFIDENCE_LOW", None),                 # < add_on_confidence 0.6
    (_pos(10), 0.6, {}, True, "ADD_ON_APPROVED", "ADD_ON"),
])
def test_pos1_pos2_when_entry_signal_then_decision_tree_answers_with_code(make_params, position, confidence,
                                                                          overrides, approved, code, kind):
    """POS-1: EXTERNAL-only → never an add-on. POS-2: add-on only if enabled, allocation < max, confident."""
    params = make_params(**overrides)
    d = decide_entry("AAPL", confidence, 100.0, position, equity=EQUITY, params=params, open_positions=1,
                     fractional=False)
    assert (d.approved, d.code, d.kind) == (approved, code, kind)
    assert d.reason  # every decision carries its reason (logged by decide)
    assert (d.qty > 0) == approved


def test_pos2_when_add_on_approved_then_sized_to_remaining_room(make_params):
    """POS-2: an add-on never takes the symbol past max_position_pct, even after a max_gap_pct move."""
    d = decide_entry("AAPL", 0.9, 100.0, _pos(30), equity=EQUITY, params=make_params(), open_positions=1,
                     fractional=False)
    # cap 5% of 100k / 1.02 = 4,901.96; held 3,000 -> room 1,901.96 -> 19 whole shares
    assert d.approved and d.qty == 19.0
    assert (30 + d.qty) * 100.0 * 1.02 <= 0.05 * EQUITY


def test_pos3_when_max_concurrent_reached_then_new_position_refused(make_params):
    """POS-3: max concurrent positions (16 by default) also bounds new entries at decide time."""
    params = make_params(max_concurrent_positions=2)
    d = decide_entry("AAPL", 0.9, 100.0, None, equity=EQUITY, params=params, open_positions=2, fractional=False)
    assert (d.approved, d.code) == (False, "MAX_CONCURRENT")


@pytest.mark.parametrize("notional,price,fractional,expected", [
    (4000, 300.0, False, 13.0), (4000, 300.0, True, 13.333333), (10, 300.0, False, 0.0), (0, 10, True, 0.0),
])
def test_size_qty_when_sized_then_whole_or_fractional_per_params(notional, price, fractional, expected):
    assert size_qty(notional, price, fractional) == expected


@pytest.mark.parametrize("qty,avg,side,fq,fp,expected", [
    (0, 0, "buy", 10, 100, (10, 100)), (10, 100, "buy", 10, 110, (20, 105)),
    (20, 105, "sell", 5, 120, (15, 105)), (10, 100, "sell", 10, 90, (0, 0)),
])
def test_next_position_when_filled_then_weighted_average_on_buys(qty, avg, side, fq, fp, expected):
    assert next_position(qty, avg, side, fq, fp) == pytest.approx(expected)


def test_exe6_when_slippage_measured_then_positive_means_worse_than_decided():
    """EXE-6: slippage in bps vs the decision price, signed so that a cost is positive."""
    assert slippage_bps("buy", 101.0, 100.0) == pytest.approx(100.0)
    assert slippage_bps("sell", 99.0, 100.0) == pytest.approx(100.0)
    assert slippage_bps("sell", 101.0, 100.0) == pytest.approx(-100.0)
    assert slippage_bps("buy", 101.0, None) is None


def test_exe6_pos3_when_fills_recorded_then_position_trade_pnl_closed_today_and_cooldown(root):
    """EXE-6 + POS-3: buy then sell-out: weighted position, realized P&L, closed_today and the cooldown."""
    ctx = make_ctx(root)
    t0, t1 = ny(date(2011, 7, 21), 9, 36), ny(date(2011, 7, 21), 11, 0)
    buy = FillInfo("tb-a1", "i1", "AAPL", "buy", 10, 100.0, t0, 99.0, confidence=0.8)
    sell = FillInfo("tb-b1", "i2", "AAPL", "sell", 10, 110.0, t1, 111.0)
    with ctx.ledger.transaction() as con:
        assert apply_fill(con, buy, ctx.params, t0.date()) is None
        held = load_positions(con)["AAPL"]
        assert (held.origin, held.confidence, held.qty) == ("STRATEGY", 0.8, 10.0)
        assert apply_fill(con, sell, ctx.params, t1.date()) == pytest.approx(100.0)
    assert ctx.ledger.read(load_positions) == {}
    assert ctx.ledger.read(closed_today.symbols, date(2011, 7, 21)) == ["AAPL"]
    assert ctx.ledger.read(cooldowns.last_orders) == {"AAPL": t1}
    slips = [round(f["slippage_bps"], 2) for f in ctx.ledger.read(fill_store.history)]
    assert slips == [round(1 / 99 * 1e4, 2), round(1 / 111 * 1e4, 2)]
    trades = [(t["kind"], t["realized_pnl"]) for t in ctx.ledger.read(trade_store.history)]
    assert trades == [("FILL", None), ("FILL", 100.0)]


def test_pos2_when_room_left_is_below_min_order_notional_then_no_add_on(make_params):
    """POS-2: an add-on too small for the gate's min_order_notional (GATE-5) is not planned."""
    d = decide_entry("AAPL", 0.9, 100.0, _pos(48.8), equity=EQUITY, params=make_params(), open_positions=1,
                     fractional=True)
    assert (d.approved, d.code) == (False, "ZERO_QTY") and "min_order_notional" in d.reason
