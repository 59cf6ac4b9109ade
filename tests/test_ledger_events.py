"""The ``events`` store (tradebook.ledger.events): what its filters match, as the daemon's plan (OPS-4),
the breakers (BRK-2) and the alerts (OPS-5) rely on."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tradebook.ledger import events

T0 = datetime(2011, 11, 23, 21, 0, tzinfo=timezone.utc)


def test_event_filters_when_data_fields_and_times_given_then_text_match_and_inclusive_range(ledger):
    """BRK-2/OPS-4: data fields compare as text (an int attempt matches "2"); since and until are inclusive;
    a filter of None is no filter; the order is the order recorded."""
    with ledger.transaction() as con:
        events.record(con, "ALERT", data={"alert": "BREAKER", "code": "DAILY_LOSS"}, ts=T0)
        events.record(con, "ALERT", data={"alert": "BREAKER", "code": "SESSION_DRAWDOWN"}, ts=T0 + timedelta(hours=1))
        events.record(con, "ALERT", data={"alert": "MISSED_WINDOW", "phase": "execute"}, ts=T0 + timedelta(hours=2))
        events.record(con, "INTENT_SUBMITTED", symbol="AAPL", data={"attempt": 2}, reason="retry", ts=T0)
        events.record(con, "INTENT_SUBMITTED_LATE", ts=T0)
        assert events.count(con, "ALERT", alert="BREAKER", until=T0 + timedelta(hours=1)) == 2
        assert events.values(con, "ALERT", "code", alert="BREAKER", since=T0 + timedelta(hours=1)) == {
            "SESSION_DRAWDOWN"}
        assert [e.data for e in events.find(con, "ALERT", alert=None, phase="execute")] == [
            {"alert": "MISSED_WINDOW", "phase": "execute"}]
        assert [e.reason for e in events.find(con, "INTENT_SUBMITTED", attempt=2)] == ["retry"]
        assert [e.kind for e in events.find(con, kind_prefix="INTENT_")] == ["INTENT_SUBMITTED",
                                                                           "INTENT_SUBMITTED_LATE"]
        assert [e.kind for e in events.find(con, newest_first=True, limit=1)] == ["INTENT_SUBMITTED_LATE"]
        assert events.first_ts(con, "ALERT", alert="MISSED_WINDOW") == T0 + timedelta(hours=2)
        assert events.first_ts(con, "ALERT", alert="DAEMON_START") is None


def test_event_filters_when_field_name_is_not_a_plain_name_then_refused(ledger):
    """A data field name goes into the JSON path: anything but a plain name is refused, never run."""
    with ledger.connect() as con:
        with pytest.raises(ValueError, match="not a plain name"):
            events.count(con, "ALERT", **{"alert') OR ('1": "x"})
        with pytest.raises(ValueError, match="not a plain name"):
            events.values(con, "ALERT", "code'")

