"""The XNYS exchange calendar helper (SPEC §3: trading days from an exchange calendar, half days respected)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest

from tradebook import sessions
from tradebook.errors import CalendarError

NY = sessions.EXCHANGE_TZ


def ny(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), NY)


def test_session_on_when_half_day_then_early_close_at_1300():
    """Day after Thanksgiving 2011 closes at 13:00 exchange time."""
    s = sessions.session_on(date(2011, 11, 25))
    assert s is not None
    assert (s.open, s.close) == (ny(date(2011, 11, 25), 9, 30), ny(date(2011, 11, 25), 13, 0))
    assert s.close.utcoffset() == timedelta(hours=-5)


def test_session_on_when_regular_day_then_0930_to_1600_in_both_dst_regimes():
    for day in (date(2011, 1, 10), date(2011, 7, 11)):
        s = sessions.session_on(day)
        assert (s.open.time(), s.close.time()) == (time(9, 30), time(16, 0))
        assert s.open.tzinfo is not None
    assert sessions.session_on(date(2011, 7, 11)).open.utcoffset() == timedelta(hours=-4)


def test_session_on_when_holiday_or_weekend_then_none():
    assert sessions.session_on(date(2011, 7, 4)) is None     # Independence Day
    assert sessions.session_on(date(2011, 7, 2)) is None     # Saturday
    assert sessions.session_on(date(2001, 9, 11)) is None    # exchange closed after 9/11


def test_sessions_when_range_spans_holiday_then_holiday_skipped():
    days = [s.day for s in sessions.sessions(date(2011, 7, 1), date(2011, 7, 6))]
    assert days == [date(2011, 7, 1), date(2011, 7, 5), date(2011, 7, 6)]
    assert sessions.sessions(date(2011, 7, 6), date(2011, 7, 1)) == []


def test_first_session_on_or_after_when_holiday_weekend_then_next_trading_day():
    assert sessions.first_session_on_or_after(date(2011, 7, 2)).day == date(2011, 7, 5)
    assert sessions.first_session_on_or_after(date(2011, 7, 1)).day == date(2011, 7, 1)
    assert sessions.previous_session(date(2011, 7, 5)).day == date(2011, 7, 1)


def test_next_session_when_in_session_or_after_close_then_next_open():
    friday = date(2011, 7, 1)
    assert sessions.next_session(ny(friday, 8)).day == friday
    assert sessions.next_session(ny(friday, 12)).day == date(2011, 7, 5)
    assert sessions.next_session(ny(friday, 17)).day == date(2011, 7, 5)


def test_current_or_next_session_when_at_close_then_next_one():
    friday = date(2011, 7, 1)
    assert sessions.current_or_next_session(ny(friday, 15, 59)).day == friday
    assert sessions.current_or_next_session(ny(friday, 16)).day == date(2011, 7, 5)
    assert sessions.last_closed_session(ny(friday, 15, 59)).day == date(2011, 6, 30)
    assert sessions.last_closed_session(ny(friday, 16)).day == friday


def test_is_open_when_half_day_then_closed_from_1300():
    day = date(2011, 11, 25)
    assert sessions.is_open(ny(day, 12, 59))
    assert not sessions.is_open(ny(day, 13, 0))
    assert not sessions.is_open(ny(day, 9, 29))
    # the same instant in UTC gives the same answer
    assert sessions.is_open(ny(day, 12, 59).astimezone(timezone.utc))


def test_lookup_when_naive_datetime_then_calendar_error():
    with pytest.raises(CalendarError, match="timezone-aware"):
        sessions.is_open(datetime(2011, 7, 1, 12, 0))


def test_lookup_when_outside_calendar_then_calendar_error():
    with pytest.raises(CalendarError, match="outside"):
        sessions.session_on(date(1999, 12, 31))
    with pytest.raises(CalendarError, match="outside"):
        sessions.first_session_on_or_after(date(2100, 1, 1))
    assert sessions.bounds()[0] == date(2000, 1, 3)
