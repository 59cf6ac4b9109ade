"""The trading state (CTL-1..3, GATE-1): one enum for the controls that set it and the gate that enforces it.

States, least to most restrictive: RUNNING < REDUCE_ONLY < HALTED < FROZEN. Members are
strings (StrEnum), so ledger rows, flag files and JSON carry the plain names and compare
equal to them.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Iterable


class TradingState(StrEnum):
    """Whether orders may leave: everything, only position-reducing ones, or none."""

    RUNNING = "RUNNING"          # entries and exits
    REDUCE_ONLY = "REDUCE_ONLY"  # exits only (auto trips: breakers, divergence, API circuit)
    HALTED = "HALTED"            # nothing (kill switch; an operator resumes)
    FROZEN = "FROZEN"            # nothing, never auto-clears (an operator resumes)

    @property
    def rank(self) -> int:
        """Position in the order of restrictiveness (RUNNING is 0)."""
        return RANK[self]

    @property
    def allows_entries(self) -> bool:
        return self is TradingState.RUNNING

    @property
    def allows_exits(self) -> bool:
        """REDUCE_ONLY still lets position-reducing orders through (GATE-1)."""
        return self in (TradingState.RUNNING, TradingState.REDUCE_ONLY)


STATES: tuple[TradingState, ...] = tuple(TradingState)
RANK: dict[str, int] = {state: i for i, state in enumerate(STATES)}


def strictest(states: Iterable[str], default: TradingState = TradingState.RUNNING) -> TradingState:
    """The most restrictive of ``states`` (plain names or members); ``default`` when there are none."""
    return TradingState(max(states, key=RANK.__getitem__, default=default))
