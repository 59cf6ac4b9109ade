"""The exchange calendar: XNYS trading sessions with their real (early) closes.

Built once per process from exchange_calendars (start 2000-01-01, because its default
start is only ~20 years back) into plain sorted lists, so lookups are a bisect and
cost microseconds; the SimBroker asks this on every call. Times are timezone-aware
America/New_York datetimes. Dates outside the calendar raise ``CalendarError``
instead of guessing.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from tradebook.broker.base import Session
from tradebook.errors import CalendarError

EXCHANGE = "XNYS"
EXCHANGE_TZ = ZoneInfo("America/New_York")
CALENDAR_START = "2000-01-01"


@dataclass(frozen=True, eq=False)  # identity hash: the table is a per-process singleton
class SessionTable:
    """Every session as parallel sorted lists: day, open and close in epoch seconds."""

    days: list[date]
    opens: list[int]
    closes: list[int]

    def __len__(self) -> int:
        return len(self.days)

    def session(self, i: int) -> Session:
        """Session number ``i`` (0 = first session of the calendar)."""
        return _session(self, i)

    def index_of_day(self, day: date) -> int:
        """Index of the first session on or after ``day`` (len(self) when none)."""
        return bisect.bisect_left(self.days, day)

    def opened_by(self, ts: float) -> int:
        """Index of the latest session whose open is <= ts (-1 when none)."""
        return bisect.bisect_right(self.opens, ts) - 1

    def closed_by(self, ts: float) -> int:
        """Index of the latest session whose close is <= ts (-1 when none)."""
        return bisect.bisect_right(self.closes, ts) - 1

    def closing_after(self, ts: float) -> int:
        """Index of the first session whose close is > ts: the one in progress or the next."""
        return bisect.bisect_right(self.closes, ts)

    def opening_after(self, ts: float) -> int:
        """Index of the first session whose open is > ts."""
        return bisect.bisect_right(self.opens, ts)


@lru_cache(maxsize=8192)
def _session(table: SessionTable, i: int) -> Session:
    return Session(table.days[i], datetime.fromtimestamp(table.opens[i], EXCHANGE_TZ),
                   datetime.fromtimestamp(table.closes[i], EXCHANGE_TZ))


@lru_cache(maxsize=1)
def table() -> SessionTable:
    """The XNYS session table (loads exchange_calendars once per process, ~0.5 s)."""
    import exchange_calendars as xc
    import numpy as np

    schedule = xc.get_calendar(EXCHANGE, start=CALENDAR_START).schedule

    def epoch_seconds(column: str) -> list[int]:
        naive_utc = schedule[column].dt.tz_convert("UTC").dt.tz_localize(None)
        return np.asarray(naive_utc, dtype="datetime64[s]").astype(np.int64).tolist()

    days = [ts.date() for ts in schedule.index]
    return SessionTable(days, epoch_seconds("open"), epoch_seconds("close"))


def epoch(dt: datetime) -> float:
    """Seconds since the epoch of a timezone-aware datetime; naive datetimes are refused."""
    if dt.tzinfo is None or dt.tzinfo.utcoffset(dt) is None:
        raise CalendarError(f"{dt!r} is naive; pass a timezone-aware datetime (exchange time is "
                            "America/New_York)")
    return dt.timestamp()


def session_date(now: datetime) -> date:
    """The exchange (America/New_York) date of an aware timestamp."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (exchange time is America/New_York)")
    return now.astimezone(EXCHANGE_TZ).date()


def bounds() -> tuple[date, date]:
    """First and last session day the calendar knows."""
    t = table()
    return t.days[0], t.days[-1]


def _checked(t: SessionTable, i: int, what: str) -> Session:
    if i < 0 or i >= len(t):
        first, last = t.days[0], t.days[-1]
        raise CalendarError(f"{what} lies outside the {EXCHANGE} calendar ({first} .. {last})")
    return t.session(i)


def _check_day(t: SessionTable, day: date) -> None:
    if isinstance(day, datetime):
        raise CalendarError(f"pass a date, not a datetime ({day!r})")
    if day < t.days[0] or day > t.days[-1]:
        _checked(t, -1, str(day))


def sessions(start: date, end: date) -> list[Session]:
    """Sessions with start <= day <= end, in order (empty when start > end)."""
    t = table()
    lo = bisect.bisect_left(t.days, start)
    hi = bisect.bisect_right(t.days, end)
    return [t.session(i) for i in range(lo, hi)]


def session_on(day: date) -> Session | None:
    """The session on ``day``, or None for weekends and holidays."""
    t = table()
    _check_day(t, day)
    i = t.index_of_day(day)
    return t.session(i) if i < len(t) and t.days[i] == day else None


def first_session_on_or_after(day: date) -> Session:
    """The session on ``day`` or, if it is not a trading day, the next one."""
    t = table()
    _check_day(t, day)
    return _checked(t, t.index_of_day(day), f"a session on or after {day}")


def previous_session(day: date) -> Session | None:
    """The latest session strictly before ``day`` (None before the calendar's first)."""
    t = table()
    i = t.index_of_day(day) - 1
    return t.session(i) if i >= 0 else None


def next_session(after: datetime) -> Session:
    """The first session that opens strictly after ``after`` (Alpaca's clock ``next_open``)."""
    t = table()
    return _checked(t, t.opening_after(epoch(after)), f"a session opening after {after}")


def current_or_next_session(at: datetime) -> Session:
    """The session in progress at ``at``, else the next one (first session closing after it)."""
    t = table()
    return _checked(t, t.closing_after(epoch(at)), f"a session closing after {at}")


def last_closed_session(at: datetime) -> Session | None:
    """The latest session whose close is <= ``at`` (its daily bar is final)."""
    t = table()
    i = t.closed_by(epoch(at))
    return t.session(i) if i >= 0 else None


def is_open(at: datetime) -> bool:
    """True when ``at`` is inside a session (open <= at < close)."""
    t = table()
    ts = epoch(at)
    i = t.opened_by(ts)
    return i >= 0 and ts < t.closes[i]
