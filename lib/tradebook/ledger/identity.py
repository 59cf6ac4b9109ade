"""OPS-8: a ledger belongs to one broker identity (mode + account); another is refused.

The identity is ``sim`` for SimBroker and ``<mode>:<account number>`` for Alpaca. The
first run on a ledger records it (``ledger_meta``); every later one must match, or
it is refused before any row is written. A ledger from before identities were
recorded is judged by the modes of its past runs.

If the Alpaca account cannot be read (broker down), only the mode is compared: no
broker call succeeds then, so no answer from another account can reach the ledger.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from tradebook.ledger import meta as ledger_meta
from tradebook.ledger import runs
from tradebook.errors import BrokerError, LedgerError, SecretsError

if TYPE_CHECKING:
    from tradebook.ledger.db import Ledger
    from tradebook.params import Params

KEY = "broker_identity"


class LedgerMismatch(LedgerError):
    """The ledger belongs to another broker identity (OPS-8): nothing was written."""


@dataclass(frozen=True)
class Identity:
    mode: str
    account: str | None        # None: the account could not be read (broker down)

    @property
    def label(self) -> str:
        if self.mode == "sim":
            return "sim (SimBroker)"
        return f"{self.mode} account {self.account or '(unknown: broker unreachable)'}"

    def as_value(self) -> dict[str, Any]:
        return {"mode": self.mode, "account": self.account}


def of(params: "Params", broker_factory: Callable[[], Any]) -> Identity:
    """The identity a run with ``params`` acts for (reads the Alpaca account; SimBroker is ``sim``)."""
    if params.mode == "sim":
        return Identity("sim", "sim")
    try:
        raw = broker_factory().raw_account()
    except (BrokerError, SecretsError):
        # Down, refusing, or no keys in this environment (a report reads only the ledger): compare
        # the mode only (see module doc); a phase that needs the broker fails on its own.
        return Identity(params.mode, None)
    account = (raw or {}).get("account_number") or (raw or {}).get("id")
    return Identity(params.mode, str(account) if account else None)


def verify(ledger: "Ledger", params: "Params", broker_factory: Callable[[], Any], now: datetime) -> Identity:
    """Record the identity on a new ledger, or check it; LedgerMismatch (nothing written) if it differs."""
    me = of(params, broker_factory)
    with ledger.transaction() as con:
        stored = ledger_meta.get(con, KEY)
        if stored is None:
            past = runs.modes(con)
            if past and past != {me.mode}:
                raise LedgerMismatch(_message(ledger, params, Identity(sorted(past)[0], None), me, legacy=True))
            if me.account is not None:
                ledger_meta.put(con, KEY, me.as_value(), now)
            return me
        owner = Identity(stored["mode"], stored.get("account"))
        if owner.mode != me.mode or (me.account is not None and owner.account != me.account):
            raise LedgerMismatch(_message(ledger, params, owner, me))
    return me


def _message(ledger: "Ledger", params: "Params", owner: Identity, me: Identity, legacy: bool = False) -> str:
    from tradebook.params import DEFAULT_LEDGER_FILES

    whose = f"was used by {owner.mode} runs" if legacy else f"belongs to {owner.label}"
    default = DEFAULT_LEDGER_FILES[params.mode]
    fix = (f"remove `ledger_file` from the params to use the {params.mode} default ({default} in the runs "
           "folder), or name a new file" if params.ledger_file else
           "set `ledger_file` in the params to a file of its own")
    return (f"ledger {ledger.path} {whose}; this run is for {me.label} (OPS-8: one ledger per account). "
            f"Refused: no row was written to that ledger. To go on, {fix}.")
