"""The effective trading state and why (CTL-1): the most restrictive of every source, read fail-closed.

Sources, read in this order: the flag files (``killswitch``: the account's and the
all-accounts one, read without the ledger so the kill switch works while another
process holds it or the file is corrupt), the environment ``KILL_SWITCH=1``, then the
ledger's ``controls`` rows since the last RUNNING row. An unreadable ledger is HALTED.
Changing the state is ``safety/controls``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from tradebook.ledger.controls import episode
from tradebook.safety.killswitch import Part, all_accounts_flag, env_part, flag_path, read_flag
from tradebook.safety.state import RANK, TradingState, strictest

if TYPE_CHECKING:
    import duckdb

    from tradebook.ledger.db import Ledger
    from tradebook.params import Params

STATUS_LOCK_TIMEOUT_S = 2.0   # status must stay responsive while a run writes
QUICK_LOCK_TIMEOUT_S = 0.25   # flag/env already halt: the ledger can only add detail


@dataclass(frozen=True)
class ControlStatus:
    """The effective trading state with every reason and the sources that set it."""

    state: TradingState
    reasons: tuple[str, ...]
    sources: tuple[str, ...]
    since: datetime | None
    notes: tuple[str, ...] = ()       # what an action did or could not do (e.g. ledger busy)
    ledger_error: str | None = None   # set when the ledger could not be read

    @property
    def allows_entries(self) -> bool:
        """Orders that add risk may leave (RUNNING)."""
        return self.state.allows_entries

    @property
    def allows_exits(self) -> bool:
        """REDUCE_ONLY still lets position-reducing orders through (GATE-1)."""
        return self.state.allows_exits

    def describe(self) -> str:
        """The state, since when, every reason and every note, one per line."""
        since = f" since {self.since:%Y-%m-%d %H:%M:%S %Z}" if self.since else ""
        lines = [f"{self.state}{since}"] + [f"  - {r}" for r in self.reasons]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def utcnow() -> datetime:
    """Now, in UTC (the time a fail-closed ledger part is stamped with)."""
    return datetime.now(timezone.utc)


def ledger_state(con: "duckdb.DuckDBPyConnection") -> TradingState:
    """The ledger's state: the most restrictive row of the current episode (RUNNING if none)."""
    return strictest(row[0] for row in episode(con))


def _ledger_parts(path: Path | None, ledger: "Ledger | None", quick: bool) -> tuple[list[Part], str | None]:
    from tradebook.ledger.db import Ledger

    if ledger is None:
        if path is None or not path.exists():
            return [], None  # no ledger yet: nothing recorded, and a status check must not create one
        timeout = QUICK_LOCK_TIMEOUT_S if quick else STATUS_LOCK_TIMEOUT_S
        ledger = Ledger(path, lock_timeout_s=timeout, create=False)
    try:
        with ledger.connect() as con:
            rows = episode(con)
    except Exception as exc:  # locked, corrupt, anything: fail closed
        text = f"{type(exc).__name__}: {exc}"
        return [Part("HALTED", f"ledger unreadable, failing closed: {text}", "ledger_unavailable",
                      utcnow())], text
    return [Part(state, f"{state}: {reason} ({actor} via {source}, {ts:%Y-%m-%d %H:%M:%S %Z})",
                  "ledger", ts) for state, reason, actor, source, ts in reversed(rows)], None


def _combine(parts: list[Part], ledger_error: str | None) -> ControlStatus:
    if not parts:
        return ControlStatus(TradingState.RUNNING, (), (), None, ledger_error=ledger_error)
    state = strictest(p.state for p in parts)
    since = min((p.since for p in parts if p.state == state and p.since), default=None)
    ordered = sorted(parts, key=lambda p: -RANK[p.state])  # stable: source order within a state
    return ControlStatus(state, tuple(p.reason for p in ordered),
                         tuple(dict.fromkeys(p.source for p in parts)), since, ledger_error=ledger_error)


def effective_state(params: "Params", root: Path, ledger: "Ledger | None" = None) -> ControlStatus:
    """CTL-1: flag file first, then env KILL_SWITCH, then the ledger; most restrictive wins.

    Without ``ledger`` the ledger is read with a short lock timeout; a ledger that
    cannot be read (locked, corrupt) makes the result HALTED with that reason.
    """
    flags = (flag_path(params, root), all_accounts_flag(params, root))
    return state_at(flags, params.ledger_path(root), ledger)


def state_at(flags: "Path | tuple[Path, ...]", ledger_path: Path | None,
             ledger: "Ledger | None" = None) -> ControlStatus:
    """``effective_state`` from paths alone: what `status` shows when the params cannot be loaded (CTL-6).

    ``flags``: every flag file that halts this account (its own and the all-accounts one).
    """
    flags = (flags,) if isinstance(flags, Path) else tuple(dict.fromkeys(flags))
    parts = [p for p in (*(read_flag(f) for f in flags), env_part()) if p]
    ledger_parts, error = _ledger_parts(ledger_path, ledger, quick=bool(parts))
    return _combine(parts + ledger_parts, error)

