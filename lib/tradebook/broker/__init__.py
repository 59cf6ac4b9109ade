"""Broker boundary: the Protocol, SimBroker (embedded default) and AlpacaBroker."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tradebook.broker.base import Broker

if TYPE_CHECKING:
    from tradebook.params import Params

__all__ = ["Broker", "make_broker"]


def make_broker(params: "Params", root: Path) -> Broker:
    """The broker the params ask for: SimBroker for mode sim, AlpacaBroker for paper/live.

    The broker layer never writes the ledger: an open API circuit is reported by the adapter
    (``circuit_open``, CircuitOpen) and turned into REDUCE_ONLY by the order path (EXE-4).
    """
    if params.mode == "sim":
        from tradebook.broker.sim import SimBroker

        return SimBroker.from_params(params, root)
    from tradebook.broker.alpaca import AlpacaBroker

    return AlpacaBroker.from_params(params)
