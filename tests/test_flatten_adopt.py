"""CTL-5 + OPS-7 + REC-3/REC-5: a flatten on a damaged ledger, then restore, then reconcile.

The real flow on a SimBroker: a held STRATEGY position, a backup, the ledger truncated
(as a full disk or an interrupted copy leaves it), ``flatten`` closing at the broker and
journaling to ``runs/flatten-unrecorded-<stamp>.json``, ``ledger restore``, ``run
reconcile``. The reconcile must record the flatten's sale as our own fill (real price,
realized P&L), never as an EXTERNAL_CLOSE without a price, and trip no divergence.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from test_ledger_integrity import age, truncate_to
from support.trading import EXEC_DAY, fills, hold, incidents, make_ctx, ny, trades
from tradebook.ledger import equity as equity_store
from tradebook.ledger import events as event_store
from tradebook.ledger.backup import backup, restore
from tradebook.phases.flatten import flatten
from tradebook.phases.flatten_adopt import applied, unapplied
from tradebook.phases.reconcile import run_reconcile

CID = f"flat-{EXEC_DAY:%Y%m%d}-AAPL"


@pytest.fixture(autouse=True)
def _no_env_kill_switch(monkeypatch):
    monkeypatch.delenv("KILL_SWITCH", raising=False)


def _held_and_backed_up(root: Path) -> Path:
    """AAPL 10 @ 300 held by the strategy and reconciled, then backed up; returns the ledger file."""
    ctx = make_ctx(root)
    ctx.broker.advance_to(ny(EXEC_DAY, 10))
    hold(ctx, "AAPL", 10, 300.0)
    run_reconcile(ctx)
    ledger = ctx.params.ledger_path(ctx.root)
    backup(ledger, now=ctx.now())
    return ledger


def _held_backed_up_then_damaged(root: Path):
    """AAPL 10 @ 300 held by the strategy and reconciled, backed up, then the ledger truncated."""
    ledger = _held_and_backed_up(root)
    truncate_to(0.5)(ledger)
    age(ledger)
    return ledger


def _flatten_offline_and_restore(root: Path) -> Path:
    ledger = _held_backed_up_then_damaged(root)
    result = flatten(make_ctx(root), "get out", source="test")
    assert result.submitted == (CID,), result.summary()
    journal, = (root / "runs").glob("flatten-unrecorded-*.json")
    restore(None, ledger)
    return journal


def _event_count(ctx) -> int:
    return ctx.ledger.read(event_store.count)


def test_reconcile_when_restored_after_offline_flatten_then_sale_adopted_as_our_fill_with_pnl(root: Path):
    """CTL-5/OPS-7/REC-3: the journaled flat- order becomes a FILL with its real price and realized P&L;
    position zero, no EXTERNAL_CLOSE, no DIVERGENCE incident, and a second reconcile writes nothing (REC-5)."""
    journal = _flatten_offline_and_restore(root)
    ctx = make_ctx(root)
    truth = ctx.broker.get_order(CID)
    assert truth.status == "filled" and truth.filled_qty == 10
    assert [j.name for j in unapplied(ctx.runs_dir, ctx.ledger)] == [journal.name]

    report = run_reconcile(ctx)

    assert [a.client_order_id for a in report.adopted] == [CID]
    assert not report.divergence and not report.actions, report.summary()
    assert ctx.broker.positions() == [] and ctx.ledger.read(lambda con: applied(con)).keys() == {journal.name}
    sale, = [t for t in trades(ctx) if t["side"] == "sell"]
    assert sale["kind"] == "FILL" and sale["price"] == pytest.approx(truth.filled_avg_price)
    assert sale["realized_pnl"] == pytest.approx((truth.filled_avg_price - 300.0) * 10)
    assert [f["client_order_id"] for f in fills(ctx)] == [CID]
    assert not trades(ctx, "EXTERNAL_CLOSE") and not incidents(ctx, "RECONCILE_DIVERGENCE")
    assert unapplied(ctx.runs_dir, ctx.ledger) == [] and journal.exists()  # kept as the audit record
    days = ctx.ledger.read(lambda con: equity_store.daily(con, "America/New_York"))   # the report's per-day table
    day = days[days["session_date"].astype(str) == str(EXEC_DAY)]
    assert day["realized"].tolist() == [pytest.approx((truth.filled_avg_price - 300.0) * 10)]

    before = (_event_count(ctx), len(trades(ctx)), len(fills(ctx)))
    again = run_reconcile(make_ctx(root))
    assert not again.wrote and not again.adopted, again.summary()
    assert (_event_count(ctx), len(trades(ctx)), len(fills(ctx))) == before


def test_reconcile_when_journal_unmarked_but_order_already_in_ledger_then_skipped_not_booked_twice(root: Path):
    """REC-5: an order the ledger already holds is skipped, and a journal is applied once only.

    The same journal applied to a ledger restored again (the mark gone with the restore, the
    order kept because it is in the backup) books the sale exactly once."""
    _flatten_offline_and_restore(root)
    ctx = make_ctx(root)
    run_reconcile(ctx)
    ledger = ctx.params.ledger_path(ctx.root)
    with ctx.ledger.transaction() as con:   # as if this ledger had adopted the order but not marked the journal
        from tradebook.ledger import meta as ledger_meta
        ledger_meta.put(con, "flatten_journals", {"applied": {}}, ctx.now())
    assert unapplied(ctx.runs_dir, ctx.ledger)

    report = run_reconcile(make_ctx(root))

    assert report.adopted == [] and not report.divergence
    assert len([t for t in trades(ctx) if t["side"] == "sell"]) == 1 and len(fills(ctx)) == 1
    assert unapplied(ctx.runs_dir, ctx.ledger) == [] and ledger.exists()
    assert run_reconcile(make_ctx(root)).wrote is False


def test_reconcile_when_journal_unreadable_then_clear_error_naming_file_and_nothing_booked(root: Path):
    """OPS-7: a journal that is not JSON stops the reconcile with a plain error naming the file and what to do;
    nothing is booked as an EXTERNAL_CLOSE meanwhile."""
    from tradebook.errors import LedgerError

    journal = _flatten_offline_and_restore(root)
    journal.write_text("{not json")
    ctx = make_ctx(root)
    with pytest.raises(LedgerError, match="cannot be read") as err:
        run_reconcile(ctx)
    assert str(journal) in str(err.value) and "run reconcile" in str(err.value)
    assert not trades(ctx, "EXTERNAL_CLOSE")


def test_flatten_offline_when_closing_order_open_from_before_then_journal_names_its_id(root: Path):
    """CTL-5: a symbol already closing (our flat- order still working) is journaled with its client id,
    so the adoption after the restore looks it up by id instead of guessing."""
    ledger = _held_backed_up_then_damaged(root)
    ctx = make_ctx(root)
    ctx.broker.advance_to(ny(EXEC_DAY, 17))   # market shut: the closing order waits at the broker
    flatten(ctx, "first", source="test")
    second = flatten(make_ctx(root), "again", source="test")
    assert second.already_closing == ("AAPL",)
    newest = sorted((root / "runs").glob("flatten-unrecorded-*.json"))[-1]
    assert json.loads(newest.read_text())["already_closing_orders"] == [{"symbol": "AAPL", "client_order_id": CID}]
    restore(None, ledger)
    report = run_reconcile(make_ctx(root))
    adopted, = report.adopted
    assert (adopted.client_order_id, adopted.filled_qty) == (CID, 0) and adopted.status not in ("filled", "canceled")
    assert not report.divergence and not report.actions, report.summary()
    ctx = make_ctx(root)
    ctx.broker.advance_to(ny(EXEC_DAY, 9, 45) + timedelta(days=1))   # next open: the waiting order fills
    run_reconcile(ctx)
    sale, = [t for t in trades(ctx) if t["side"] == "sell"]
    assert sale["kind"] == "FILL" and sale["realized_pnl"] is not None and ctx.broker.positions() == []
    assert not trades(ctx, "EXTERNAL_CLOSE") and not incidents(ctx, "RECONCILE_DIVERGENCE")


def test_ledger_restore_when_unrecorded_flatten_journal_exists_then_names_it_and_reconcile_adopts(root: Path, cli,
                                                                                                 caplog):
    """OPS-7/CTL-5 through the commands an operator types: `flatten` on a truncated ledger, `ledger restore`
    (says "restored" once, names the journal, says the next reconcile adopts it), `run reconcile`."""
    from tradebook.context import Context

    ctx = Context.load(None, {}, root=root)
    hold(ctx, "AAPL", 10, 300.0)
    ledger = ctx.params.ledger_path(ctx.root)
    assert cli("ledger", "backup")[0] == 0
    truncate_to(0.5)(ledger)
    age(ledger)
    code, text = cli("flatten", "-r", "x", "--yes")
    assert code == 0 and "flatten-unrecorded-" in text, text
    journal, = (root / "runs").glob("flatten-unrecorded-*.json")

    code, text = cli("ledger", "restore")

    assert code == 0, text
    assert text.count("restored") == 1, text
    # a WARNING record would reach the terminal a second time (logging's last-resort handler on stderr)
    assert not [r for r in caplog.records if "restored" in r.getMessage() and r.levelno >= logging.WARNING]
    assert journal.name in text and "tradebook run reconcile" in text and "adopt" in text, text
    code, text = cli("run", "reconcile")
    assert code == 0, text
    cid = json.loads(journal.read_text())["closing_orders"][0]["client_order_id"]
    ctx = Context.load(None, {}, root=root)
    assert not trades(ctx, "EXTERNAL_CLOSE") and not incidents(ctx, "RECONCILE_DIVERGENCE")
    assert ctx.broker.get_order(cid) is not None and ctx.ledger.read(lambda con: applied(con)).keys() == {journal.name}
    code, text = cli("ledger", "restore", "--force")   # restoring again: the journal is still listed as pending
    assert code == 0 and journal.name in text, text


def test_reconcile_when_restored_after_offline_flatten_on_alpaca_fake_then_sale_adopted_as_our_fill(
        root: Path, monkeypatch):
    """CTL-5/OPS-7 on the Alpaca path (loopback fake, its answers checked against Alpaca's contract):
    the journaled flat- order is looked up by client id (GET /v2/orders:by_client_order_id) and booked as
    our FILL with realized P&L; no EXTERNAL_CLOSE, no divergence; a second reconcile writes nothing.

    Also OPS-7 on a paper/live context: the broker must work while the ledger is damaged (the
    flatten used to stop at the ledger's identity check before it reached the broker)."""
    from datetime import date

    from tradebook.context import Context
    from tradebook.params import load_params
    from tradebook.testing.alpaca_fake.server import FakeAlpacaServer

    keys = {"APCA_API_KEY_ID": "PKFLATADOPTTEST0001", "APCA_API_SECRET_KEY": "SKFLATADOPTTESTSECRET01"}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    day = date(2011, 8, 23)
    with FakeAlpacaServer(start=ny(day, 10), key_id=keys["APCA_API_KEY_ID"],
                          secret_key=keys["APCA_API_SECRET_KEY"]) as fake:
        fake.seed_position("AAPL", 10, 300.0)
        overrides = {**fake.overrides(), "runs_dir": str(root / "runs"), "alpaca.retries": 0}

        def make() -> Context:
            return Context(load_params(root / "params" / "alpaca-paper.yaml", overrides), root)

        ctx = make()
        run_reconcile(ctx)        # first sync: AAPL adopted from the account
        ledger = ctx.params.ledger_path(ctx.root)
        backup(ledger, now=ctx.now())
        truncate_to(0.5)(ledger)
        age(ledger)
        assert flatten(make(), "get out", source="test").submitted == (f"flat-{day:%Y%m%d}-AAPL",)
        restore(None, ledger)
        ctx = make()
        truth = ctx.broker.get_order(f"flat-{day:%Y%m%d}-AAPL")
        assert truth.status == "filled"

        report = run_reconcile(ctx)

        assert [a.client_order_id for a in report.adopted] == [truth.client_order_id]
        assert not report.divergence and not report.actions and ctx.broker.positions() == []
        sale, = [t for t in trades(ctx) if t["side"] == "sell"]
        assert sale["kind"] == "FILL" and sale["realized_pnl"] == pytest.approx((truth.filled_avg_price - 300) * 10)
        assert not trades(ctx, "EXTERNAL_CLOSE") and not incidents(ctx, "RECONCILE_DIVERGENCE")
        assert not run_reconcile(make()).wrote


def test_broker_incident_when_ledger_damaged_then_logged_and_broker_call_not_broken(caplog):
    """OPS-7: an item the Alpaca adapter skips is a ledger incident; with the ledger damaged it is logged
    instead, so the broker call (e.g. flatten's positions read) still completes."""
    from tradebook.context import _incident_recorder
    from tradebook.errors import LedgerCorrupt

    def damaged():
        raise LedgerCorrupt("ledger x is corrupt or damaged")

    _incident_recorder(damaged)("skipped position XYZ: unknown asset class")
    assert any("skipped position XYZ" in r.getMessage() and r.levelno >= logging.ERROR for r in caplog.records)


def test_reconcile_when_restored_ledger_predates_a_recorded_flatten_then_broker_lookup_adopts_it_once(root: Path):
    """CTL-5/OPS-7/REC-5 with no journal: the flatten ran on a healthy ledger after the backup, then the
    ledger was damaged. After the restore, the next reconcile looks the held symbols' flat- ids up at the
    broker and books the sale as our FILL with realized P&L (no EXTERNAL_CLOSE, no divergence); the
    restore's mark is cleared, so the look-up happens once."""
    ledger = _held_and_backed_up(root)
    assert flatten(make_ctx(root), "get out", source="test").submitted == (CID,)   # recorded in the ledger
    truncate_to(0.5)(ledger)
    age(ledger)
    restore(None, ledger)
    assert not list((root / "runs").glob("flatten-unrecorded-*.json"))
    ctx = make_ctx(root)
    truth = ctx.broker.get_order(CID)

    report = run_reconcile(ctx)

    assert [a.client_order_id for a in report.adopted] == [CID] and not report.divergence, report.summary()
    sale, = [t for t in trades(ctx) if t["side"] == "sell"]
    assert sale["kind"] == "FILL" and sale["realized_pnl"] == pytest.approx((truth.filled_avg_price - 300.0) * 10)
    assert not trades(ctx, "EXTERNAL_CLOSE") and not incidents(ctx, "RECONCILE_DIVERGENCE")
    assert not run_reconcile(make_ctx(root)).wrote


def test_reconcile_when_restored_backup_predates_executed_intents_then_their_orders_adopted_not_external(
        root: Path):
    """REC-2/REC-3/REC-5 after OPS-7's restore: intents decided before the backup and executed after it
    (tb-<intent>-a<n> at the broker, not in the restored ledger) are recorded as our orders and fills:
    intents FILLED, MSFT's exit with its realized P&L, AAPL/IBM as STRATEGY positions; no BACKFILL, no
    EXTERNAL_CLOSE, no divergence; done once."""
    from support.trading import decided_book, intent_states, ledger_positions, positions_match, window_time
    from tradebook.phases.execute import run_execute

    ctx = decided_book(root)
    ledger = ctx.params.ledger_path(ctx.root)
    backup(ledger, now=ctx.now())
    ctx.broker.advance_to(window_time())
    run_execute(ctx)
    sent = {i: s for i, s in intent_states(ctx.ledger).items()}
    assert set(sent.values()) == {"FILLED"}
    truncate_to(0.5)(ledger)
    age(ledger)
    restore(None, ledger)
    ctx = make_ctx(root)
    assert set(intent_states(ctx.ledger).values()) == {"PLANNED"}

    report = run_reconcile(ctx)

    assert len(report.adopted) == 3 and not report.divergence and not report.actions, report.summary()
    assert intent_states(ctx.ledger) == sent and positions_match(ctx)
    assert {s: p.origin for s, p in ledger_positions(ctx).items()} == {"AAPL": "STRATEGY", "IBM": "STRATEGY"}
    exit_sale, = [t for t in trades(ctx, "FILL") if t["side"] == "sell"]
    assert exit_sale["symbol"] == "MSFT" and exit_sale["realized_pnl"] == pytest.approx((exit_sale["price"] - 25) * 100)
    assert not trades(ctx, "BACKFILL") and not trades(ctx, "EXTERNAL_CLOSE")
    assert not incidents(ctx, "RECONCILE_DIVERGENCE") and not run_reconcile(make_ctx(root)).wrote


def test_reconcile_when_journal_belongs_to_another_ledger_then_not_applied_here(root: Path):
    """OPS-8: sim and paper ledgers may share a runs folder; a journal of the paper ledger's flatten is
    neither applied to nor marked in the sim ledger (it waits for its own), and restore does not list it."""
    journal = _flatten_offline_and_restore(root)
    payload = json.loads(journal.read_text())
    assert payload["ledger"] == "ledger.duckdb"
    journal.write_text(json.dumps({**payload, "ledger": "paper-ledger.duckdb"}))
    ctx = make_ctx(root)
    assert unapplied(ctx.runs_dir, ctx.ledger) == []

    report = run_reconcile(ctx)

    assert journal.name not in ctx.ledger.read(lambda con: applied(con))
    assert all(a.source != journal.name for a in report.adopted)   # (the restore's own broker look-up may find it)


def test_execute_when_ledger_just_restored_then_entries_blocked_until_a_full_reconcile(root: Path):
    """REC-8 after OPS-7's restore: the backup's "reconciled this session" no longer holds (orders sent
    after the backup are not adopted yet), so entries wait for the next full reconcile."""
    from tradebook.ledger import meta as ledger_meta

    _flatten_offline_and_restore(root)
    ctx = make_ctx(root)
    blocker = ctx.ledger.read(lambda con: ledger_meta.entry_blocker(con, ctx.now()))
    assert blocker is not None and "restored" in blocker and "tradebook run reconcile" in blocker
    run_reconcile(ctx)
    assert ctx.ledger.read(lambda con: ledger_meta.entry_blocker(con, ctx.now())) is None
