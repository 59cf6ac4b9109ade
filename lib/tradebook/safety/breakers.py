"""Account breakers (BRK-1..3): loss, drawdown and equity limits that stop trading.

``check_breakers`` is pure: equity and its references in, trips out. ``run_breakers``
reads the account from the broker, keeps the reference snapshots in the ledger and
acts on trips through ``tradebook.safety.controls``:

- BRK-1 daily loss >= daily_loss_pct of start-of-day equity, or >= daily_loss_usd -> FROZEN.
- BRK-2 drawdown from peak equity >= max_drawdown_pct -> FROZEN.
  Session drawdown >= session_drawdown_pct of the session's start equity -> REDUCE_ONLY:
  "halt new entries for the session" while exits (stops) still work. FROZEN would
  also block exits (GATE-1), which a 1% dip does not justify. The trip is sticky for
  the session: after a CTL-3 re-arm it is applied again until the session ends
  (``session_tripped`` lets the monitor report the health check as failed instead).
- BRK-3 equity < min_equity_usd -> FROZEN. An equity that is not a finite number
  (bad broker data) -> REDUCE_ONLY with INVALID_EQUITY: we are blind, so no new
  risk, but exits stay possible and nothing is written to the snapshots.

The session's start equity is the START_OF_DAY snapshot: the previous session's closing
equity (the broker's ``last_equity``: Alpaca's "equity as of previous trading day at
16:00 ET", SimBroker's last close), recorded by the pre-open reconcile
(``record_start_of_day``) -- not the first monitor tick, which would hide an overnight
gap. Only a broker that does not report it falls back to the first equity seen that day.
The ladder is: -1% -> entries stop, -2% -> frozen. A trip is recorded (alerted once per
session and code) even when the state is already at least as strict, so a session
drawdown seen while REDUCE_ONLY still blocks every automatic re-arm for the rest of the
session (``session_tripped``, checked by ``controls.rearm_blocker``). FROZEN never
auto-clears (CTL-2). After a BRK-2 freeze an operator who accepts the loss resets the
high-water mark with ``reset_peak`` before resuming, or the breaker trips again.
An account read that fails skips the breakers for that tick (an event says so); the
monitor's protective exits still run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Literal, Mapping

from tradebook.ledger import equity as equity_store
from tradebook.ledger import events
from tradebook.errors import BrokerError
from tradebook.sessions import EXCHANGE_TZ, session_date

if TYPE_CHECKING:
    import duckdb

    from tradebook.context import Context
    from tradebook.params import Params

Action = Literal["FROZEN", "REDUCE_ONLY"]
BREAKER_ACTOR = "breaker"
ALERT_KIND = "BREAKER"        # tradebook.alerts kind: logged, stored as an ALERT event, delivered


@dataclass(frozen=True)
class BreakerTrip:
    """One tripped breaker: which requirement, a stable code, what it does, and its numbers."""

    brk: str                      # "BRK-1" | "BRK-2" | "BRK-3"
    code: str                     # DAILY_LOSS | DAILY_LOSS_USD | MAX_DRAWDOWN | SESSION_DRAWDOWN | MIN_EQUITY | INVALID_EQUITY
    action: Action
    reason: str                   # one line for people (alerts, controls history)
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class EquityRefs:
    """The reference equities breakers compare against, as kept in ``equity_snapshots``."""

    session_date: date
    start_of_day: float | None
    peak: float | None
    session_start: float | None


def _usable(ref: float | None) -> bool:
    return ref is not None and math.isfinite(ref) and ref > 0


def check_breakers(equity: float, start_of_day: float | None, peak: float | None,
                   session_start: float | None, params: "Params") -> list[BreakerTrip]:
    """BRK-1..3 on one equity reading; references that are missing (first run) are skipped."""
    if not math.isfinite(equity):
        return [BreakerTrip("BRK-3", "INVALID_EQUITY", "REDUCE_ONLY",
                            f"account equity is not a number ({equity}); no new entries until it is",
                            {"equity": str(equity)})]
    trips: list[BreakerTrip] = []
    if _usable(start_of_day):
        loss = start_of_day - equity
        if loss / start_of_day >= params.daily_loss_pct:
            trips.append(_trip("BRK-1", "DAILY_LOSS", "FROZEN", "daily loss", loss / start_of_day,
                               params.daily_loss_pct, equity=equity, start_of_day=start_of_day))
        if params.daily_loss_usd is not None and loss >= params.daily_loss_usd:
            trips.append(BreakerTrip("BRK-1", "DAILY_LOSS_USD", "FROZEN",
                                     f"daily loss ${loss:,.2f} >= limit ${params.daily_loss_usd:,.2f}",
                                     {"loss": round(loss, 2), "limit": params.daily_loss_usd,
                                      "equity": equity, "start_of_day": start_of_day}))
    if _usable(peak) and (peak - equity) / peak >= params.max_drawdown_pct:
        trips.append(_trip("BRK-2", "MAX_DRAWDOWN", "FROZEN", "drawdown from peak", (peak - equity) / peak,
                           params.max_drawdown_pct, equity=equity, peak=peak))
    if _usable(session_start) and (session_start - equity) / session_start >= params.session_drawdown_pct:
        trips.append(_trip("BRK-2", "SESSION_DRAWDOWN", "REDUCE_ONLY", "session drawdown",
                           (session_start - equity) / session_start, params.session_drawdown_pct,
                           equity=equity, session_start=session_start))
    if equity < params.min_equity_usd:
        trips.append(BreakerTrip("BRK-3", "MIN_EQUITY", "FROZEN",
                                 f"equity ${equity:,.2f} below minimum ${params.min_equity_usd:,.2f}",
                                 {"equity": equity, "limit": params.min_equity_usd}))
    return trips


def _trip(brk: str, code: str, action: Action, what: str, value: float, limit: float,
          **numbers: float) -> BreakerTrip:
    return BreakerTrip(brk, code, action, f"{what} {value:.2%} >= limit {limit:.2%}",
                       {"value": round(value, 6), "limit": limit, **numbers})


# --- snapshots -------------------------------------------------------------------------------
def current_peak(con: "duckdb.DuckDBPyConnection") -> float | None:
    """Highest equity since the last PEAK_RESET (all time if none): the BRK-2 high-water mark."""
    return equity_store.peak(con)


def update_snapshots(con: "duckdb.DuckDBPyConnection", now: datetime, equity: float,
                     cash: float | None, last_equity: float | None = None) -> EquityRefs:
    """Keep START_OF_DAY (the previous close's equity, once per exchange date) and PEAK (each new high).

    ``last_equity`` is the broker's equity at the previous session's close; without a usable
    one the first equity seen that day stands in. Runs inside the caller's transaction;
    returns the references for ``check_breakers``.
    """
    if not math.isfinite(equity):
        raise BrokerError(f"account equity {equity!r} is not a number; snapshots not updated")
    day = session_date(now)
    start = start_of_day(con, day)
    if start is None:
        start = last_equity if _usable(last_equity) else equity
        equity_store.append_snapshot(con, now, day, "START_OF_DAY", start, None if _usable(last_equity) else cash)
    peak = current_peak(con)
    if peak is None or equity > peak:
        equity_store.append_snapshot(con, now, day, "PEAK", equity, cash)
        peak = equity
    return EquityRefs(day, start, peak, start)


def start_of_day(con: "duckdb.DuckDBPyConnection", day: date) -> float | None:
    """The START_OF_DAY equity recorded for exchange date ``day`` (None: not yet)."""
    return equity_store.start_of_day(con, day)


def record_start_of_day(ctx: "Context") -> float | None:
    """Before the open (the pre-open reconcile): START_OF_DAY = the previous close's equity (BRK-1/2).

    Returns the recorded (or already present) value; None when the broker could not be read
    or reports no usable equity (the first breaker check then records it).
    """
    try:
        account = ctx.broker.account()
    except BrokerError:
        return None
    if not _usable(account.last_equity):
        return None
    now = ctx.now()
    with ctx.ledger.transaction() as con:
        start = start_of_day(con, session_date(now))
        if start is None:
            equity_store.append_snapshot(con, now, session_date(now), "START_OF_DAY", account.last_equity)
            start = account.last_equity
    return start


def reset_peak(con: "duckdb.DuckDBPyConnection", now: datetime, equity: float, reason: str,
               actor: str = "operator") -> None:
    """Operator: restart the BRK-2 high-water mark at ``equity`` (recorded with who and why)."""
    if not reason or not reason.strip():
        raise ValueError("reset_peak needs a reason; nothing changed")
    if not (math.isfinite(equity) and equity > 0):
        raise ValueError(f"reset_peak needs a positive equity, got {equity!r}")
    equity_store.append_snapshot(con, now, session_date(now), "PEAK_RESET", equity)
    events.record(con, "PEAK_RESET", reason=reason.strip(), data={"equity": equity, "actor": actor}, ts=now)


def _alerted_codes(con: "duckdb.DuckDBPyConnection", now: datetime) -> set[str]:
    """Breaker codes already alerted during ``now``'s exchange date."""
    midnight = datetime.combine(session_date(now), time(0), EXCHANGE_TZ)
    return events.values(con, "ALERT", "code", since=midnight, until=now, alert=ALERT_KIND)


def session_tripped(con: "duckdb.DuckDBPyConnection", now: datetime) -> bool:
    """True when a SESSION_DRAWDOWN trip was alerted during ``now``'s exchange date (BRK-2).

    The monitor may pass ``health_ok=False`` to ``controls.try_rearm`` while this holds.
    """
    midnight = datetime.combine(session_date(now), time(0), EXCHANGE_TZ)
    return events.count(con, "ALERT", since=midnight, until=now, alert=ALERT_KIND, code="SESSION_DRAWDOWN") > 0


# --- acting on trips -------------------------------------------------------------------------
def run_breakers(ctx: "Context") -> list[BreakerTrip]:
    """Read the account, update snapshots, check BRK-1..3 and act: freeze / reduce-only + ALERT.

    Acts only when a trip would make the ledger's state stricter, so a monitor calling
    this every minute records one freeze and one set of alerts, not one per call.
    Returns every trip of this reading (acted on or already in force).
    """
    now = ctx.now()
    try:
        account = ctx.broker.account()
    except BrokerError as exc:  # blind for this tick: skip the breakers, never the exits after them
        with ctx.ledger.transaction() as con:
            events.record(con, "BREAKERS_SKIPPED", run_id=ctx.run_id, ts=now,
                          reason=f"account read failed ({type(exc).__name__}: {exc}); breakers skipped this tick")
        return []
    with ctx.ledger.transaction() as con:
        if math.isfinite(account.equity):
            refs = update_snapshots(con, now, account.equity, account.cash, account.last_equity)
            trips = check_breakers(account.equity, refs.start_of_day, refs.peak, refs.session_start, ctx.params)
        else:
            trips = check_breakers(account.equity, None, None, None, ctx.params)
        if not any(t.code == "SESSION_DRAWDOWN" for t in trips) and session_tripped(con, now):
            trips.append(BreakerTrip("BRK-2", "SESSION_DRAWDOWN", "REDUCE_ONLY",
                                     "session drawdown tripped earlier this session; entries stay halted",
                                     {"sticky": True, "equity": account.equity}))
        if trips:
            _act(con, ctx, trips, now)
    return trips


def _act(con: "duckdb.DuckDBPyConnection", ctx: "Context", trips: list[BreakerTrip], now: datetime) -> None:
    """Escalate the control state once (most severe action) and alert every trip with it."""
    from tradebook import alerts
    from tradebook.safety import controls

    current = controls.ledger_state(con)
    target = "FROZEN" if any(t.action == "FROZEN" for t in trips) else "REDUCE_ONLY"
    if controls.RANK[target] <= controls.RANK[current]:
        # Already at least this strict: no state change, but a trip first seen now is still
        # recorded (once per session and code): a session drawdown must block re-arms (BRK-2).
        seen = _alerted_codes(con, now)
        for t in trips:
            if t.code not in seen:
                alerts.alert(con, ALERT_KIND, f"{t.brk} {t.code} -> {t.action} (state already {current}): "
                                              f"{t.reason}", params=ctx.params, run_id=ctx.run_id, now=now,
                             data={"breaker": t.brk, "code": t.code, "action": t.action, **dict(t.detail)})
        return
    reason = "; ".join(f"{t.brk} {t.code}: {t.reason}" for t in trips if t.action == target)
    source = ",".join(dict.fromkeys(t.brk for t in trips if t.action == target))
    if target == "FROZEN":
        controls.freeze(con, reason, actor=BREAKER_ACTOR, source=source, now=now)
    else:
        controls.reduce_only(con, reason, source=source, now=now)
    for t in trips:  # same transaction as the state change: both are recorded or neither
        alerts.alert(con, ALERT_KIND, f"{t.brk} {t.code} -> {t.action}: {t.reason}", params=ctx.params,
                     run_id=ctx.run_id, now=now,
                     data={"breaker": t.brk, "code": t.code, "action": t.action, **dict(t.detail)})
