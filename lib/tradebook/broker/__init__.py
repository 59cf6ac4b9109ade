"""Broker boundary: the Protocol, SimBroker (embedded default) and AlpacaBroker."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebook.broker.base import Broker

if TYPE_CHECKING:
    from tradebook.params import Params

__all__ = ["Broker", "make_broker", "breaker_path"]


def breaker_path(params: "Params", root: Path | None) -> Path:
    """Where the API circuit breaker keeps its failure count (EXE-4), one file per mode."""
    return params.runs_path(root) / f"api_breaker-{params.mode}.json"


def make_broker(params: "Params", root: Path, **overrides: Any) -> Broker:
    """The broker the params ask for: SimBroker for mode sim, AlpacaBroker for paper/live.

    The broker layer never imports the ledger; the callbacks wired here do (REDUCE_ONLY when
    the API circuit opens, an incident when an answer item had to be skipped).
    """
    if params.mode == "sim":
        from tradebook.broker.sim import SimBroker

        return SimBroker.from_params(params, root)
    from tradebook.broker.alpaca import AlpacaBroker
    from tradebook.broker.alpaca_breaker import BreakerFile

    def degrade(reason: str) -> None:
        # EXE-4: an open API circuit puts the whole system in reduce-only until it re-arms.
        from tradebook import controls
        from tradebook.ledger import Ledger

        controls.reduce_only(Ledger(params.ledger_path(root)), reason, source="api_breaker")

    reported: set[str] = set()

    def incident(detail: str) -> None:
        if detail in reported:   # one incident per distinct skipped item per process
            return
        reported.add(detail)
        from tradebook import controls
        from tradebook.ledger import Ledger

        with Ledger(params.ledger_path(root)).transaction() as con:
            controls.record_incident(con, "BROKER_ITEM_SKIPPED", detail, controls.utcnow())

    overrides.setdefault("breaker_store", BreakerFile(breaker_path(params, root)))
    overrides.setdefault("on_incident", incident)
    return AlpacaBroker.from_params(params, on_circuit_open=degrade, **overrides)
