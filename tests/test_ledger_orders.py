"""The ``orders`` store (tradebook.ledger.orders): what each write keeps and what each read leaves out,
as the order path relies on it (EXE-1, VEN-1)."""
from __future__ import annotations

from datetime import timedelta

from tradebook.ledger import intents as intent_store
from tradebook.ledger import orders as order_store
from support.ledger_rows import T0, intent_row, pending_order

LATER = T0 + timedelta(minutes=5)


def test_order_row_when_broker_answer_lacks_id_or_reason_then_stored_ones_kept(ledger):
    """VEN-1: a later look-up without a broker id or reject reason never erases the recorded ones."""
    with ledger.transaction() as con:
        pending_order(con, "c1", "i1")
        order_store.record_broker_view(con, "c1", "new", "b-1", 0.0, None, "first reason", T0)
        order_store.record_broker_view(con, "c1", "partially_filled", None, 4.0, 100.5, None, LATER)
        row = order_store.load(con, "c1")
    assert (row.status, row.broker_id, row.filled_qty, row.filled_avg_price, row.reject_reason, row.updated_at) == (
        "partially_filled", "b-1", 4.0, 100.5, "first reason", LATER)


def test_order_row_when_written_again_then_pending_replaces_but_flatten_reset_keeps_what_was_recorded(ledger):
    """EXE-1: the order path's pending row replaces an earlier row of the id (a fresh send); flatten's
    reset only sets the status back to pending_submit and keeps what the row recorded."""
    with ledger.transaction() as con:
        pending_order(con, "c1", "i1")
        order_store.record_broker_view(con, "c1", "canceled", "b-1", 3.0, 99.0, None, T0)
        pending_order(con, "c1", "i1")
        fresh = order_store.load(con, "c1")
        order_store.insert_or_reset_pending(con, "flat-1", "flat-1", 1, "AAPL", "sell", 10.0, "market", "day", T0)
        order_store.record_broker_view(con, "flat-1", "rejected", "b-2", 0.0, None, "refused", T0)
        order_store.insert_or_reset_pending(con, "flat-1", "flat-1", 1, "AAPL", "sell", 10.0, "market", "day", LATER)
        reset = order_store.load(con, "flat-1")
    assert (fresh.status, fresh.broker_id, fresh.filled_qty) == ("pending_submit", None, 0.0)
    assert (reset.status, reset.broker_id, reset.reject_reason, reset.updated_at) == (
        "pending_submit", "b-2", "refused", LATER)


def test_not_sent_when_marked_then_only_that_attempts_unanswered_rows_change(ledger):
    """EXE-1: only the attempt's pending_submit/unknown row becomes not_sent; answered rows and other
    attempts stay as they are."""
    with ledger.transaction() as con:
        pending_order(con, "a1", "i1", attempt=1)
        pending_order(con, "a2", "i1", attempt=2)
        pending_order(con, "b1", "i2", attempt=1)
        order_store.record_broker_view(con, "b1", "filled", "b-1", 10.0, 100.0, None, T0)
        order_store.mark_not_sent(con, "i1", 2, LATER)
        order_store.mark_not_sent(con, "i2", 1, LATER)
        statuses = {o.client_order_id: o.status for o in order_store.every(con)}
    assert statuses == {"a1": "pending_submit", "a2": "not_sent", "b1": "filled"}


def test_working_rows_when_read_then_final_statuses_and_other_ids_left_out(ledger):
    """VEN-1: the rows looked up again are those whose status is not final, joined with their intent."""
    with ledger.transaction() as con:
        intent_store.insert(con, intent_row("i1", "SUBMITTED", 1, urgency="immediate"))
        pending_order(con, "c1", "i1")
        pending_order(con, "c2", "i1", attempt=2)
        order_store.set_status(con, "c2", "filled", None, T0)
        rows = order_store.with_intent(con, {"filled", "canceled"})
        only = order_store.with_intent(con, {"filled"}, ["c2"])
        none = order_store.with_intent(con, {"filled"}, [])
    assert [(r[0], r[7], r[11], r[14], r[15]) for r in rows] == [("c1", "pending_submit", "immediate", "SUBMITTED", 1)]
    assert only == [] and none == []
