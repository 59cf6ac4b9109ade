"""The daemon's plan (SPEC §3, OPS-4): which phase runs when, on the exchange calendar.

Pure functions of a session and the params, plus ``phase_done`` over the ledger's
``runs`` table. Times are exchange time; half days use their early close (the
calendar gives it); holidays have no session and so no slots.

Per session S (next session N):

| slot      | due at                       | missed after        | counts as done: a run of the phase in |
|-----------|------------------------------|---------------------|---------------------------------------|
| reconcile | open - reconcile_before_open | open + exit start   | [due, open + exit start)              |
| execute   | open + exit_window_start     | open + exit end     | [open + exit start, open + exit end)  |
| decide    | close + decide_after_close   | N.open              | [close, N.open)                       |
| report    | close + report_after_close   | N.open              | [close, N.open)                       |
| backup    | after report                 | N.open              | a BACKUP event for S                  |

A run counts whatever its status: a failed run is never retried into a duplicate order.
Only an execute run *inside* the window counts: a manual ``tradebook run execute`` at
09:32 sends nothing planned (the window has not opened) and must not make the daemon
skip the real 09:35 run; the daemon reconciles before its execute either way.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterator

from tradebook.ledger import events, runs
from tradebook.ledger.backup import BACKUP_EVENT

if TYPE_CHECKING:
    from tradebook.broker.base import Session
    from tradebook.ledger.db import Ledger
    from tradebook.params import Params


@dataclass(frozen=True, order=True)
class Slot:
    at: datetime               # when it is due
    rank: int                  # tie-break: plan order at the same instant
    phase: str
    session: date
    deadline: datetime         # due until (exclusive); after it the slot is missed
    done_from: datetime        # a run of the phase in [done_from, done_until) means done
    done_until: datetime

    @property
    def key(self) -> tuple[date, str]:
        return (self.session, self.phase)

    def describe(self) -> str:
        return f"{self.phase} for {self.session} at {self.at.isoformat()}"


def session_plan(session: "Session", next_session: "Session", params: "Params") -> list[Slot]:
    """The phase slots of one session (monitor ticks are separate: ``monitor_ticks``)."""
    s = params.schedule
    mins = lambda m: timedelta(minutes=m)  # noqa: E731
    exec_start = session.open + mins(params.exit_window_start_min)
    exec_end = session.open + mins(params.exit_window_end_min)
    pre_open = session.open - mins(s.reconcile_before_open_min)
    decide_at = session.close + mins(s.decide_after_close_min)
    # The report follows decide even when configured earlier: it reports what decide planned.
    report_at = max(session.close + mins(s.report_after_close_min), decide_at)
    nxt = next_session.open
    day = session.day
    return [
        Slot(pre_open, 0, "reconcile", day, exec_start, pre_open, exec_start),
        Slot(exec_start, 1, "execute", day, exec_end, exec_start, exec_end),
        Slot(decide_at, 2, "decide", day, nxt, session.close, nxt),
        Slot(report_at, 3, "report", day, nxt, session.close, nxt),
        Slot(report_at, 4, "backup", day, nxt, session.close, nxt),
    ]


def monitor_ticks(session: "Session", interval_s: float) -> Iterator[datetime]:
    """Monitor times in session: open + k * interval (k >= 1) before the close."""
    step = timedelta(seconds=interval_s)
    t = session.open + step
    while t < session.close:
        yield t
        t += step


def next_monitor_tick(session: "Session", interval_s: float, after: datetime) -> datetime | None:
    """The first monitor tick strictly after ``after`` in this session, or None."""
    if after < session.open:
        after = session.open
    k = int((after - session.open).total_seconds() // interval_s) + 1
    t = session.open + timedelta(seconds=k * interval_s)
    return t if t < session.close else None


def slots_around(now: datetime, params: "Params") -> list[Slot]:
    """Slots that may still matter at ``now``: the last closed session's and the next/current one's."""
    from tradebook import sessions

    current = sessions.current_or_next_session(now)
    following = sessions.next_session(current.open)
    plan = session_plan(current, following, params)
    previous = sessions.previous_session(current.day)
    if previous is not None:
        plan = session_plan(previous, current, params) + plan
    return sorted(plan)


def day_plan(day: date, params: "Params") -> list[Slot]:
    """The slots of the session on ``day`` (empty on weekends and holidays)."""
    from tradebook import sessions

    session = sessions.session_on(day)
    if session is None:
        return []
    return session_plan(session, sessions.next_session(session.open), params)


def phase_done(ledger: "Ledger", slot: Slot) -> bool:
    """True when this slot already ran (any status), so a restarted daemon never repeats it."""
    if slot.phase == "backup":
        return bool(ledger.read(events.count, BACKUP_EVENT, session=slot.session.isoformat()))
    return bool(ledger.read(runs.count, phase=slot.phase, since=slot.done_from, until=slot.done_until))


def missed_alert_sent(ledger: "Ledger", slot: Slot) -> bool:
    """True when the MISSED_WINDOW alert for this slot is already in the ledger (alert once)."""
    return bool(ledger.read(events.count, "ALERT", alert="MISSED_WINDOW", phase=slot.phase,
                            session=slot.session.isoformat()))


def planned_intents(ledger: "Ledger") -> int:
    """How many intents wait PLANNED (the daemon's catch-up decides whether execute still has work)."""
    from tradebook.ledger import intents as intent_store

    return ledger.read(intent_store.count_in_state, "PLANNED")


# --- clocks: what "now" is and how the daemon waits for the next slot -----------------------
class WallClock:
    """Real time; waiting is a sleep that a stop request interrupts."""

    speed: float | None = 1.0  # clock seconds per wall second

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def advance_to(self, when: datetime, stop: threading.Event) -> None:
        stop.wait(max(0.0, (when - self.now()).total_seconds()))


class SimClock:
    """SimBroker's clock: advanced with ``advance_to``, at ``speed`` x real time or at once."""

    def __init__(self, broker: Any, speed: float | None = None):
        self.broker = broker
        self.speed = speed  # None: as fast as possible, never a wall-clock sleep

    def now(self) -> datetime:
        return self.broker.clock().now

    def advance_to(self, when: datetime, stop: threading.Event) -> None:
        now = self.now()
        if when <= now:
            return
        if self.speed is not None and stop.wait((when - now).total_seconds() / self.speed):
            return
        self.broker.advance_to(when)



SIM_DEFAULT_SPEED = 60.0


def parse_speed(text: str | float | None) -> float | None:
    """--speed: None/'' -> sim default (60x), 'max' -> as fast as possible (None), else a factor > 0."""
    from tradebook.errors import ConfigError

    if text is None or text == "":
        return SIM_DEFAULT_SPEED
    if isinstance(text, str) and text.strip().lower() in ("max", "asap", "inf"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--speed {text!r}: give a factor like 60 or 'max'") from None
    if not value > 0:
        raise ConfigError(f"--speed {text!r} must be positive")
    return value


def parse_clock_time(text: str | None) -> datetime | None:
    """ISO time for --until/--hold-at; without an offset it is exchange time (America/New_York)."""
    if not text:
        return None
    from tradebook.errors import ConfigError
    from tradebook.sessions import EXCHANGE_TZ

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not an ISO time like 2011-11-25T12:00") from None
    return value if value.tzinfo else value.replace(tzinfo=EXCHANGE_TZ)
