"""STR-3: backtest equals production. ``tradebook demo`` (real papermill notebooks on SimBroker)
and the backtest, over the same sessions with the same strategy and params, decide the same
intents (symbol, side, quantity) each day.

Modelled differences, named:
- Fills. The demo's execute sends limit orders at the decision price into SimBroker's
  seeded intraday path; the backtest fills at the next open plus half the spread and
  slippage. Fill prices, hence equity, hence position sizes can drift apart: the test
  trades whole shares (``fractional_enabled: false``) so equal decisions give equal
  quantities, over a window short enough that the drift does not cross a share.
- Stops and targets. The demo's monitor samples the intraday path
  ``schedule.monitor_points`` times and plans a suffixed EXIT intent (``...-EXIT-STOP_LOSS``);
  the backtest checks the whole daily range and fills the stop directly (BT-1). Every
  stop the demo took, the backtest took the same day; not the other way round.
- Gate verdicts at execution use intraday quotes in the demo and the open in the
  backtest (a PRICE_GAP in one may pass in the other); none changes a decision here.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tradebook.research import backtest
from tradebook.context import Context
from tradebook.safety.controls import session_date
from tradebook.demo import run_demo
from support.trading import stored_intents

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo")]
DAYS = 8          # 2011-07-26 .. 2011-08-04: entries, add-ons, signal exits and the first August stops
REPO = Path(__file__).resolve().parents[1]


def _demo_and_backtest(tmp_path: Path, use: str):
    for folder in ("params", "notebooks", "strategies"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    (tmp_path / "runs").mkdir()
    overrides = {"strategy.use": use, "fractional_enabled": False}
    summary = run_demo(DAYS, overrides=overrides, root=tmp_path)
    assert summary.failures == []
    ctx = Context.load(None, overrides, root=tmp_path)
    rows = [(i.intent_id, i.created_at, i.symbol, i.side, i.qty, i.kind) for i in stored_intents(ctx.ledger)]
    decided = sorted((session_date(c), s, side, q, k) for i, c, s, side, q, k in rows if i.count("-") == 2)
    stops = sorted((session_date(c), s, i.rsplit("-", 1)[1]) for i, c, s, *_ in rows if i.count("-") == 3)
    result = backtest.run_backtest(ctx.params, root=tmp_path, start=date_of(summary.first_day),
                                   end=date_of(summary.last_day))
    fills = result.fills
    bt_stops = sorted((d, s, r.split(":")[0]) for d, s, r in zip(fills["date"], fills["symbol"], fills["reason"])
                      if r.startswith(("STOP_LOSS", "PROFIT_TARGET")))
    return decided, sorted(result.book.intents), stops, bt_stops


def date_of(text: str):
    from datetime import date

    return date.fromisoformat(text)


@pytest.mark.parametrize("use", ["swing", "strategies.breakout:Breakout"])
def test_str3_when_demo_and_backtest_run_the_same_sessions_then_the_same_intents_each_day(tmp_path, use):
    """STR-3: same (day, symbol, side, qty, kind) from decide in the demo and in the backtest;
    the built-in (vectorised path) and a user strategy from strategies/ (called each session)."""
    decided, bt_intents, demo_stops, bt_stops = _demo_and_backtest(tmp_path, use)
    assert len(decided) >= 4, "the window must actually trade"
    assert decided == bt_intents
    assert set(demo_stops) <= set(bt_stops)
