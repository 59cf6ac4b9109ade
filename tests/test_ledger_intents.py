"""The ``intents`` store (tradebook.ledger.intents): what its reads return, as execute, sync and flatten
rely on it (EXE-1, EXIT-3)."""
from __future__ import annotations

from tradebook.ledger import intents as intent_store
from tradebook.ledger import orders as order_store
from support.ledger_rows import T0, intent_row, pending_order


def test_intent_reads_when_orders_stranded_or_unanswered_then_current_attempt_only(ledger):
    """EXIT-3/EXE-1: a SUBMITTED intent is resumable when its *current* attempt's row is unanswered, and
    stranded when that row is final; an earlier attempt's row does not count."""
    with ledger.transaction() as con:
        intent_store.insert(con, intent_row("i1", "SUBMITTED", 2))
        intent_store.insert(con, intent_row("i2", "SUBMITTED", 1))
        pending_order(con, "i1-a1", "i1", attempt=1)                    # an old attempt, still pending
        pending_order(con, "i1-a2", "i1", attempt=2)
        order_store.set_status(con, "i1-a2", "rejected", "FRACTIONAL_NOT_SUPPORTED", T0)
        pending_order(con, "i2-a1", "i2", attempt=1)
        unanswered = [i.intent_id for i in intent_store.unanswered(con)]
        stranded = intent_store.stranded(con, {"rejected", "filled"})
    assert unanswered == ["i2"]
    assert stranded == [("i1", "i1-a2", "rejected", 0.0, "FRACTIONAL_NOT_SUPPORTED", "normal")]


def test_intent_insert_when_id_exists_then_nothing_written_and_prefix_read_filters_states(ledger):
    """EXIT-3: one row per deterministic id; flatten's ended ids are read by prefix and state."""
    with ledger.transaction() as con:
        assert intent_store.insert(con, intent_row("flat-20110721-AAPL", "FAILED", kind="EXIT"))
        assert not intent_store.insert(con, intent_row("flat-20110721-AAPL", "PLANNED", kind="EXIT"))
        intent_store.insert(con, intent_row("flat-20110721-IBM", "SUBMITTED", kind="EXIT"))
        intent_store.insert(con, intent_row("20110721-AAPL-ENTRY"))
        ended = intent_store.ids_with_prefix(con, "flat-20110721-", {"FAILED", "FILLED"})
        every = intent_store.ids_with_prefix(con, "flat-20110721-")
        state = intent_store.load(con, "flat-20110721-AAPL").state
    assert ended == {"flat-20110721-AAPL"} and state == "FAILED"
    assert every == {"flat-20110721-AAPL", "flat-20110721-IBM"}
