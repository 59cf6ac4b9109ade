"""Broker boundary: the Protocol, SimBroker (embedded default) and AlpacaBroker."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tradebook.broker.base import Broker

if TYPE_CHECKING:
    from tradebook.params import Params

__all__ = ["Broker", "make_broker"]


def make_broker(params: "Params", root: Path) -> Broker:
    """The broker the params ask for: SimBroker for mode sim, AlpacaBroker for paper/live."""
    if params.mode == "sim":
        from tradebook.broker.sim import SimBroker

        return SimBroker.from_params(params, root)
    from tradebook.broker.alpaca import AlpacaBroker

    def degrade(reason: str) -> None:
        # EXE-4: an open API circuit puts the whole system in reduce-only until it re-arms.
        from tradebook import controls
        from tradebook.ledger import Ledger

        controls.reduce_only(Ledger(params.ledger_path(root)), reason, source="api_breaker")

    return AlpacaBroker.from_params(params, on_circuit_open=degrade)
