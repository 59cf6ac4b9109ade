"""Wire-level pieces of the loopback Alpaca fake: the order record, error replies, number formatting."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradebook.testing.alpaca_fake.market import iso_z

Q9 = Decimal("0.000000001")
CENT = Decimal("0.01")
OPEN = ("new", "accepted", "pending_new", "partially_filled", "pending_cancel")
NAMESPACE = uuid.UUID("6f1c2d7e-0b1a-4c8e-9d3f-5a7b9c1d2e3f")
EXCHANGES = {"IBM": "NYSE"}


class Reply(Exception):
    """An Alpaca error answer (status + JSON body) raised by a state method."""

    def __init__(self, status: int, code: int | None, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.body = {**extra, **({"code": code} if code is not None else {}), "message": message}


def num(value: Decimal | float | None) -> str | None:
    """Decimal as a plain string, as the Trading API sends money and quantities."""
    if value is None:
        return None
    text = format(Decimal(str(value)).normalize(), "f")
    return text if text not in ("-0", "") else "0"


def asset_uuid(symbol: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"asset:{symbol}"))


@dataclass
class FakeOrder:
    id: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    created_at: datetime
    status: str = "new"
    updated_at: datetime | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    cancel_due: datetime | None = None   # async cancel: canceled at this simulated time unless filled first
    partial: bool = False                # partial_fill fault: the first fill is half the order
    shown_status: str | None = None      # an unknown status shown on demand (the real one still rules)

    @property
    def remaining(self) -> Decimal:
        return (self.qty or Decimal(0)) - self.filled_qty

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "client_order_id": self.client_order_id, "created_at": iso_z(self.created_at),
            "updated_at": iso_z(self.updated_at or self.created_at), "submitted_at": iso_z(self.created_at),
            "filled_at": self.filled_at and iso_z(self.filled_at), "expired_at": self.expired_at and iso_z(self.expired_at),
            "canceled_at": self.canceled_at and iso_z(self.canceled_at), "failed_at": None, "replaced_at": None,
            "replaced_by": None, "replaces": None, "asset_id": asset_uuid(self.symbol), "symbol": self.symbol,
            "asset_class": "us_equity", "notional": num(self.notional),
            "qty": num(self.qty if self.qty is not None else (self.filled_qty or None)),
            "filled_qty": num(self.filled_qty), "filled_avg_price": num(self.filled_avg_price),
            "order_class": "", "order_type": self.type, "type": self.type, "side": self.side,
            "position_intent": "buy_to_open" if self.side == "buy" else "sell_to_close",
            "time_in_force": self.time_in_force, "limit_price": num(self.limit_price), "stop_price": None,
            "status": self.shown_status or self.status, "extended_hours": False, "legs": None,
            "trail_percent": None, "trail_price": None, "hwm": None,
        }


@dataclass
class Fault:
    kind: str
    times: int = 1
    path: str | None = None
    method: str | None = None
    seconds: float = 1.0
    retry_after: int = 1
    status: int = 0                 # reply: the status and JSON body to answer with
    body: Any = None
    handle: bool = False            # reply: handle the request first (an order may land), then answer

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        if self.path is None:
            return True
        return path.startswith(self.path[:-1]) if self.path.endswith("*") else path == self.path


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None
