"""One shallow error tree, named by what the operator should do next."""
from __future__ import annotations


class TradebookError(Exception):
    """Base of every error tradebook raises on purpose."""


class ConfigError(TradebookError):
    """Params are invalid: fix the named key in the named file."""


class LedgerError(TradebookError):
    """The ledger cannot be used as it is."""


class LedgerLocked(LedgerError):
    """Another process holds the ledger; wait for it or stop it."""


class LedgerCorrupt(LedgerError):
    """The ledger file is unreadable; restore a backup (``tradebook ledger restore``)."""


class BrokerError(TradebookError):
    """Something went wrong talking to the broker."""


class BrokerUnavailable(BrokerError):
    """Transient failure (timeout, 5xx, 429) that outlived the retries; try again later."""


class OrderOutcomeUnknown(BrokerUnavailable):
    """The submit may or may not have reached the broker: look the order up, never resubmit blind."""


class CircuitOpen(BrokerUnavailable):
    """The API circuit breaker is open; the system runs reduce-only until it closes."""


class BrokerRejected(BrokerError):
    """A business reject (buying power, invalid qty, ...): never retried."""

    def __init__(self, message: str, code: str = "REJECTED"):
        super().__init__(message)
        self.code = code


class DuplicateClientOrderId(BrokerRejected):
    """The broker already has an order with this client_order_id: look it up."""

    def __init__(self, message: str):
        super().__init__(message, code="DUPLICATE_CLIENT_ORDER_ID")


class FractionalNotSupported(BrokerRejected):
    """Fractional quantity refused for this account or asset: fall back to whole shares."""

    def __init__(self, message: str):
        super().__init__(message, code="FRACTIONAL_NOT_SUPPORTED")


class UnknownSymbol(BrokerRejected):
    """The broker (or the simulator's data) does not know this symbol."""

    def __init__(self, message: str):
        super().__init__(message, code="UNKNOWN_SYMBOL")


class CalendarError(TradebookError, ValueError):
    """A date/time outside the exchange calendar, not a session, naive, or a sim clock moved backwards."""


class ControlRefused(TradebookError):
    """A control action was refused or could not be done (no reason, KILL_SWITCH still set, ...): do what it says."""


class SecretsError(ConfigError):
    """Broker credentials are missing or the live-trading opt-in is incomplete."""


class PhaseFailed(TradebookError):
    """A phase notebook failed; read the executed notebook it names. Never retried automatically."""

    def __init__(self, message: str, *, notebook_path: object = None, run_id: str | None = None,
                 phase: str | None = None, error: str | None = None):
        super().__init__(message)
        self.notebook_path = notebook_path
        self.run_id = run_id
        self.phase = phase
        self.error = error
