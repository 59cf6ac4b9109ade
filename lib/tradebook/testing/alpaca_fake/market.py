"""Market side of the loopback Alpaca fake: XNYS sessions and prices from the bundled bars.

Prices replay ``tradebook.marketdata.load_bars`` (real adjusted daily bars), like SimBroker:
before the open the price is the previous close, during the session it moves in a straight
line from the day's open to its close, after the close it is the close. Quotes put a fixed
spread around that mid. Only completed daily bars are served, so nothing leaks from the future.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

NY = ZoneInfo("America/New_York")


@dataclass(frozen=True, slots=True)
class DayBar:
    day: date
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class FakeSession:
    day: date
    open: datetime   # aware, America/New_York
    close: datetime


@lru_cache(maxsize=1)
def _xnys() -> tuple[tuple[date, ...], dict[date, FakeSession]]:
    """XNYS sessions since 2000 (half days included), cached per process."""
    import exchange_calendars as xcals

    schedule = xcals.get_calendar("XNYS", start="2000-01-01").schedule
    opens = schedule["open"].dt.tz_convert(NY.key)
    closes = schedule["close"].dt.tz_convert(NY.key)
    sessions = {label.date(): FakeSession(label.date(), o.to_pydatetime(), c.to_pydatetime())
                for label, o, c in zip(schedule.index, opens, closes)}
    return tuple(sorted(sessions)), sessions


@lru_cache(maxsize=None)
def _day_bars(symbol: str) -> dict[date, DayBar]:
    """The bundled adjusted bars of one symbol by day (built once per process; read-only)."""
    from tradebook.marketdata import load_bars

    rows = load_bars([symbol])
    return {d: DayBar(d, o, h, lo, c, v) for d, o, h, lo, c, v in zip(
        rows["date"], rows["open"], rows["high"], rows["low"], rows["close"], rows["volume"])}


class FakeMarket:
    """Sessions and deterministic prices for the symbols the fake knows."""

    def __init__(self, symbols: tuple[str, ...], spread_bps: float = 4.0):
        self.spread_bps = spread_bps
        self._bars: dict[str, dict[date, DayBar]] = {s: _day_bars(s) for s in symbols}
        self._days: dict[str, list[date]] = {s: sorted(bars) for s, bars in self._bars.items()}
        _xnys()   # load the calendar now, not inside the first request (it takes ~1 s)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._bars)

    # calendar ------------------------------------------------------------------------------
    def session(self, day: date) -> FakeSession | None:
        return _xnys()[1].get(day)

    def sessions(self, start: date, end: date) -> list[FakeSession]:
        days, by_day = _xnys()
        lo, hi = bisect.bisect_left(days, start), bisect.bisect_right(days, end)
        return [by_day[d] for d in days[lo:hi]]

    def first_session_on_or_after(self, day: date) -> FakeSession:
        days, by_day = _xnys()
        i = bisect.bisect_left(days, day)
        if i >= len(days):
            raise ValueError(f"no XNYS session on or after {day}")
        return by_day[days[i]]

    def last_session_closed_by(self, now: datetime) -> FakeSession | None:
        """The latest session whose close is at or before ``now``."""
        closed = [s for s in self.sessions(now.astimezone(NY).date() - timedelta(days=10), now.astimezone(NY).date())
                  if s.close <= now]
        return closed[-1] if closed else None

    def is_open(self, now: datetime) -> bool:
        s = self.session(now.astimezone(NY).date())
        return s is not None and s.open <= now < s.close

    def next_open_close(self, now: datetime) -> tuple[datetime, datetime]:
        """Alpaca's clock semantics: the next open after now, the next close after now."""
        today = now.astimezone(NY).date()
        s = self.first_session_on_or_after(today)
        next_close = s.close if s.close > now else self.first_session_on_or_after(s.day + timedelta(1)).close
        next_open = s.open if s.open > now else self.first_session_on_or_after(s.day + timedelta(1)).open
        return next_open, next_close

    # prices --------------------------------------------------------------------------------
    def bar(self, symbol: str, day: date) -> DayBar | None:
        return self._bars.get(symbol, {}).get(day)

    def _last_bar(self, symbol: str, day: date, inclusive: bool) -> DayBar | None:
        days = self._days.get(symbol, [])
        i = (bisect.bisect_right if inclusive else bisect.bisect_left)(days, day)
        return self._bars[symbol][days[i - 1]] if i > 0 else None

    def mid(self, symbol: str, now: datetime) -> float | None:
        """The price at ``now`` (None before the symbol's first bar)."""
        day = now.astimezone(NY).date()
        today, session = self.bar(symbol, day), self.session(day)
        if today is None or session is None:
            last = self._last_bar(symbol, day, inclusive=True)
            return None if last is None else round(last.close, 2)
        if now < session.open:
            prev = self._last_bar(symbol, day, inclusive=False)
            return round(prev.close if prev else today.open, 2)
        if now >= session.close:
            return round(today.close, 2)
        frac = (now - session.open) / (session.close - session.open)
        return round(today.open + (today.close - today.open) * frac, 2)

    def quote(self, symbol: str, now: datetime) -> tuple[float, float] | None:
        """(bid, ask) around the mid, at least one cent apart."""
        mid = self.mid(symbol, now)
        if mid is None:
            return None
        half = max(mid * self.spread_bps / 2e4, 0.005)
        return round(mid - half, 2), round(max(mid + half, mid - half + 0.01), 2)

    def completed_bars(self, symbol: str, start: date, end: date, now: datetime) -> list[DayBar]:
        """Daily bars in [start, end] whose session has closed by ``now`` (no look-ahead)."""
        days = self._days.get(symbol, [])
        lo, hi = bisect.bisect_left(days, start), bisect.bisect_right(days, end)
        out = []
        for d in days[lo:hi]:
            session = self.session(d)
            if session is None or session.close <= now:
                out.append(self._bars[symbol][d])
        return out

    def partial_bar(self, symbol: str, now: datetime) -> DayBar | None:
        """Today's bar so far during the session, else the last completed bar."""
        day = now.astimezone(NY).date()
        session, today = self.session(day), self.bar(symbol, day)
        if session is None or today is None or now < session.open:
            return self._last_bar(symbol, day, inclusive=False)
        if now >= session.close:
            return today
        price = self.mid(symbol, now) or today.open
        frac = (now - session.open) / (session.close - session.open)
        return DayBar(day, today.open, max(today.open, price), min(today.open, price), price,
                      round(today.volume * frac))

    def previous_bar(self, symbol: str, day: date) -> DayBar | None:
        return self._last_bar(symbol, day, inclusive=False)


# --- Market Data v2 wire format ------------------------------------------------------------
def iso_z(dt: datetime) -> str:
    """RFC 3339 UTC with a Z, as Alpaca sends it."""
    from datetime import timezone

    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def bar_json(bar: DayBar) -> dict:
    """A daily bar as Alpaca sends it: t is midnight New York; n (int) and vw (number) are required."""
    midnight = datetime(bar.day.year, bar.day.month, bar.day.day, tzinfo=NY)
    return {"t": iso_z(midnight), "o": round(bar.open, 4), "h": round(bar.high, 4), "l": round(bar.low, 4),
            "c": round(bar.close, 4), "v": int(bar.volume), "n": int(bar.volume) // 100 + 1,
            "vw": round((bar.high + bar.low + bar.close) / 3, 4)}


def quote_json(market: FakeMarket, symbol: str, now: datetime) -> dict | None:
    quote = market.quote(symbol, now)
    if quote is None:
        return None
    bid, ask = quote
    return {"t": iso_z(now), "bp": bid, "bs": 3, "bx": "V", "ap": ask, "as": 2, "ax": "V", "c": ["R"], "z": "C"}


def snapshot_json(market: FakeMarket, symbol: str, now: datetime) -> dict | None:
    """latestTrade, latestQuote, dailyBar (today so far) and prevDailyBar, like /v2/stocks/snapshots."""
    quote, daily = quote_json(market, symbol, now), market.partial_bar(symbol, now)
    if quote is None or daily is None:
        return None
    prev = market.previous_bar(symbol, daily.day)
    mid = market.mid(symbol, now)
    snap = {"latestTrade": {"t": iso_z(now), "p": mid, "s": 100, "x": "V", "i": 1, "c": ["@"], "z": "C"},
            "latestQuote": quote, "dailyBar": bar_json(daily)}
    if prev is not None:   # the spec has no null here: absent, not null
        snap["prevDailyBar"] = bar_json(prev)
    return snap
