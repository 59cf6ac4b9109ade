"""Rows for the store tests (tests/test_ledger_*.py): an intent and a pending order as execute writes them."""
from __future__ import annotations

from datetime import datetime, timezone

from tradebook.ledger import intents as intent_store
from tradebook.ledger import orders as order_store

T0 = datetime(2011, 7, 21, 13, 36, tzinfo=timezone.utc)


def intent_row(iid: str, state: str = "PLANNED", attempt: int = 0, urgency: str = "normal",
               kind: str = "ENTRY") -> intent_store.Intent:
    """A 10-share AAPL buy limit at 100 decided at T0."""
    return intent_store.Intent(iid, T0, None, kind, "AAPL", "buy", 10.0, "limit", 100.0, urgency, 0.5, 100.0, T0,
                               "test", state, attempt, None, None, T0)


def pending_order(con, cid: str, iid: str, attempt: int = 1) -> None:
    """The order row execute records before it sends (pending_submit)."""
    order_store.insert_pending(con, cid, iid, attempt, "AAPL", "buy", 10.0, "limit", 100.0, "day", T0)
