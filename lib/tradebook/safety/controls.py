"""Trading state and the kill switch (CTL-1, CTL-2, CTL-3, CTL-5).

States, least to most restrictive: RUNNING < REDUCE_ONLY < HALTED < FROZEN. The
effective state is the most restrictive of every source (CTL-1):

1. the flag files (``tradebook.safety.killswitch``): the account's ``runs/KILL_SWITCH-<ledger stem>``
   and the all-accounts ``runs/KILL_SWITCH`` — read first, without the ledger, so the
   kill switch works while another process holds the ledger or the file is corrupt;
2. the environment variable ``KILL_SWITCH=1``;
3. the ledger's ``controls`` table: its rows since the last RUNNING row (an
   "episode"); no row means RUNNING. An unreadable ledger fails closed (HALTED).

Writers only escalate (a lower request while a higher state holds is noted as an
event, never written as a row), so nothing but ``resume`` (operator, with a reason)
or ``try_rearm`` (auto trips only) lowers the state (CTL-2, CTL-3).

The effective state is read by ``safety/control_status`` (re-exported here: callers ask
``controls.effective_state``); this module changes it.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from tradebook.clock import operator_now, wall_now
from tradebook.ledger import events
from tradebook.ledger.controls import append_control, append_incident, episode, incidents_on
from tradebook.errors import ControlRefused
from tradebook.safety.control_status import (STATUS_LOCK_TIMEOUT_S, ControlStatus, effective_state, ledger_state,
                                             state_at, utcnow)
from tradebook.safety.killswitch import (ENV_VAR, all_accounts_flag, all_accounts_note, env_part, flag_path,
                                         is_all_accounts, raise_flag, read_flag)
from tradebook.sessions import session_date
from tradebook.safety.state import RANK, STATES, TradingState, strictest

if TYPE_CHECKING:
    import duckdb

    from tradebook.context import Context
    from tradebook.ledger.db import Ledger
    from tradebook.params import Params

# re-exported: callers rank states and read the effective state through controls
__all__ = ["RANK", "STATES", "TradingState", "ControlStatus", "effective_state", "ledger_state", "state_at",
           "STATUS_LOCK_TIMEOUT_S", "utcnow"]
AUTO_ACTOR = "auto"


@contextmanager
def _tx(ledger_or_con: Any) -> Iterator["duckdb.DuckDBPyConnection"]:
    """A Ledger gets its own transaction; a connection is the caller's transaction."""
    from tradebook.ledger.db import Ledger

    if isinstance(ledger_or_con, Ledger):
        with ledger_or_con.transaction() as con:
            yield con
    else:
        yield ledger_or_con


def _set_state(con: "duckdb.DuckDBPyConnection", state: TradingState, reason: str, actor: str, source: str,
               now: datetime) -> bool:
    """Escalate to ``state`` (row + event); a lower request is only noted. True if written."""
    current = ledger_state(con)
    data = {"from": current, "to": state, "actor": actor, "source": source}
    if RANK[state] < RANK[current]:
        events.record(con, "CONTROL_NOTED", reason=f"{state} requested while {current}: {reason}",
                      data=data, ts=now)
        return False
    append_control(con, now, state, reason, actor, source)
    events.record(con, f"CONTROL_{state}", reason=reason, data=data, ts=now)
    return True


def clean_reason(reason: str | None) -> str:
    return " ".join(str(reason or "").split())


def halt(params: "Params", root: Path, reason: str, actor: str = "operator", source: str = "cli",
         *, now: datetime | None = None) -> ControlStatus:
    """CTL-1 kill switch: write the flag file first, then best-effort record a HALTED row.

    Either one halts; only when both fail is it an error (with what to do instead).
    """
    now = now or operator_now(params, root)   # one clock: the simulated one in sim mode
    return halt_at(flag_path(params, root), params.ledger_path(root), reason, actor, source, now=now,
                   also=(all_accounts_flag(params, root),))


def halt_all(params: "Params", root: Path, reason: str, actor: str = "operator", source: str = "cli",
             *, now: datetime | None = None) -> ControlStatus:
    """Kill switch for every account of the runs folder: the all-accounts flag ``runs/KILL_SWITCH``,
    then best-effort a HALTED row in this account's ledger (never a new ledger).

    What a bare ``tradebook halt`` does: a panicking operator must stop sim, paper and live alike.
    """
    now = now or operator_now(params, root)   # the ledger row's clock; the flag carries the wall clock
    return halt_at(all_accounts_flag(params, root), params.ledger_path(root), reason, actor, source, now=now,
                   create_ledger=False, also=(flag_path(params, root),))


def halt_at(path: Path, ledger_path: Path, reason: str, actor: str = "operator", source: str = "cli",
            *, now: datetime | None = None, create_ledger: bool = True,
            also: tuple[Path, ...] = ()) -> ControlStatus:
    """CTL-6: ``halt`` from paths alone, so it works with no valid params; the flag file comes first.

    ``path`` is the flag to write (an account's, or the all-accounts one when the params are
    invalid); ``also`` are the other flags the resulting state is read from.
    """
    reason = clean_reason(reason) or "halted without a reason"
    now = now or operator_now(None, None)   # no params: the wall clock (CTL-6)
    # The all-accounts flag is about the real world (it halts paper and live too): never a sim clock.
    flag_now = wall_now() if is_all_accounts(path) else now
    notes, failures = [], []
    try:
        raise_flag(path, "HALTED", reason, actor, source, flag_now)
        notes.append(f"kill-switch flag written: {path}")
    except OSError as exc:
        failures.append(f"flag file {path}: {exc}")
    try:
        from tradebook.ledger.db import Ledger

        ledger = Ledger(ledger_path, lock_timeout_s=STATUS_LOCK_TIMEOUT_S, create=create_ledger)
        with ledger.transaction() as con:
            _set_state(con, TradingState.HALTED, reason, actor, source, now)
        notes.append("ledger control row recorded")
    except Exception as exc:  # the flag file alone halts; say so
        failures.append(f"ledger: {type(exc).__name__}: {exc}")
    if len(failures) == 2:
        raise ControlRefused("halt could not be recorded anywhere (" + "; ".join(failures) + f"); set {ENV_VAR}=1 "
                             "in the environment of the scheduler and stop it")
    notes += [f"not recorded in the {f} — the other source alone keeps trading halted" for f in failures]
    status = state_at((path, *also), ledger_path)
    return replace(status, notes=status.notes + tuple(notes))


def freeze(ledger: "Ledger | duckdb.DuckDBPyConnection", reason: str, actor: str, source: str, now: datetime | None = None) -> None:
    """CTL-2: FROZEN; never auto-clears. ``ledger`` may also be the caller's open transaction."""
    from tradebook.alerts import alert

    reason = clean_reason(reason) or "frozen without a reason"
    with _tx(ledger) as con:
        _set_state(con, TradingState.FROZEN, reason, actor, source, now or utcnow())
        # OPS-5: every freeze needs a human, so it always alerts.
        alert(con, "FREEZE", f"trading frozen by {actor} ({source}): {reason}",
              data={"actor": actor, "source": source}, now=now)


def reduce_only(ledger: "Ledger | duckdb.DuckDBPyConnection", reason: str, source: str, now: datetime | None = None,
                *, incident: bool = True) -> None:
    """CTL-3 auto trip: REDUCE_ONLY (exits only) unless a stricter state holds; counts as an incident.

    Pass ``incident=False`` when the caller already recorded the incident for this trip.
    """
    now = now or utcnow()
    reason = clean_reason(reason) or "auto trip"
    with _tx(ledger) as con:
        _set_state(con, TradingState.REDUCE_ONLY, reason, AUTO_ACTOR, source, now)
        if incident:
            record_incident(con, f"AUTO_TRIP:{source}", reason, now)


def resume(params: "Params", root: Path, reason: str, actor: str = "operator", source: str = "cli",
           *, now: datetime | None = None, all_accounts: bool = False) -> ControlStatus:
    """CTL-2: the only way out of FROZEN/HALTED: needs a reason; recorded; removes this account's flag.

    The all-accounts flag ``runs/KILL_SWITCH`` (a bare `tradebook halt`, a halt without valid params, or a `touch`) is
    removed only with ``all_accounts``; otherwise it stays, trading stays HALTED and the note says so.
    Another account's flag is never touched.
    """
    from tradebook.ledger.db import Ledger

    reason = clean_reason(reason)
    if not reason:
        raise ControlRefused("resume needs a reason (e.g. --reason 'breaker reviewed, limits ok'); nothing changed")
    if env_part():
        raise ControlRefused(f"environment {ENV_VAR} is set; unset it (`unset {ENV_VAR}`, and in the "
                             "service environment) before resuming; nothing changed")
    now = now or operator_now(params, root)
    path, shared_path = flag_path(params, root), all_accounts_flag(params, root)
    flag, shared = read_flag(path), read_flag(shared_path)
    clear_shared = shared is not None and all_accounts
    with Ledger(params.ledger_path(root)).transaction() as con:
        before = ledger_state(con)
        if before == "RUNNING" and flag is None and not clear_shared:
            note = ("this account's ledger and flag already allow trading" if shared else
                    "already RUNNING; nothing to resume")
        else:
            append_control(con, now, TradingState.RUNNING, reason, actor, source)
            events.record(con, "CONTROL_RESUME", reason=reason, ts=now, data={
                "from": before, "flag": flag.reason if flag else None, "actor": actor, "source": source,
                "all_accounts_flag": shared.reason if clear_shared else None})
            path.unlink(missing_ok=True)  # inside the transaction: a failure here rolls the row back
            if clear_shared:
                shared_path.unlink(missing_ok=True)
            note = f"resumed from {before}" + (" and removed the kill-switch flag" if flag else "")
    notes = (note,) + all_accounts_note(shared_path, shared, clear_shared)
    status = effective_state(params, root)
    return replace(status, notes=status.notes + notes)


def record_incident(con: "duckdb.DuckDBPyConnection", kind: str, detail: str, now: datetime) -> None:
    """Append an incident (and its audit event) inside the caller's transaction."""
    append_incident(con, now, session_date(now), kind, detail)
    events.record(con, "INCIDENT", reason=f"{kind}: {detail}", data={"kind": kind}, ts=now)


def rearm_blocker(con: "duckdb.DuckDBPyConnection", params: "Params", health_ok: bool,
                  now: datetime) -> str | None:
    """Why an auto re-arm may not happen now (None: it may). CTL-2/CTL-3 rules."""
    rows = episode(con)
    state = strictest(r[0] for r in rows)
    if state != TradingState.REDUCE_ONLY:
        return f"state is {state}" + ("" if state == "RUNNING" else "; only an operator resume clears it")
    if any(r[2] != AUTO_ACTOR for r in rows):
        return "not an auto trip; only an operator resume clears it"
    left = max(r[4] for r in rows) + timedelta(minutes=params.rearm_cooldown_min) - now
    if left > timedelta(0):
        return f"cooldown: {left.total_seconds() / 60:.1f} min left"
    if not health_ok:
        return "health check failed"
    from tradebook.safety.breakers import session_tripped

    if session_tripped(con, now):  # BRK-2: entries stay halted for the rest of the session
        return "session drawdown tripped this session (BRK-2); entries stay halted until the next session"
    count = incidents_on(con, session_date(now))
    if count >= params.max_incidents_per_day:
        return f"{count} incidents today (max {params.max_incidents_per_day}); an operator must resume"
    return None


def try_rearm(ctx: "Context", health_ok: bool, now: datetime) -> bool:
    """CTL-3: REDUCE_ONLY (auto trip) -> RUNNING after the cooldown if healthy and few incidents."""
    with ctx.ledger.transaction() as con:
        if rearm_blocker(con, ctx.params, bool(health_ok), now) is not None:
            return False
        reason = (f"auto re-arm: cooldown {ctx.params.rearm_cooldown_min:g} min passed, health ok, "
                  f"{incidents_on(con, session_date(now))} incidents today")
        append_control(con, now, TradingState.RUNNING, reason, AUTO_ACTOR, "rearm")
        events.record(con, "CONTROL_REARM", run_id=ctx.run_id, reason=reason, ts=now)
    return True
