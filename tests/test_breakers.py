"""Account breakers BRK-1..3: the pure check, the equity snapshots, and acting through controls.

``run_breakers`` tests use the SimBroker: ``seed_position`` / ``drop_position`` change
equity outside tradebook (cash untouched), which moves the account by a known amount.
"""
from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from tradebook.safety import controls
from tradebook.safety.breakers import (check_breakers, current_peak, reset_peak, run_breakers, session_tripped,
                                update_snapshots)
from tradebook.context import Context
from tradebook.errors import BrokerError
from tradebook.ledger import equity as equity_store
from tradebook.ledger import events
from tradebook.ledger.db import Ledger
from tradebook.params import Params
from support.trading import control_rows

P = Params()
T0 = datetime(2012, 6, 4, 13, 0, tzinfo=timezone.utc)   # 09:00 New York


def codes(trips) -> list[tuple[str, str, str]]:
    return [(t.brk, t.code, t.action) for t in trips]


# --- check_breakers (pure) -----------------------------------------------------------------
def test_brk1_when_daily_loss_reaches_2pct_then_freeze():
    """BRK-1: loss >= daily_loss_pct of start-of-day equity -> FROZEN (session drawdown trips too)."""
    trips = check_breakers(98_000.0, 100_000.0, 100_000.0, 100_000.0, P)
    assert ("BRK-1", "DAILY_LOSS", "FROZEN") in codes(trips)
    assert ("BRK-2", "SESSION_DRAWDOWN", "REDUCE_ONLY") in codes(trips)
    assert not any(t.brk == "BRK-1" for t in check_breakers(98_001.0, 100_000.0, None, None, P))


def test_brk1_when_daily_loss_usd_reached_then_freeze():
    """BRK-1: daily_loss_usd is an absolute limit next to the percentage."""
    params = Params(daily_loss_usd=500.0)
    trips = check_breakers(99_500.0, 100_000.0, None, None, params)
    assert codes(trips) == [("BRK-1", "DAILY_LOSS_USD", "FROZEN")]
    assert trips[0].detail["loss"] == 500.0


def test_brk2_when_drawdown_from_peak_reaches_10pct_then_freeze():
    """BRK-2: drawdown from peak equity >= max_drawdown_pct -> FROZEN."""
    trips = check_breakers(108_000.0, 108_500.0, 120_000.0, 108_500.0, P)
    assert codes(trips) == [("BRK-2", "MAX_DRAWDOWN", "FROZEN")]
    assert trips[0].detail["value"] == pytest.approx(0.1)


def test_brk2_when_session_drawdown_reaches_1pct_then_reduce_only():
    """BRK-2: session drawdown >= session_drawdown_pct halts new entries (REDUCE_ONLY), exits still work."""
    trips = check_breakers(99_000.0, 100_000.0, 100_000.0, 100_000.0, P)
    assert codes(trips) == [("BRK-2", "SESSION_DRAWDOWN", "REDUCE_ONLY")]
    assert check_breakers(99_001.0, 100_000.0, 100_000.0, 100_000.0, P) == []


def test_brk3_when_equity_below_minimum_then_freeze():
    """BRK-3: equity < min_equity_usd -> FROZEN."""
    trips = check_breakers(24_999.0, None, None, None, P)
    assert codes(trips) == [("BRK-3", "MIN_EQUITY", "FROZEN")]
    assert check_breakers(25_000.0, None, None, None, P) == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_brk3_when_equity_is_not_a_number_then_reduce_only(bad):
    """BRK-3: a non-finite equity reading blocks new entries but keeps exits possible."""
    assert codes(check_breakers(bad, 100_000.0, 100_000.0, 100_000.0, P)) == [
        ("BRK-3", "INVALID_EQUITY", "REDUCE_ONLY")]


def test_breakers_when_no_references_yet_then_only_min_equity_checked():
    """BRK-1/2: a first reading (no start-of-day, no peak) cannot trip loss or drawdown."""
    assert check_breakers(50_000.0, None, None, None, P) == []
    assert check_breakers(50_000.0, 0.0, math.nan, None, P) == []


# --- snapshots -----------------------------------------------------------------------------
def test_snapshots_when_equity_moves_then_start_of_day_first_and_peak_max(tmp_path):
    """BRK-1/2 references: START_OF_DAY is the first equity of the exchange date; PEAK only rises."""
    ledger = Ledger(tmp_path / "ledger.duckdb")
    with ledger.transaction() as con:
        first = update_snapshots(con, T0, 100_000.0, 100_000.0)
        later = update_snapshots(con, T0 + timedelta(hours=2), 103_000.0, 50_000.0)
        lower = update_snapshots(con, T0 + timedelta(hours=3), 101_000.0, 50_000.0)
        next_day = update_snapshots(con, T0 + timedelta(days=1), 99_000.0, 50_000.0)
    assert (first.start_of_day, first.peak) == (100_000.0, 100_000.0)
    assert (later.start_of_day, later.peak) == (100_000.0, 103_000.0)
    assert (lower.start_of_day, lower.peak, lower.session_start) == (100_000.0, 103_000.0, 100_000.0)
    assert (next_day.start_of_day, next_day.peak) == (99_000.0, 103_000.0)
    kinds = Counter(s["kind"] for s in ledger.read(equity_store.history))
    assert kinds == {"PEAK": 2, "START_OF_DAY": 2}


def test_snapshots_when_late_evening_utc_then_exchange_date_used(tmp_path):
    """Snapshots key on the America/New_York date: 01:00 UTC is still the previous exchange day."""
    ledger = Ledger(tmp_path / "ledger.duckdb")
    with ledger.transaction() as con:
        refs = update_snapshots(con, datetime(2012, 6, 5, 1, 0, tzinfo=timezone.utc), 100_000.0, None)
    assert str(refs.session_date) == "2012-06-04"


def test_snapshots_when_equity_not_finite_then_typed_error_and_nothing_written(tmp_path):
    """A NaN equity must never become a START_OF_DAY or PEAK reference."""
    ledger = Ledger(tmp_path / "ledger.duckdb")
    with pytest.raises(BrokerError):
        with ledger.transaction() as con:
            update_snapshots(con, T0, math.nan, 1.0)
    assert ledger.read(equity_store.history) == []


def test_reset_peak_when_operator_accepts_loss_then_peak_restarts(tmp_path):
    """BRK-2: after a drawdown freeze the operator restarts the high-water mark, with a reason."""
    ledger = Ledger(tmp_path / "ledger.duckdb")
    with ledger.transaction() as con:
        update_snapshots(con, T0, 120_000.0, None)
        reset_peak(con, T0 + timedelta(hours=1), 100_000.0, "drawdown reviewed, strategy ok")
        assert current_peak(con) == 100_000.0
        assert update_snapshots(con, T0 + timedelta(hours=2), 101_000.0, None).peak == 101_000.0
        with pytest.raises(ValueError):
            reset_peak(con, T0, 100_000.0, "  ")
    assert ledger.read(events.count, "PEAK_RESET") == 1


# --- run_breakers (SimBroker + controls) ---------------------------------------------------
@pytest.fixture
def sim_ctx(root, make_params):
    def build(**overrides) -> Context:
        return Context(make_params(**overrides), root)
    return build


def _bump_equity(ctx: Context, dollars: float) -> None:
    """Give the sim account a position worth about ``dollars`` (cash untouched)."""
    price = ctx.broker.quotes(["AAPL"])["AAPL"].bid
    ctx.broker.seed_position("AAPL", round(dollars / price, 3), price)


def test_run_breakers_when_daily_loss_then_frozen_with_alerts_once(sim_ctx):
    """BRK-1: a 3% loss since start of day freezes trading through controls and alerts; a second
    check records nothing new (one freeze, one set of alerts)."""
    ctx = sim_ctx()
    _bump_equity(ctx, 3_100.0)
    assert run_breakers(ctx) == []
    ctx.broker.drop_position("AAPL")
    trips = run_breakers(ctx)
    assert {("BRK-1", "DAILY_LOSS"), ("BRK-2", "SESSION_DRAWDOWN")} <= {(t.brk, t.code) for t in trips}
    assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state == "FROZEN"
    alerts = [e.data["code"] for e in ctx.ledger.read(events.find, "ALERT", alert="BREAKER")]
    assert "DAILY_LOSS" in alerts and "SESSION_DRAWDOWN" in alerts
    assert [(c["actor"], c["source"]) for c in control_rows(ctx)] == [("breaker", "BRK-1")]
    assert run_breakers(ctx)                                # still tripped ...
    assert len(control_rows(ctx)) == 1                      # ... no new row
    assert ctx.ledger.read(events.count, "ALERT", alert="BREAKER") == len(alerts)


def test_run_breakers_when_session_drawdown_then_reduce_only_and_sticky_for_session(sim_ctx):
    """BRK-2: a 1.5% session loss -> REDUCE_ONLY; after a resume the same session it trips again."""
    ctx = sim_ctx()
    _bump_equity(ctx, 1_550.0)
    run_breakers(ctx)
    ctx.broker.drop_position("AAPL")
    assert [(t.code, t.action) for t in run_breakers(ctx)] == [("SESSION_DRAWDOWN", "REDUCE_ONLY")]
    assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state == "REDUCE_ONLY"
    with ctx.ledger.connect() as con:
        assert session_tripped(con, ctx.now())
    controls.resume(ctx.params, ctx.root, "testing: operator resumes", now=ctx.now())
    _bump_equity(ctx, 1_550.0)                              # equity back to the session start
    trips = run_breakers(ctx)
    assert [(t.code, t.detail.get("sticky")) for t in trips] == [("SESSION_DRAWDOWN", True)]
    assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state == "REDUCE_ONLY"


def test_run_breakers_when_drawdown_from_peak_then_frozen(sim_ctx):
    """BRK-2: equity 10% under the recorded peak freezes."""
    ctx = sim_ctx(i_understand_the_risk=True, daily_loss_pct=0.5, session_drawdown_pct=0.5)
    _bump_equity(ctx, 12_000.0)
    run_breakers(ctx)
    ctx.broker.drop_position("AAPL")
    assert [(t.brk, t.code) for t in run_breakers(ctx)] == [("BRK-2", "MAX_DRAWDOWN")]
    assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state == "FROZEN"


def test_run_breakers_when_equity_below_minimum_then_frozen(sim_ctx):
    """BRK-3: the sim account (100k) is below a 150k minimum -> FROZEN on the first check."""
    ctx = sim_ctx(min_equity_usd=150_000)
    assert [(t.brk, t.code) for t in run_breakers(ctx)] == [("BRK-3", "MIN_EQUITY")]
    status = controls.effective_state(ctx.params, ctx.root, ctx.ledger)
    assert status.state == "FROZEN" and "MIN_EQUITY" in status.reasons[0]


# --- issue 12 item 8: the real day ------------------------------------------------------------
GAP_FRIDAY, GAP_MONDAY = (2011, 8, 5), (2011, 8, 8)   # AAPL: -3.7% from Friday's close to Monday 09:40


def _gap_ctx(root, shares: float):
    from datetime import date

    from support.trading import hold, make_ctx, mid, ny

    ctx = make_ctx(root)
    ctx.broker.advance_to(ny(date(*GAP_FRIDAY), 15, 0))
    hold(ctx, "AAPL", shares, mid(ctx, "AAPL"))
    ctx.broker.advance_to(ny(date(*GAP_FRIDAY), 15, 59))
    friday_close = ctx.broker.account().equity
    ctx.broker.advance_to(ny(date(*GAP_MONDAY), 9, 15))          # before the open: the pre-open reconcile
    from tradebook.phases.reconcile import run_reconcile

    run_reconcile(ctx)
    return ctx, friday_close, lambda hh, mm: ny(date(*GAP_MONDAY), hh, mm)


def test_brk1_when_overnight_gap_then_start_of_day_is_previous_close_recorded_before_open(root):
    """BRK-1 (issue 12 item 8): start-of-day equity is the previous session's closing equity
    (SimBroker's last close, as Alpaca's last_equity), recorded by the pre-open reconcile --
    not the first monitor tick, which would hide the overnight gap. A gap of -2.5% freezes."""
    ctx, friday_close, at = _gap_ctx(root, 4000)
    rows = [s for s in ctx.ledger.read(equity_store.history) if s["kind"] == "START_OF_DAY"]
    assert len(rows) == 1 and rows[0]["ts"] < at(9, 30)
    assert rows[0]["equity"] == pytest.approx(friday_close, rel=2e-3)
    assert ctx.broker.account().last_equity == pytest.approx(friday_close, rel=2e-3)
    ctx.broker.advance_to(at(9, 40))
    trips = run_breakers(ctx)                                  # the first monitor tick of the day
    assert ("BRK-1", "DAILY_LOSS", "FROZEN") in codes(trips)
    assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state == "FROZEN"


def test_brk2_when_session_drawdown_while_already_reduce_only_then_recorded_and_no_rearm(root):
    """BRK-2 (issue 12 item 8): a session drawdown seen while the state is already REDUCE_ONLY
    (an auto trip) is still recorded, and blocks the automatic re-arm for the rest of the session."""
    ctx, _, at = _gap_ctx(root, 2000)                          # -1.8%: session drawdown, not daily loss
    controls.reduce_only(ctx.ledger, "reconcile divergence (test)", source="reconcile", now=at(9, 16))
    ctx.broker.advance_to(at(9, 40))
    assert ("BRK-2", "SESSION_DRAWDOWN", "REDUCE_ONLY") in codes(run_breakers(ctx))
    with ctx.ledger.connect() as con:
        assert session_tripped(con, at(9, 40))
    ctx.broker.advance_to(at(11, 0))                           # cooldown long over, broker healthy
    assert controls.try_rearm(ctx, True, at(11, 0)) is False
    assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state == "REDUCE_ONLY"


def test_monitor_when_account_read_fails_then_breakers_skipped_and_stop_loss_still_sent(root):
    """BRK / EXIT-9 (issue 12 item 8): a failed account read skips the breakers for that tick,
    never the protective exits: the breached stop is sold in the same tick."""
    from tradebook.phases.monitor import run_monitor
    from support.trading import EXEC_DAY, hold, make_ctx, mid, ny

    ctx = make_ctx(root)
    ctx.broker.advance_to(ny(EXEC_DAY, 12))
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.10)
    ctx.broker.inject_fault("http_503", times=2, op="account")  # the breakers' read and the gate's
    report = run_monitor(ctx)
    assert report.breaker_trips == [] and [e.code for e in report.exits] == ["STOP_LOSS"]
    assert ctx.broker.positions() == []
    assert ctx.ledger.read(events.count, "BREAKERS_SKIPPED") == 1


def test_brk1_when_alpaca_account_has_last_equity_then_adapter_reports_it():
    """BRK-1: Alpaca's account field last_equity ("equity as of previous trading day at 16:00:00 ET",
    Alpaca OpenAPI spec) reaches Account.last_equity; absent or empty -> None (first equity stands in)."""
    from tradebook.broker.alpaca.convert import to_account

    base = {"equity": "98000.10", "cash": "50000", "buying_power": "50000", "status": "ACTIVE"}
    assert to_account({**base, "last_equity": "101234.56"}, True).last_equity == pytest.approx(101234.56)
    assert to_account(base, True).last_equity is None
    assert to_account({**base, "last_equity": ""}, True).last_equity is None


def test_brk1_when_alpaca_first_reading_is_mid_session_after_a_drop_then_start_of_day_is_yesterdays_close(
        root, monkeypatch):
    """BRK-1 on the Alpaca path: the first equity reading of the day comes mid-session, after the book
    fell 3% from the previous close (2011-08-05 -> 08-08). Start-of-day is Alpaca's last_equity
    ("equity as of previous trading day at 16:00:00 ET"), not the equity seen then, so the loss trips."""
    from datetime import date

    from tradebook.params import load_params
    from tradebook.testing.alpaca_fake.server import FakeAlpacaServer
    from support.trading import ny

    keys = {"APCA_API_KEY_ID": "PKLASTEQUITYTEST0001", "APCA_API_SECRET_KEY": "SKLASTEQUITYTESTSECRET01"}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    with FakeAlpacaServer(start=ny(date(2011, 8, 5), 10), key_id=keys["APCA_API_KEY_ID"],
                          secret_key=keys["APCA_API_SECRET_KEY"]) as fake:
        fake.seed_position("AAPL", 3000, 48.0)
        fake.set_time(ny(date(2011, 8, 5), 17))                  # Friday's close passes
        friday_close = 100_000 + 3000 * 48.02
        fake.set_time(ny(date(2011, 8, 8), 15, 30))              # Monday afternoon, AAPL down ~5%
        overrides = {**fake.overrides(), "runs_dir": str(root / "runs"), "alpaca.retries": 0}
        ctx = Context(load_params(root / "params" / "alpaca-paper.yaml", overrides), root)
        account = ctx.broker.account()
        assert account.last_equity == pytest.approx(friday_close)
        assert (friday_close - account.equity) / friday_close > 0.02
        trips = run_breakers(ctx)
        starts = [s["equity"] for s in ctx.ledger.read(equity_store.history) if s["kind"] == "START_OF_DAY"]
        assert starts == [pytest.approx(friday_close)]
        assert ("BRK-1", "DAILY_LOSS", "FROZEN") in codes(trips)
        assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state == "FROZEN"
