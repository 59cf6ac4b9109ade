"""The objects one phase run works with: params, project root, ledger, broker, run id."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebook.params import DEFAULT_PARAMS_FILE, Params, load_params

# Phases that only look: their broker reads never count toward the API breaker, no new ledger.
READ_ONLY_PHASES = frozenset({"report"})

if TYPE_CHECKING:
    from datetime import datetime
    from typing import Callable

    from tradebook.broker.base import Broker
    from tradebook.ledger.db import Ledger


def project_root(start: Path | None = None) -> Path:
    """TRADEBOOK_ROOT if set, else the nearest folder (from cwd up) holding ``params/``."""
    env = os.environ.get("TRADEBOOK_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params").is_dir() and (folder / "notebooks").is_dir():
            return folder
    return here


def _incident_recorder(ledger: "Callable[[], Ledger]") -> "Callable[[str], None]":
    """An answer item the adapter had to skip becomes a ledger incident, once per distinct item
    per process (the broker layer itself never writes the ledger).

    The ledger is opened only when an incident happens: a damaged ledger must not keep the
    broker from working (OPS-7: `tradebook flatten` closes at the broker without it); such an
    incident goes to the log instead."""
    reported: set[str] = set()

    def incident(detail: str) -> None:
        if detail in reported:
            return
        reported.add(detail)
        from tradebook.errors import LedgerError
        from tradebook.safety import controls

        try:
            with ledger().transaction() as con:
                controls.record_incident(con, "BROKER_ITEM_SKIPPED", detail, controls.utcnow())
        except LedgerError as exc:
            from tradebook.logs import log_event

            log_event("broker", "error", f"incident not recorded in the ledger ({exc}): {detail}")

    return incident


@dataclass
class Context:
    params: Params
    root: Path
    run_id: str | None = None
    # A report (READ_ONLY_PHASES): its broker calls never count toward the shared API circuit
    # breaker (EXE-4), and it never starts a ledger (a missing one is a clear error instead).
    read_only: bool = False

    @classmethod
    def load(cls, params_file: str | None = None, overrides: dict[str, Any] | None = None,
             run_id: str | None = None, root: Path | None = None, *, read_only: bool = False) -> "Context":
        root = root or project_root()
        path = Path(params_file or DEFAULT_PARAMS_FILE)
        if not path.is_absolute():
            path = root / path
        return cls(load_params(path, overrides), root, run_id, read_only)

    @property
    def runs_dir(self) -> Path:
        return self.params.runs_path(self.root)

    @cached_property
    def ledger(self) -> "Ledger":
        """The ledger of this broker identity (OPS-8: another account's ledger is refused)."""
        from tradebook.ledger import identity
        from tradebook.broker import make_broker
        from tradebook.clock import wall_now
        from tradebook.ledger.db import Ledger

        ledger = Ledger(self.params.ledger_path(self.root), create=not self.read_only)
        stamp = self.now() if self.params.mode == "sim" else wall_now()   # one clock (sim: simulated)
        # A broker of its own for the identity read: self.broker records incidents in self.ledger.
        identity.verify(ledger, self.params,
                        lambda: make_broker(self.params, self.root, read_only=self.read_only), stamp)
        return ledger

    @cached_property
    def broker(self) -> "Broker":
        from tradebook.broker import make_broker

        if self.params.mode == "sim":
            return make_broker(self.params, self.root)
        if self.read_only:
            return make_broker(self.params, self.root, read_only=True)
        return make_broker(self.params, self.root, on_incident=_incident_recorder(lambda: self.ledger))

    def now(self) -> "datetime":
        """The broker's clock (SimBroker's simulated time in sim mode)."""
        return self.broker.clock().now
