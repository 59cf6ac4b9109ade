"""SimBroker: the embedded venue replaying real daily bars.

SPEC §2; EXE-1, EXE-2, EXE-5, OPS-1 and GATE-6/GATE-11 as the venue enforces them.
"""
from __future__ import annotations

import subprocess
import sys
import time as time_module
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tradebook import sessions
from tradebook.broker.base import Broker, OrderRequest
from tradebook.broker.sim.broker import SimBroker
from tradebook.broker.sim.path import day_path, session_minutes
from tradebook.errors import (BrokerError, BrokerRejected, BrokerUnavailable, CalendarError, ConfigError,
                              DuplicateClientOrderId, FractionalNotSupported, OrderOutcomeUnknown,
                              UnknownSymbol)
from tradebook.marketdata import load_bars

NY = sessions.EXCHANGE_TZ
FRI = date(2011, 7, 1)        # a regular session; the next one is Tue 2011-07-05 (07-04 holiday)
TUE = date(2011, 7, 5)
HALF = date(2011, 11, 25)     # closes 13:00


def ny(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), NY)


def bar(symbol: str, day: date):
    frame = load_bars([symbol])
    return frame[frame["date"] == day].iloc[0]


def order(symbol: str, side: str, qty, cid: str, limit: float | None = None, tif: str = "day") -> OrderRequest:
    return OrderRequest(symbol, side, Decimal(str(qty)), cid, order_type="limit" if limit else "market",
                        limit_price=Decimal(str(round(limit, 2))) if limit else None, time_in_force=tif)


def make_sim(path: Path, **kw) -> SimBroker:
    kw.setdefault("start_date", FRI)
    return SimBroker(path / "sim.duckdb", **kw)


@pytest.fixture
def sim(tmp_path: Path) -> SimBroker:
    return make_sim(tmp_path)


@pytest.fixture
def open_sim(sim: SimBroker) -> SimBroker:
    """Clock at Friday 2011-07-01 10:00, market open."""
    sim.advance_to(ny(FRI, 10))
    return sim


# --- clock, sessions, persistence --------------------------------------------------------------

def test_new_state_when_start_is_holiday_weekend_then_0800_on_next_session(tmp_path):
    sim = make_sim(tmp_path, start_date=date(2011, 7, 2))
    clock = sim.clock()
    assert clock.now == ny(TUE, 8) and not clock.is_open
    assert (clock.next_open, clock.next_close) == (ny(TUE, 9, 30), ny(TUE, 16))
    assert sim.account().cash == 100_000.0 and isinstance(sim, Broker)


def test_from_params_when_built_then_state_in_runs_dir(make_params, root):
    params = make_params(**{"sim.start_date": "2011-07-01"})
    sim = SimBroker.from_params(params, root)
    assert sim.clock().now == ny(FRI, 8)          # 08:00 on the first session of the start date
    assert params.sim_state_path(root).exists()


def test_clock_when_half_day_then_next_close_1300_and_closed_after(sim):
    sim.advance_to(ny(HALF, 12))
    clock = sim.clock()
    assert clock.is_open and clock.next_close == ny(HALF, 13)
    sim.advance_to(ny(HALF, 13))
    assert not sim.clock().is_open and sim.clock().next_open == ny(date(2011, 11, 28), 9, 30)
    assert sim.session_times(HALF).close == ny(HALF, 13)
    with pytest.raises(CalendarError):
        sim.session_times(date(2011, 7, 4))


def test_advance_when_backwards_then_calendar_error(open_sim):
    with pytest.raises(CalendarError, match="cannot move back"):
        open_sim.advance_to(ny(FRI, 9))


def test_state_when_second_instance_opens_same_file_then_same_account(tmp_path, open_sim):
    """OPS-1: the state is persisted; another SimBroker on the file sees clock, cash, orders."""
    open_sim.submit(order("AAPL", "buy", 10, "p-1"))
    open_sim.submit(order("IBM", "buy", 5, "p-2", limit=100.0))
    other = make_sim(tmp_path)
    assert other.clock().now == ny(FRI, 10)
    assert other.account() == open_sim.account()
    assert [o.client_order_id for o in other.open_orders()] == ["p-2"]
    assert other.positions() == open_sim.positions()
    open_sim.cancel("p-2")                  # a change after the other instance's last read
    other_view = other.get_order("p-2")
    assert other_view.status == "canceled" and other.open_orders() == []


CHILD = """
import duckdb, os, pathlib, sys, time
from decimal import Decimal
from tradebook.broker.sim import state as sim_state
from tradebook.broker.base import OrderRequest
from tradebook.broker.sim.broker import SimBroker

path, signals = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def wait_for(name):
    while not (signals / name).exists():
        time.sleep(0.01)

sim = SimBroker(path)
sim.submit(OrderRequest("MSFT", "buy", Decimal(3), "child-1", order_type="market"))
print(repr(sim.quotes(["AAPL"])["AAPL"].mid), flush=True)
con = duckdb.connect(str(path))                      # hold the file, as a long write would
(signals / "holding").touch()
wait_for("release")
con.close()
(signals / "released").touch()
wait_for("crash")
def save_then_die(con, book):                        # die after COMMIT, before the final stamp
    sim_state._write_book(con, book)
    con.execute("COMMIT")
    os._exit(0)
sim_state.save_book = lambda con, book: (con.execute("BEGIN TRANSACTION"), save_then_die(con, book))
sim.submit(OrderRequest("IBM", "buy", Decimal(2), "child-2", order_type="market"))
"""


def test_state_when_other_process_writes_holds_or_dies_then_seen_locked_and_never_stale(tmp_path, open_sim):
    """OPS-1: the file is attached only per call, so another process can write between calls;
    while it holds the file, calls retry and then report BrokerUnavailable; a writer that dies
    after its commit never leaves readers on a stale snapshot. Same seeded path in every process."""
    signals = tmp_path / "signals"
    signals.mkdir()

    def wait_for(name: str) -> None:
        deadline = time_module.monotonic() + 120
        while not (signals / name).exists():
            assert child.poll() is None and time_module.monotonic() < deadline, f"child never reached {name}"
            time_module.sleep(0.01)

    assert open_sim.positions() == []                # a snapshot the child's writes must invalidate
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "sim.duckdb"), str(signals)],
                             stdout=subprocess.PIPE, text=True)
    try:
        wait_for("holding")
        child_mid = float(child.stdout.readline())
        with pytest.raises(BrokerUnavailable, match="locked"):
            make_sim(tmp_path, lock_timeout_s=0.3).clock()
        (signals / "release").touch()
        wait_for("released")
        assert [p.symbol for p in open_sim.positions()] == ["MSFT"]
        (signals / "crash").touch()
        assert child.wait(timeout=120) == 0
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert [p.symbol for p in open_sim.positions()] == ["IBM", "MSFT"]
    assert open_sim.get_order("child-2").status == "filled"
    assert open_sim.quotes(["AAPL"])["AAPL"].mid == child_mid


def test_state_when_files_moved_aside_while_in_use_then_fresh_account(tmp_path, open_sim):
    """`tradebook demo --fresh` archives runs/ while a broker object may still exist."""
    open_sim.submit(order("AAPL", "buy", 1, "old-1"))
    archive = tmp_path / "archive"
    archive.mkdir()
    for f in tmp_path.glob("sim.duckdb*"):
        f.rename(archive / f.name)
    assert open_sim.clock().now == ny(FRI, 8)
    assert open_sim.positions() == [] and open_sim.get_order("old-1") is None


def test_open_when_file_is_not_duckdb_then_clear_broker_error(tmp_path):
    (tmp_path / "sim.duckdb").write_text("not a database")
    with pytest.raises(BrokerError, match="corrupt"):
        make_sim(tmp_path).clock()


def test_open_when_seed_differs_from_state_then_config_error(tmp_path, open_sim):
    with pytest.raises(ConfigError, match="seed"):
        make_sim(tmp_path, seed=8).clock()


# --- prices: path, quotes, bars ------------------------------------------------------------------

def test_day_path_when_built_then_open_to_close_within_range_touching_high_and_low():
    for symbol, day in (("AAPL", FRI), ("GOOG", HALF), ("IBM", date(2008, 10, 10))):
        b = bar(symbol, day)
        i = sessions.table().index_of_day(day)
        path = day_path(symbol, day, session_minutes(i), 7)
        assert len(path) == session_minutes(i) + 1
        assert path[0] == pytest.approx(b.open) and path[-1] == pytest.approx(b.close)
        assert path.min() == pytest.approx(b.low) and path.max() == pytest.approx(b.high)


def test_quotes_when_seeded_then_deterministic_and_seed_changes_intraday_only(tmp_path):
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 99)):
        s = make_sim(tmp_path / name, seed=seed)
        mids = []
        for minute in (0, 45, 200, 390):
            s.advance_to(ny(FRI, 9, 30) + timedelta(minutes=minute))
            mids.append(s.quotes(["AAPL"])["AAPL"].mid)
        runs.append(mids)
    assert runs[0] == runs[1]
    assert runs[0][1:3] != runs[2][1:3]
    assert runs[0][0] == runs[2][0] and runs[0][3] == runs[2][3]   # open and close are the real bar


def test_quotes_when_before_open_then_previous_close_with_spread(sim):
    q = sim.quotes(["AAPL"])["AAPL"]
    prev = bar("AAPL", date(2011, 6, 30))
    assert q.mid == pytest.approx(prev.close)
    assert q.spread_bps == pytest.approx(4.0, rel=1e-6)
    assert q.day_open == pytest.approx(prev.open) and q.ts == ny(FRI, 8)
    sim.advance_to(ny(FRI, 16, 30))
    q = sim.quotes(["AAPL"])["AAPL"]
    assert q.mid == pytest.approx(bar("AAPL", FRI).close)
    assert q.day_open == pytest.approx(bar("AAPL", FRI).open) and q.prev_close == pytest.approx(prev.close)


def test_quotes_when_symbol_unknown_or_not_listed_then_error_or_left_out(sim):
    with pytest.raises(UnknownSymbol):
        sim.quotes(["TSLA"])
    assert set(sim.quotes(["AAPL", "FB"])) == {"AAPL"}      # FB lists in 2012
    assert not sim.asset("FB").tradable and sim.asset("AAPL").fractionable


def test_daily_bars_when_session_not_closed_then_no_todays_bar(sim):
    """No look-ahead: today's bar only once the session has closed."""
    def last():
        bars = sim.daily_bars(["AAPL", "IBM"], date(2011, 6, 1), date(2011, 12, 31))
        return bars.groupby("symbol")["date"].max()

    assert set(last()) == {date(2011, 6, 30)}
    sim.advance_to(ny(FRI, 15, 59))
    assert set(last()) == {date(2011, 6, 30)}
    sim.advance_to(ny(FRI, 16))
    assert set(last()) == {FRI}
    sim.advance_to(ny(HALF, 13))
    assert set(last()) == {HALF}


def test_daily_bars_when_aapl_split_2005_02_28_then_prices_continuous(tmp_path):
    """Adjusted bars: the 2:1 split is not a -50% day (the raw source shows it)."""
    sim = make_sim(tmp_path, start_date=date(2005, 2, 1))
    sim.advance_to(ny(date(2005, 3, 10), 17))
    bars = sim.daily_bars(["AAPL"], date(2005, 2, 24), date(2005, 3, 2)).set_index("date")
    ratio = bars.loc[date(2005, 2, 28), "close"] / bars.loc[date(2005, 2, 25), "close"]
    assert 0.9 < ratio < 1.1
    from bokeh_sampledata.stocks import AAPL
    raw = dict(zip(AAPL["date"], AAPL["close"]))
    assert raw["2005-02-28"] / raw["2005-02-25"] < 0.6      # the unadjusted split really is there
    assert list(bars.columns) == ["symbol", "open", "high", "low", "close", "volume"]


# --- fills --------------------------------------------------------------------------------------

def test_market_buy_when_open_then_fills_at_ask_and_account_updates(open_sim):
    q = open_sim.quotes(["AAPL"])["AAPL"]
    o = open_sim.submit(order("AAPL", "buy", 10, "m-1"))
    assert (o.status, o.filled_qty) == ("filled", 10.0)
    assert o.filled_avg_price == pytest.approx(q.ask)
    acct = open_sim.account()
    assert acct.cash == pytest.approx(100_000 - 10 * q.ask)
    assert acct.equity == pytest.approx(acct.cash + 10 * q.mid)
    pos = open_sim.positions()[0]
    assert (pos.symbol, pos.qty) == ("AAPL", 10.0) and pos.avg_price == pytest.approx(q.ask)
    assert pos.market_price == pytest.approx(q.mid)


def test_market_order_when_closed_then_accepted_and_fills_at_next_open(sim):
    o = sim.submit(order("IBM", "buy", 4, "m-2"))
    assert o.status == "accepted" and o.filled_qty == 0
    changed = sim.advance_to(ny(FRI, 9, 45))
    assert [c.client_order_id for c in changed] == ["m-2"]
    filled = sim.get_order("m-2")
    assert filled.status == "filled" and filled.updated_at == ny(FRI, 9, 30)
    assert filled.filled_avg_price == pytest.approx(bar("IBM", FRI).open * (1 + 2e-4))


def test_queued_market_buy_when_open_gaps_above_cash_then_rejected_at_fill(sim):
    """Cash account: an overnight gap never pushes cash below zero."""
    ask = sim.quotes(["AAPL"])["AAPL"].ask
    qty = int(100_000 / ask)
    assert qty * bar("AAPL", FRI).open * (1 + 2e-4) > 100_000      # AAPL opens above Thursday's close
    sim.submit(order("AAPL", "buy", qty, "gap-1"))
    sim.advance_to(ny(FRI, 9, 31))
    o = sim.get_order("gap-1")
    assert o.status == "rejected" and "insufficient cash" in o.reject_reason
    assert sim.account().cash == 100_000 and sim.positions() == []


def test_ioc_when_not_marketable_then_cancelled_and_market_ioc_fills(open_sim):
    low = bar("IBM", FRI).low
    assert open_sim.submit(order("IBM", "buy", 1, "ioc-1", limit=low * 0.9, tif="ioc")).status == "canceled"
    assert open_sim.submit(order("IBM", "buy", 1, "ioc-2", tif="ioc")).status == "filled"
    assert open_sim.open_orders() == []


def test_limit_buy_when_path_never_crosses_then_expires_at_close(open_sim):
    low = bar("AAPL", FRI).low
    open_sim.submit(order("AAPL", "buy", 10, "l-1", limit=low * 0.99))
    assert open_sim.account().buying_power < open_sim.account().cash      # reserved while open
    changed = open_sim.advance_to(ny(FRI, 18))
    o = open_sim.get_order("l-1")
    assert (o.status, o.filled_qty, o.updated_at) == ("expired", 0.0, ny(FRI, 16))
    assert [c.status for c in changed] == ["expired"]
    assert open_sim.account().buying_power == open_sim.account().cash


def test_limit_buy_when_path_crosses_then_fills_at_limit(open_sim):
    b = bar("AAPL", FRI)
    ask_now = open_sim.quotes(["AAPL"])["AAPL"].ask
    limit = round(min(ask_now * 0.999, b.low * 1.001 + 0.05), 2)
    assert b.low * 1.0002 < limit < ask_now          # crossed later today, not marketable now
    assert open_sim.submit(order("AAPL", "buy", 10, "l-2", limit=limit)).status == "new"
    open_sim.advance_to(ny(FRI, 16))
    o = open_sim.get_order("l-2")
    assert o.status == "filled" and o.filled_avg_price == pytest.approx(limit)
    assert ny(FRI, 10) < o.updated_at <= ny(FRI, 16)


def test_limit_sell_when_above_high_then_never_fills_but_below_fills(open_sim):
    open_sim.submit(order("AAPL", "buy", 10, "b-1"))
    b = bar("AAPL", FRI)
    open_sim.submit(order("AAPL", "sell", 5, "s-1", limit=b.high * 1.01))
    bid_now = open_sim.quotes(["AAPL"])["AAPL"].bid
    open_sim.submit(order("AAPL", "sell", 5, "s-2", limit=bid_now * 1.001))
    open_sim.advance_to(ny(FRI, 16))
    assert open_sim.get_order("s-1").status == "expired"
    assert open_sim.get_order("s-2").status == "filled"
    assert open_sim.positions()[0].qty == 5.0


def test_limit_when_marketable_then_fills_now_at_better_price(open_sim):
    ask = open_sim.quotes(["MSFT"])["MSFT"].ask
    o = open_sim.submit(order("MSFT", "buy", 3, "l-3", limit=ask * 1.01))
    assert o.status == "filled" and o.filled_avg_price == pytest.approx(ask)


def test_advance_when_in_small_steps_or_one_step_then_same_fills(tmp_path):
    """Determinism: fills do not depend on how the clock is walked."""
    results = []
    for name, step in (("one", 400), ("many", 29)):
        s = make_sim(tmp_path / name)
        s.advance_to(ny(FRI, 10))
        limit = s.quotes(["AAPL"])["AAPL"].ask * 0.996
        s.submit(order("AAPL", "buy", 10, "d-1", limit=limit))
        t = ny(FRI, 10)
        while t < ny(FRI, 16):
            t = min(t + timedelta(minutes=step), ny(FRI, 16))
            s.advance_to(t)
        o = s.get_order("d-1")
        results.append((o.status, o.filled_avg_price, o.updated_at, o.broker_id))
    assert results[0] == results[1]


def test_gtc_order_when_day_ends_then_stays_open_and_day_order_expires(open_sim):
    low = bar("IBM", FRI).low
    open_sim.submit(order("IBM", "buy", 1, "g-1", limit=low * 0.9, tif="gtc"))
    open_sim.submit(order("IBM", "buy", 1, "g-2", limit=low * 0.9))
    open_sim.advance_to(ny(TUE, 10))
    assert [o.client_order_id for o in open_sim.open_orders()] == ["g-1"]


def test_day_order_when_half_day_then_expires_at_1300(sim):
    sim.advance_to(ny(HALF, 10))
    sim.submit(order("IBM", "buy", 1, "h-1", limit=bar("IBM", HALF).low * 0.95))
    sim.advance_to(ny(HALF, 14))
    o = sim.get_order("h-1")
    assert o.status == "expired" and o.updated_at == ny(HALF, 13)


# --- rejects ------------------------------------------------------------------------------------

def test_buy_when_beyond_buying_power_then_rejected_and_not_recorded(open_sim):
    """GATE-11 at the venue: a cash account cannot spend more than its buying power."""
    with pytest.raises(BrokerRejected) as err:
        open_sim.submit(order("GOOG", "buy", 1000, "bp-1"))
    assert err.value.code == "INSUFFICIENT_BUYING_POWER"
    assert open_sim.get_order("bp-1") is None
    price = open_sim.quotes(["IBM"])["IBM"].bid * 0.98
    open_sim.submit(order("IBM", "buy", int(60_000 / price), "bp-2", limit=price))   # reserves ~60k
    with pytest.raises(BrokerRejected, match="buying power"):
        open_sim.submit(order("IBM", "buy", int(50_000 / price), "bp-3", limit=price))


def test_sell_when_more_than_held_then_rejected_no_shorts(open_sim):
    """GATE-6 at the venue: no shorts; shares promised to open sells count as used."""
    with pytest.raises(BrokerRejected) as err:
        open_sim.submit(order("AAPL", "sell", 1, "ns-1"))
    assert err.value.code == "INSUFFICIENT_QTY"
    open_sim.submit(order("AAPL", "buy", 10, "ns-2"))
    open_sim.submit(order("AAPL", "sell", 6, "ns-3", limit=bar("AAPL", FRI).high * 1.05))
    with pytest.raises(BrokerRejected, match="available: 4"):
        open_sim.submit(order("AAPL", "sell", 5, "ns-4"))


def test_fractional_when_symbol_not_fractionable_or_not_day_then_rejected(tmp_path):
    """EXE-5: fractional qty only for params.sim.fractionable symbols, day orders only."""
    sim = make_sim(tmp_path, fractionable=["AAPL"])
    sim.advance_to(ny(FRI, 10))
    with pytest.raises(FractionalNotSupported, match="IBM"):
        sim.submit(order("IBM", "buy", 0.5, "f-1"))
    with pytest.raises(FractionalNotSupported, match="DAY"):
        sim.submit(order("AAPL", "buy", 0.5, "f-2", limit=40.0, tif="gtc"))
    assert sim.submit(order("AAPL", "buy", 0.5, "f-3")).filled_qty == 0.5
    assert not sim.asset("IBM").fractionable and sim.asset("AAPL").fractionable


def test_submit_when_client_id_reused_then_duplicate_error(open_sim):
    """EXE-1: the venue refuses a second order with the same client_order_id."""
    open_sim.submit(order("AAPL", "buy", 1, "dup-1"))
    with pytest.raises(DuplicateClientOrderId):
        open_sim.submit(order("AAPL", "buy", 1, "dup-1"))
    assert len(open_sim.fills()) == 1


def test_cancel_when_open_filled_or_unknown_then_cancelled_or_rejected(open_sim):
    open_sim.submit(order("IBM", "buy", 1, "c-1", limit=100.0))
    open_sim.submit(order("IBM", "buy", 1, "c-2", limit=101.0))
    open_sim.submit(order("IBM", "buy", 1, "c-3"))
    open_sim.cancel("c-1")
    assert open_sim.get_order("c-1").status == "canceled"
    with pytest.raises(BrokerRejected) as err:
        open_sim.cancel("c-3")
    assert err.value.code == "ORDER_NOT_CANCELABLE"
    with pytest.raises(BrokerRejected) as err:
        open_sim.cancel("nope")
    assert err.value.code == "ORDER_NOT_FOUND"
    assert open_sim.cancel_all().client_order_ids == ("c-2",)
    assert open_sim.open_orders() == []


def test_close_position_when_held_then_market_sell_of_all_else_none(open_sim):
    open_sim.submit(order("AAPL", "buy", 7, "cp-1"))
    assert open_sim.close_position("MSFT", "cp-x") is None
    o = open_sim.close_position("AAPL", "cp-2")
    assert (o.client_order_id, o.side, o.order_type) == ("cp-2", "sell", "market")
    assert (o.status, o.filled_qty) == ("filled", 7)
    assert open_sim.positions() == []


def test_seed_and_drop_position_when_external_change_then_positions_follow_cash_unchanged(open_sim):
    pos = open_sim.seed_position("MSFT", 12, 25.0)
    assert (pos.qty, pos.avg_price) == (12, 25.0)
    assert open_sim.account().equity == pytest.approx(100_000 + 12 * pos.market_price)
    open_sim.drop_position("MSFT")
    assert open_sim.positions() == [] and open_sim.account().cash == 100_000


# --- fault injection (EXE-2) ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["http_500", "http_503", "http_429"])
def test_submit_when_http_fault_then_unavailable_nothing_recorded_and_next_call_works(open_sim, kind):
    """EXE-2: transient venue errors are BrokerUnavailable; one fault per call."""
    open_sim.inject_fault(kind)
    with pytest.raises(BrokerUnavailable, match=kind[-3:]):
        open_sim.submit(order("AAPL", "buy", 1, "h-1"))
    assert open_sim.get_order("h-1") is None
    assert open_sim.submit(order("AAPL", "buy", 1, "h-1")).status == "filled"


def test_submit_when_timeout_after_accept_then_outcome_unknown_but_order_exists(open_sim):
    """EXE-1: the order reached the venue; a blind resubmit is refused, a lookup finds it."""
    open_sim.inject_fault("timeout_after_accept")
    with pytest.raises(OrderOutcomeUnknown):
        open_sim.submit(order("AAPL", "buy", 2, "t-1"))
    assert open_sim.get_order("t-1").status == "filled"
    with pytest.raises(DuplicateClientOrderId):
        open_sim.submit(order("AAPL", "buy", 2, "t-1"))


def test_submit_when_reject_or_fractional_fault_then_business_reject(open_sim):
    open_sim.inject_fault("reject_buying_power")
    open_sim.inject_fault("fractional_reject")
    with pytest.raises(BrokerRejected) as err:
        open_sim.submit(order("AAPL", "buy", 1, "r-1"))
    assert err.value.code == "INSUFFICIENT_BUYING_POWER"
    with pytest.raises(FractionalNotSupported):
        open_sim.submit(order("AAPL", "buy", 1, "r-2"))
    assert open_sim.get_order("r-1") is None and open_sim.get_order("r-2") is None


def test_submit_when_partial_fill_fault_then_half_fills_and_rest_expires(open_sim):
    open_sim.inject_fault("partial_fill")
    o = open_sim.submit(order("IBM", "buy", 10, "pf-1"))
    assert (o.status, o.filled_qty) == ("partially_filled", 5.0)
    assert [x.client_order_id for x in open_sim.open_orders()] == ["pf-1"]
    open_sim.advance_to(ny(FRI, 16))
    o = open_sim.get_order("pf-1")
    assert (o.status, o.filled_qty) == ("expired", 5.0)
    assert [f.qty for f in open_sim.fills()] == [5.0] and open_sim.positions()[0].qty == 5.0


def test_read_when_fault_injected_for_op_then_that_call_fails_once(tmp_path, open_sim):
    """Faults persist in the state: injected by one instance, consumed by another."""
    open_sim.inject_fault("http_503", op="get_order")
    open_sim.inject_fault("http_500", times=2, op="positions")
    open_sim.inject_fault("http_429", op="account")
    other = make_sim(tmp_path)
    with pytest.raises(BrokerUnavailable):
        other.get_order("x")
    assert other.get_order("x") is None
    for _ in range(2):
        with pytest.raises(BrokerUnavailable):
            open_sim.positions()
    assert open_sim.positions() == []
    with pytest.raises(BrokerUnavailable, match="429"):
        other.account()
    assert other.account().cash == 100_000


def test_inject_fault_when_kind_or_op_unknown_then_value_error(sim):
    with pytest.raises(ValueError):
        sim.inject_fault("meteor")
    with pytest.raises(ValueError):
        sim.inject_fault("partial_fill", op="positions")
