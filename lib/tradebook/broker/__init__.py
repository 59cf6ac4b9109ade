"""Broker boundary: the Protocol, SimBroker (embedded default) and AlpacaBroker."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebook.broker.base import Broker

if TYPE_CHECKING:
    from tradebook.params import Params

__all__ = ["Broker", "make_broker", "breaker_path", "check_can_start"]


def breaker_path(params: "Params", root: Path | None) -> Path:
    """Where the API circuit breaker keeps its failure count (EXE-4), one file per mode."""
    return params.runs_path(root) / f"api_breaker-{params.mode}.json"


def check_can_start(params: "Params") -> None:
    """ConfigError (SecretsError) now if ``make_broker`` would refuse these params: live without
    TRADEBOOK_LIVE=1, keys missing, bad feeds. No network, no file: callers check before they write."""
    if params.mode == "sim":
        return
    from tradebook.broker.alpaca.broker import check_start

    check_start(params)


def make_broker(params: "Params", root: Path, *, read_only: bool = False, **overrides: Any) -> Broker:
    """The broker the params ask for: SimBroker for mode sim, AlpacaBroker for paper/live.

    ``read_only``: for commands that only look (status, health, doctor): their failed calls
    never count toward the shared API circuit breaker (EXE-4), which they still see.

    The broker layer never writes the ledger: an open API circuit is reported by the adapter
    (``circuit_open``, CircuitOpen) and turned into REDUCE_ONLY by the order path (EXE-4);
    skipped answer items reach the ledger through ``on_incident``, wired by the Context.
    """
    if params.mode == "sim":
        from tradebook import marketdata
        from tradebook.broker.sim.broker import SimBroker

        store = Path(params.data.store_dir)
        if marketdata.use_store(store if store.is_absolute() else root / store):  # DATA-1: replay fetched symbols
            from tradebook.broker.sim import path as sim_path

            sim_path.symbol_bars.cache_clear()
        return SimBroker.from_params(params, root)
    from tradebook.broker.alpaca.broker import AlpacaBroker
    from tradebook.broker.alpaca.breaker import BreakerFile, ReadOnlyBreakerFile

    breaker_file = ReadOnlyBreakerFile if read_only else BreakerFile   # read-only commands never count
    overrides.setdefault("breaker_store", breaker_file(breaker_path(params, root)))
    return AlpacaBroker.from_params(params, **overrides)
