"""CTL-5 with OPS-1/OPS-7: a ledger that becomes unavailable part-way, spent ids, and a reconcile mid-flatten.

The lock is real: a separate process opens the ledger with DuckDB (as a notebook or another run would)
at the chosen moment, started from a hook on a broker call. Sim broker, SIM ledger.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.trading import EXEC_DAY, hold, incidents, make_ctx, ny, positions_match, trades
from tradebook.errors import BrokerRejected
from tradebook.ledger import orders as order_store
from tradebook.phases.flatten import flatten
from tradebook.phases.reconcile import run_reconcile

DAY = f"{EXEC_DAY:%Y%m%d}"
AAPL, GOOG = f"flat-{DAY}-AAPL", f"flat-{DAY}-GOOG"
_HOLD = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.read()"


class Holder:
    """Another process holding the ledger open (DuckDB's file lock) until released."""

    def __init__(self, ledger: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(ledger)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=20)


@pytest.fixture(autouse=True)
def _fast_lock(monkeypatch):
    monkeypatch.delenv("KILL_SWITCH", raising=False)
    monkeypatch.setenv("TRADEBOOK_LEDGER_LOCK_TIMEOUT_S", "0.3")


@pytest.fixture
def holders():
    started: list[Holder] = []
    yield started
    for h in started:
        h.release()


def _book(root: Path, *symbols: tuple[str, float, float]) -> Path:
    ctx = make_ctx(root)
    ctx.broker.advance_to(ny(EXEC_DAY, 10))
    for sym, qty, avg in symbols:
        hold(ctx, sym, qty, avg)
    run_reconcile(ctx)
    return ctx.params.ledger_path(ctx.root)


def _flag(root: Path) -> dict:
    return json.loads((root / "runs" / "KILL_SWITCH-ledger").read_text())


def _journals(root: Path) -> list[Path]:
    return sorted((root / "runs").glob("flatten-unrecorded-*.json"))


def _settled(root: Path) -> None:
    """After the holder is gone: reconcile books each sale once, as our FILL with P&L; nothing diverges."""
    ctx = make_ctx(root)
    report = run_reconcile(ctx)
    assert not report.divergence and not report.actions, report.summary()
    sells = [t for t in trades(ctx) if t["side"] == "sell"]
    assert sorted(t["symbol"] for t in sells) == sorted({t["symbol"] for t in sells})   # once per symbol
    assert all(t["kind"] == "FILL" and t["realized_pnl"] is not None for t in sells), sells
    assert not trades(ctx, "EXTERNAL_CLOSE") and not incidents(ctx, "RECONCILE_DIVERGENCE")
    assert ctx.broker.positions() == [] and positions_match(ctx)
    assert not run_reconcile(make_ctx(root)).wrote


def test_flatten_when_ledger_locked_after_first_step_then_rest_closed_offline_journaled_and_frozen(
        root: Path, holders):
    """CTL-5/OPS-1: another process takes the ledger after FLATTEN_START is recorded (at the cancel step):
    both positions are still closed at the broker, journaled, the flag ends FROZEN (not "in progress"),
    and the output says where the record is and to run reconcile."""
    ledger = _book(root, ("AAPL", 10, 300.0), ("GOOG", 5, 600.0))
    ctx = make_ctx(root)
    real = ctx.broker.open_orders

    def open_orders():
        if not holders:
            holders.append(Holder(ledger))
        return real()

    ctx.broker.open_orders = open_orders

    result = flatten(ctx, "get out", source="test")

    assert sorted(result.submitted) == [AAPL, GOOG], result.summary()
    assert result.status.state == "FROZEN" and _flag(root)["state"] == "FROZEN"
    assert "in progress" not in _flag(root)["reason"]
    note = " ".join(result.status.notes)
    assert "held by another process" in note and "flatten-unrecorded-" in note and "run reconcile" in note
    journal, = _journals(root)
    payload = json.loads(journal.read_text())
    assert payload["complete"] is True
    assert sorted(a["client_order_id"] for a in payload["closing_orders"]) == [AAPL, GOOG]
    holders[0].release()
    _settled(root)


def test_flatten_when_ledger_locked_between_two_closes_then_second_closed_offline_first_not_journaled_twice(
        root: Path, holders):
    """CTL-5/OPS-1: the lock appears right after the first closing order was sent (recorded before sending,
    its answer not): the second symbol is closed offline and journaled; the first is named as already in
    the ledger, not journaled as a closing order, and the next reconcile books each sale exactly once."""
    ledger = _book(root, ("AAPL", 10, 300.0), ("GOOG", 5, 600.0))
    ctx = make_ctx(root)
    real = ctx.broker.close_position

    def close_position(symbol, cid):
        order = real(symbol, cid)
        if not holders:
            holders.append(Holder(ledger))
        return order

    ctx.broker.close_position = close_position

    result = flatten(ctx, "get out", source="test")

    first = result.submitted[0]
    assert sorted(result.submitted) == [AAPL, GOOG] and result.status.state == "FROZEN", result.summary()
    payload = json.loads(_journals(root)[0].read_text())
    assert [a["client_order_id"] for a in payload["closing_orders"]] == [c for c in (AAPL, GOOG) if c != first]
    assert payload["recorded_in_ledger"] == [first] and payload["already_closing_orders"] == []
    assert "in progress" not in _flag(root)["reason"] and _flag(root)["state"] == "FROZEN"
    holders[0].release()
    _settled(root)


def _rejected_once(ctx, symbol: str) -> None:
    real = ctx.broker.close_position

    def close_position(sym, cid):
        if sym == symbol and not getattr(close_position, "done", False):
            close_position.done = True
            raise BrokerRejected("asset is not tradable right now")   # refused outright: no order at the broker
        return real(sym, cid)

    ctx.broker.close_position = close_position


def _goog_close_resent_offline_after_a_reject(root: Path, holders: list) -> None:
    """GOOG 5 @ 600 held; today's flatten close of it rejected; the side record of spent ids lost (as an
    older version wrote none); a second flatten with the ledger locked resends flat-<day>-GOOG offline."""
    ledger = _book(root, ("GOOG", 5, 600.0))
    ctx = make_ctx(root)
    _rejected_once(ctx, "GOOG")
    flatten(ctx, "first", source="test")
    for side in (root / "runs").glob("flatten-ended-*.json"):
        side.unlink()
    holders.append(Holder(ledger))
    assert flatten(make_ctx(root), "again", source="test").submitted == (GOOG,)
    holders[0].release()


def test_flatten_offline_when_earlier_close_rejected_today_then_next_attempt_id_used(root: Path, holders):
    """CTL-5/EXE-1: GOOG's close was refused earlier today (flat-<day>-GOOG FAILED in the ledger, unknown
    to the broker); a flatten with the ledger locked sends flat-<day>-GOOG-2, never the spent id, and the
    next reconcile books it as our FILL with P&L (no EXTERNAL_CLOSE, no divergence)."""
    ledger = _book(root, ("GOOG", 5, 600.0))
    ctx = make_ctx(root)
    _rejected_once(ctx, "GOOG")
    assert flatten(ctx, "first", source="test").failed
    assert ctx.ledger.read(lambda con: order_store.load(con, GOOG)).status == "rejected"
    assert make_ctx(root).broker.get_order(GOOG) is None
    holders.append(Holder(ledger))

    result = flatten(make_ctx(root), "again", source="test")

    assert result.submitted == (f"{GOOG}-2",), result.summary()
    holders[0].release()
    _settled(root)


def test_reconcile_when_journaled_id_is_rejected_in_ledger_but_filled_at_broker_then_fill_booked(
        root: Path, holders):
    """CTL-5/REC-3: an offline flatten that could not know an id was spent (no side record: e.g. written
    by an older version) resent flat-<day>-GOOG and the broker filled it; adoption updates the ledger's
    rejected row with the broker's answer: FILL at the real price with P&L, intent FILLED, no
    EXTERNAL_CLOSE, no divergence, once."""
    _goog_close_resent_offline_after_a_reject(root, holders)

    _settled(root)

    ctx = make_ctx(root)
    row = ctx.ledger.read(lambda con: order_store.load(con, GOOG))
    assert row.status == "filled" and row.filled_qty == 5
    from support.trading import intent_state
    assert intent_state(ctx, GOOG) == "FILLED"


def test_flatten_offline_when_reconcile_runs_between_closes_then_sale_booked_once(root: Path, holders):
    """CTL-5/REC-3/REC-5: the journal names every planned close before the first is sent, so a full
    reconcile run between two offline closes (the lock gone meanwhile) adopts the first sale as our FILL
    instead of booking an EXTERNAL_CLOSE; the next reconcile adopts the second; each sale once."""
    ledger = _book(root, ("AAPL", 10, 300.0), ("GOOG", 5, 600.0))
    holders.append(Holder(ledger))
    ctx = make_ctx(root)
    real = ctx.broker.close_position
    seen: list[str] = []

    def close_position(symbol, cid):
        named = [a["client_order_id"] for j in _journals(root) for a in json.loads(j.read_text())["closing_orders"]]
        assert cid in named, "sent before the journal names it"
        order = real(symbol, cid)
        if not seen:
            holders[0].release()
            mid = run_reconcile(make_ctx(root))
            assert not mid.divergence and not mid.actions, mid.summary()
        seen.append(cid)
        return order

    ctx.broker.close_position = close_position

    result = flatten(ctx, "get out", source="test")

    assert sorted(result.submitted) == [AAPL, GOOG] and len(seen) == 2, result.summary()
    _settled(root)


def test_reconcile_when_sale_already_booked_as_external_close_then_journal_adoption_does_not_book_it_again(
        root: Path, holders):
    """CTL-5/REC-3/REC-5: a reconcile that ran before the journal was readable booked the sale as an
    EXTERNAL_CLOSE; adopting the journal afterwards records the order as ours (row filled, intent FILLED,
    an event naming it) but books no second sale, no new divergence, and writes nothing the next time."""
    ledger = _book(root, ("AAPL", 10, 300.0))
    holders.append(Holder(ledger))
    flatten(make_ctx(root), "get out", source="test")
    holders[0].release()
    journal, = _journals(root)
    aside = root / "aside"
    aside.mkdir()
    shutil.move(str(journal), aside / journal.name)
    run_reconcile(make_ctx(root))
    ctx = make_ctx(root)
    assert len(trades(ctx, "EXTERNAL_CLOSE")) == 1
    diverged = len(incidents(ctx, "RECONCILE_DIVERGENCE"))
    shutil.move(str(aside / journal.name), journal)

    report = run_reconcile(make_ctx(root))

    assert [a.client_order_id for a in report.adopted] == [AAPL] and not report.actions, report.summary()
    assert [t["kind"] for t in trades(ctx) if t["side"] == "sell"] == ["EXTERNAL_CLOSE"]
    assert len(incidents(ctx, "RECONCILE_DIVERGENCE")) == diverged and positions_match(ctx)
    assert ctx.ledger.read(lambda con: order_store.load(con, AAPL)).status == "filled"
    from support.trading import intent_state
    assert intent_state(ctx, AAPL) == "FILLED"
    assert not run_reconcile(make_ctx(root)).wrote


def test_reconcile_when_reused_id_filled_and_already_booked_externally_then_row_corrected_sale_not_booked_twice(
        root: Path, holders):
    """CTL-5/REC-3/REC-5: the reused (ledger: rejected) id filled at the broker and a reconcile booked that
    sale as an EXTERNAL_CLOSE before the journal was readable: adoption corrects the row to the broker's
    answer but books no second sale; no new divergence; nothing written the next time."""
    _goog_close_resent_offline_after_a_reject(root, holders)
    journal, = _journals(root)
    (root / "aside").mkdir()
    shutil.move(str(journal), root / "aside" / journal.name)
    run_reconcile(make_ctx(root))
    ctx = make_ctx(root)
    diverged = len(incidents(ctx, "RECONCILE_DIVERGENCE"))
    shutil.move(str(root / "aside" / journal.name), journal)

    report = run_reconcile(make_ctx(root))

    assert [a.client_order_id for a in report.adopted] == [GOOG] and not report.actions, report.summary()
    assert [t["kind"] for t in trades(ctx) if t["side"] == "sell"] == ["EXTERNAL_CLOSE"]
    assert ctx.ledger.read(lambda con: order_store.load(con, GOOG)).status == "filled"
    assert len(incidents(ctx, "RECONCILE_DIVERGENCE")) == diverged and positions_match(ctx)
    assert not run_reconcile(make_ctx(root)).wrote
