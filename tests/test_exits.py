"""Protective exit checks, pure (EXIT-4 stop loss / profit target, EXIT-5 EOD liquidation)."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from tradebook.broker.base import Quote
from tradebook.phases.exits import EOD_LIQUIDATION, PROFIT_TARGET, STOP_LOSS, check_position, check_positions
from tradebook.phases.positions import LedgerPosition
from support.trading import ny

DAY = date(2011, 7, 21)
CLOSE = ny(DAY, 16)
MIDDAY = ny(DAY, 12)


@pytest.mark.parametrize("bid,origin,eod,now,expected", [
    (100.0, "STRATEGY", False, MIDDAY, None),
    (95.0, "STRATEGY", False, MIDDAY, STOP_LOSS),          # exactly -5%
    (95.5, "STRATEGY", False, MIDDAY, None),
    (115.0, "STRATEGY", False, MIDDAY, PROFIT_TARGET),     # +15% default target
    (90.0, "EXTERNAL", False, MIDDAY, None),               # stops protect our positions only
    (100.0, "STRATEGY", True, CLOSE - timedelta(minutes=10), EOD_LIQUIDATION),
    (100.0, "EXTERNAL", True, CLOSE - timedelta(minutes=10), EOD_LIQUIDATION),  # EOD flattens everything
    (100.0, "STRATEGY", True, MIDDAY, None),
    (100.0, "STRATEGY", False, CLOSE - timedelta(minutes=5), None),             # EOD off (swing)
])
def test_exit4_exit5_when_position_checked_then_right_protective_exit(make_params, bid, origin, eod, now, expected):
    """EXIT-4: stop loss (5%) and profit target per position; EXIT-5: optional EOD liquidation."""
    params = make_params(eod_liquidation=eod)
    hit = check_position("AAPL", 10, 100.0, origin, bid, params=params, now=now, close=CLOSE)
    assert (hit.code if hit else None) == expected
    if hit:
        assert hit.qty == 10 and hit.price == bid and hit.reason


def test_exit4_when_profit_target_disabled_then_no_target_exit(make_params):
    params = make_params(profit_target_pct=None)
    assert check_position("AAPL", 10, 100.0, "STRATEGY", 150.0, params=params, now=MIDDAY, close=CLOSE) is None


def test_exit4_when_many_positions_then_only_quoted_hits_in_symbol_order(make_params):
    params = make_params()
    positions = [LedgerPosition(s, 10, 100.0, "STRATEGY", None, 0.5, None, None) for s in ("MSFT", "AAPL", "IBM")]
    quotes = {s: Quote(s, bid, bid + 0.02, MIDDAY) for s, bid in (("MSFT", 90.0), ("AAPL", 94.0))}
    hits = check_positions(positions, quotes, params=params, now=MIDDAY, close=CLOSE)
    assert [(h.symbol, h.code) for h in hits] == [("AAPL", STOP_LOSS), ("MSFT", STOP_LOSS)]


def test_exit8_when_quote_stale_or_wide_then_stop_not_fired_and_symbol_named(make_params):
    """EXIT-8 (issue 12 item 9): stops trigger on real prices. A quote older than stale_signal_seconds
    or wider than spread_limit_bps fires nothing (named with the reason, retried next tick); a fresh,
    tight quote fires on its mid. Old code: fired on the bid of any quote, however old or wide."""
    from datetime import timedelta

    params = make_params()
    positions = [LedgerPosition(s, 10, 100.0, "STRATEGY", None, 0.5, None, None) for s in ("AAPL", "IBM", "MSFT")]
    old = MIDDAY - timedelta(seconds=params.stale_signal_seconds + 1)
    quotes = {"AAPL": Quote("AAPL", 90.0, 90.02, old),            # stale
              "IBM": Quote("IBM", 80.0, 120.0, MIDDAY),            # 4,000 bps wide: mid 100, bid 80
              "MSFT": Quote("MSFT", 94.0, 94.02, MIDDAY)}          # fresh and tight
    unpriced: dict[str, str] = {}
    hits = check_positions(positions, quotes, params=params, now=MIDDAY, close=CLOSE, unpriced=unpriced)
    assert [(h.symbol, h.code, h.price) for h in hits] == [("MSFT", STOP_LOSS, pytest.approx(94.01))]
    assert set(unpriced) == {"AAPL", "IBM"} and "old" in unpriced["AAPL"] and "spread" in unpriced["IBM"]
