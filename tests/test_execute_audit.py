"""Execute's summary and audit record (issue 13 item 5; GATE-1, GATE-5, EXE-6, REC-8): what was sent at
which prices, and what was refused by which rule with its numbers."""
from __future__ import annotations

import math

import pytest

from tradebook.safety import controls
from tradebook.phases.execute import run_execute
from tradebook.engine.notebook_files import printed_summary
from tradebook.phases.reconcile import run_reconcile
from tradebook.engine.runner import run_phase
from support.trading import decided_book, decide_time, fills, make_ctx, mid, plant, window_time

ORDERS = "orders: limit, fill price, slippage vs decision (bps, + = worse)"
REFUSALS = "gate refusals: rule, reason and its numbers"


@pytest.fixture
def actx(root):
    """MSFT held with a planned exit, AAPL and IBM entries; reconciled for the next session."""
    return decided_book(root)


def test_execute_summary_when_everything_refused_by_halt_then_names_rule_code_and_symbols(actx):
    """GATE-1: a run where the halt refused every order says so, not just "OK"."""
    controls.halt(actx.params, actx.root, "drill")
    actx.broker.advance_to(window_time())
    text = run_execute(actx).summary()
    assert "state HALTED" in text and "REFUSED by the gate: GATE-1 HALTED x3 (AAPL, IBM, MSFT)" in text


def test_execute_report_when_orders_fill_then_audit_shows_limit_fill_price_and_slippage(actx):
    """EXE-6 in the audit record: per order the limit price, the fill price and the slippage."""
    actx.broker.advance_to(window_time())
    orders = run_execute(actx).tables()[ORDERS]
    assert sorted(orders["symbol"]) == ["AAPL", "IBM", "MSFT"]
    assert orders["limit_price"].notna().all() and orders["fill_price"].notna().all()
    slippage = {f["symbol"]: f["slippage_bps"] for f in fills(actx)}
    for row in orders.itertuples():
        assert row.slippage_bps == pytest.approx(slippage[row.symbol])


def test_execute_report_when_refused_by_a_cap_then_audit_shows_rule_and_numbers(root):
    """GATE-5 in the audit record: the refusal carries the rule, the code and the notional vs the limit."""
    ctx = make_ctx(root, max_order_notional=500)
    ctx.broker.advance_to(decide_time())
    plant(ctx, "AAPL", "ENTRY", math.ceil(600 / mid(ctx, "AAPL")))   # ~$600 > the $500 cap
    run_reconcile(ctx)
    ctx.broker.advance_to(window_time())
    report = run_execute(ctx)
    refusals = report.tables()[REFUSALS]
    row = refusals.iloc[0]
    assert (row["rule"], row["reason_code"], row["symbol"]) == ("GATE-5", "MAX_ORDER_NOTIONAL", "AAPL")
    assert "limit=500" in row["numbers"] and "notional=" in row["numbers"]
    assert "GATE-5 MAX_ORDER_NOTIONAL x1 (AAPL)" in report.summary()


def test_execute_summary_when_not_reconciled_then_says_entries_were_held_back(root):
    """REC-8 in the summary: the operator reads why entries were not sent."""
    ctx = make_ctx(root)
    ctx.broker.advance_to(decide_time())
    plant(ctx, "AAPL", "ENTRY", 10)
    ctx.broker.advance_to(window_time())
    text = run_execute(ctx).summary()
    assert "GATE-1 NOT_RECONCILED x1 (AAPL)" in text and "entries held back (REC-8)" in text


@pytest.mark.integration
def test_run_execute_when_halted_then_cli_summary_line_names_the_refusals(root):
    """`tradebook run execute` prints the notebook's summary: OK as a run, but every order refused."""
    ctx = make_ctx(root, runs_dir="runs")
    ctx.broker.advance_to(decide_time())
    plant(ctx, "AAPL", "ENTRY", 10)
    run_reconcile(ctx)
    ctx.broker.advance_to(window_time())
    controls.halt(ctx.params, root, "drill")
    record = run_phase("execute", root=root, overrides={"sim.start_date": "2011-07-01"})
    line = printed_summary(record.notebook_path, "execute")
    assert record.status == "OK" and "REFUSED by the gate: GATE-1 HALTED x1 (AAPL)" in line


@pytest.mark.parametrize("phase,line", [
    ("reconcile", "reconcile @ 2011-08-22 16:20 EDT: ledger in sync with the broker; nothing written"),
    ("execute", "execute @ 2011-08-22 09:36 EDT: 1 sent"),
    ("decide", "decide 2011-08-22 @ 16:20 EDT: 1 entry / 0 exit signal(s); 1 approved (0 EXIT_PLANNED), 0 rejected"),
    ("report", "report 2011-08-22 · state RUNNING · equity 98,553.62 · day P&L +1.74"),
])
def test_run_summary_when_phase_prints_its_line_then_cli_shows_it_not_the_header(tmp_path, phase, line):
    """README "What tradebook run execute tells you": `tradebook run <phase>` prints the phase's summary
    line; decide and report print theirs with the session date first, which was never found."""
    import json

    header = f"{phase} · mode=sim · params 6e195f173afb43ce · run 2011-08-22-162000-{phase}-5ef31128\n"
    cells = [{"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}
             for text in (header, line + "\n")]
    path = tmp_path / f"{phase}.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert printed_summary(path, phase) == line


def test_order_slippage_when_an_order_fills_in_parts_then_quantity_weighted(tmp_path):
    """EXE-6: the audit's slippage of an order weighs each partial fill by its quantity; an order whose
    fills carry no slippage shows none; an order without fills is absent."""
    from datetime import datetime, timezone

    from tradebook.ledger import fills as fill_store
    from tradebook.ledger.db import Ledger

    ledger, ts = Ledger(tmp_path / "ledger.duckdb"), datetime(2011, 7, 21, 13, 36, tzinfo=timezone.utc)
    with ledger.transaction() as con:
        fill_store.insert(con, "c1", "i1", "AAPL", "buy", 30, 100.1, ts, 100.0, 10.0)
        fill_store.insert(con, "c1", "i1", "AAPL", "buy", 10, 100.5, ts, 100.0, 50.0)
        fill_store.insert(con, "c2", "i2", "IBM", "buy", 5, 100.0, ts, None, None)
    by_order = ledger.read(fill_store.slippage_by_order, ["c1", "c2", "c3"])
    assert by_order == {"c1": pytest.approx(20.0), "c2": None}
