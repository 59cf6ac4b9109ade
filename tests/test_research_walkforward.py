"""SWP-1: walk-forward windows, the in-sample winner, its out-of-sample result and the gap."""
from __future__ import annotations

import json
from datetime import date

import pytest

from tradebook.errors import ConfigError
from tradebook.marketdata import load_bars
from tradebook.research import table
from tradebook.research.evaluate import Job, evaluate
from tradebook.research.walkforward import summary, walk_forward, windows


def test_swp1_when_rolling_windows_then_in_sample_slides_and_out_of_sample_follows_without_gaps():
    spans = windows(date(2000, 3, 1), date(2013, 3, 1), "4y", "2y", "rolling")
    assert spans[0] == (date(2000, 3, 1), date(2004, 2, 29), date(2004, 3, 1), date(2006, 2, 28))
    assert [s[0] for s in spans] == [date(2000 + 2 * k, 3, 1) for k in range(len(spans))]
    for (_, is_end, oos_start, oos_end), nxt in zip(spans, spans[1:] + [None]):
        assert (oos_start - is_end).days == 1 and oos_end >= oos_start
        if nxt:
            assert (nxt[2] - oos_end).days == 1  # out-of-sample windows tile the history
    assert spans[-1][3] == date(2013, 3, 1)


def test_swp1_when_anchored_windows_then_in_sample_always_starts_at_the_first_date():
    spans = windows(date(2000, 3, 1), date(2013, 3, 1), "6y", "2y", "anchored")
    assert {s[0] for s in spans} == {date(2000, 3, 1)}
    assert [s[1].year for s in spans] == [2006, 2008, 2010, 2012]


def test_swp1_when_history_too_short_or_bad_span_then_clear_error():
    with pytest.raises(ConfigError, match="too short"):
        windows(date(2010, 1, 1), date(2012, 1, 1), "3y", "1y")
    with pytest.raises(ConfigError, match="3y, 18m or 26w"):
        windows(date(2000, 1, 1), date(2012, 1, 1), "3 years", "1y")
    with pytest.raises(ConfigError, match="rolling or anchored"):
        windows(date(2000, 1, 1), date(2012, 1, 1), "3y", "1y", "expanding")


def test_swp1_when_walk_forward_then_each_window_picks_the_in_sample_best_and_reports_it_out_of_sample(
        tmp_path, make_params):
    """SWP-1: the winner is the in-sample argmax; its out-of-sample figure is that set run on unseen dates."""
    db = tmp_path / "wf.duckdb"
    grid = {"fast": [5, 20], "slow": [50, 100]}
    report = walk_forward("sma_reference", grid, in_sample="4y", out_of_sample="3y", params=make_params(), symbols=["IBM"],
                          db=db, workers=1, progress=False, name="wf")
    assert len(report) == 3
    bars = load_bars(["IBM"])
    for row in report.itertuples(index=False):
        inside = table.results(db, f"wf:is{row.window}")
        assert len(inside) == 4 and row.is_sharpe == inside["sharpe"].max()
        chosen = json.loads(row.params)
        alone = evaluate(Job("sma_reference", ("IBM",), row.oos_start, row.oos_end, False, 100_000.0), chosen, bars)
        assert row.oos_sharpe == alone["sharpe"] and row.gap == row.is_sharpe - row.oos_sharpe
    s = summary(report)
    assert s["windows"] == 3 and s["gap"] == pytest.approx(report["gap"].mean())
    again = walk_forward("sma_reference", grid, in_sample="4y", out_of_sample="3y", params=make_params(), symbols=["IBM"],
                         db=db, workers=1, progress=False, name="wf")
    assert again.equals(report)  # resumed from the table: nothing new, same report
