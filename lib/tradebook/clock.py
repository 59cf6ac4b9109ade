"""One clock for everything the ledger records (issue 13 item 6).

In sim mode the SimBroker's simulated time is the only time: phases, fills, breakers
and operator actions (halt, resume, flatten) are all stamped with it, so the panel
never shows "HALTED since <today>" next to "Broker clock 2011-08-22". Paper and live
use the wall clock (Alpaca's clock is the exchange's real time).

Operator actions must work when nothing else does (CTL-6): when the simulated clock
cannot be read quickly (no sim state yet, state file locked or damaged), the wall
clock is used and the action still happens.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tradebook.params import Params

SIM_CLOCK_LOCK_TIMEOUT_S = 0.5   # a halt must not wait long for a busy sim state file


def wall_now() -> datetime:
    return datetime.now(timezone.utc)


def sim_now(params: "Params", root: Path | None) -> datetime | None:
    """The simulated time from the sim state file, or None when it cannot be read quickly."""
    path = params.sim_state_path(root)
    if not path.exists():
        return None  # never create a sim account just to stamp an action
    try:
        from tradebook.broker.sim.broker import SimBroker

        sim = params.sim
        broker = SimBroker(path, start_date=sim.start_date, starting_cash=sim.starting_cash,
                           spread_bps=sim.spread_bps, seed=sim.seed, fractionable=tuple(sim.fractionable),
                           lock_timeout_s=SIM_CLOCK_LOCK_TIMEOUT_S)
        return broker.now()
    except Exception:  # locked, damaged, other seed: the action matters more than its stamp
        return None


def state_file_now(path: Path) -> datetime | None:
    """The simulated time stored in the sim state file at ``path``, read without params (a halt
    whose params are invalid, CTL-6); None when it is missing, busy or unreadable."""
    if not path.is_file():
        return None  # never create a sim account just to stamp an action
    try:
        from tradebook.broker.sim.broker import stored_now

        return stored_now(path, SIM_CLOCK_LOCK_TIMEOUT_S)
    except Exception:  # locked, damaged, not a sim state: the halt matters more than its stamp
        return None


def fallback_now(mode: str | None, sim_state: Path | None) -> tuple[datetime, str]:
    """When an operator action happens if the params are invalid: (time, which clock).

    Mode as far as the broken file says: paper/live use the wall clock; otherwise (sim, or
    not said) a sim state next to the ledger means a simulation, so its clock; else the wall clock.
    """
    if mode not in ("paper", "live") and sim_state is not None:
        now = state_file_now(sim_state)
        if now is not None:
            return now, f"simulated clock of {sim_state.name}"
    return wall_now(), "wall clock"


def operator_now(params: "Params | None", root: Path | None) -> datetime:
    """When an operator action happens: the simulated clock in sim mode, else (or without
    valid params) the wall clock."""
    if params is not None and params.mode == "sim":
        return sim_now(params, root) or wall_now()
    return wall_now()
