"""Sending one order to the broker with a look-up instead of a blind resend (EXE-1, EXE-4).

A transient error or an unknown outcome is answered by looking the client_order_id up;
only when the broker has never seen it is it sent once more, with the *same* id (a
duplicate is refused, then adopted). With the API circuit open only an order that
reduces is sent again. No ledger here: the order path records what comes back.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from tradebook.errors import BrokerUnavailable, CircuitOpen, DuplicateClientOrderId

if TYPE_CHECKING:
    from tradebook.broker.base import Order, OrderRequest
    from tradebook.context import Context


def submit_with_lookup(ctx: "Context", request: "OrderRequest") -> "Order":
    """Submit; on a transient error or an unknown outcome look the id up and, only when the broker
    has never seen it, send once more with the *same* client_order_id (a duplicate is refused).

    EXE-4: with the API circuit open (the adapter reports it) only an order that reduces is sent
    again; an entry is held (outcome unknown) and the next run, after its look-up, meets GATE-1
    under REDUCE_ONLY: refused with a recorded verdict."""
    for last in (False, True):
        try:
            return ctx.broker.submit(request)
        except DuplicateClientOrderId:
            found = lookup(ctx, request.client_order_id)
            if found is None:
                raise BrokerUnavailable("broker reports a duplicate client_order_id it cannot find") from None
            return found
        except BrokerUnavailable as exc:
            found = lookup(ctx, request.client_order_id)
            if found is not None:
                return found
            if last or (request.side == "buy" and circuit_open(ctx, exc)):  # long-only: a buy adds exposure
                raise
    raise AssertionError("unreachable: the second attempt returns or raises")


def circuit_open(ctx: "Context", exc: Exception | None = None) -> bool:
    """EXE-4: the adapter reports an open API circuit (``circuit_open``, or CircuitOpen raised)."""
    return isinstance(exc, CircuitOpen) or bool(getattr(ctx.broker, "circuit_open", False))


def lookup(ctx: "Context", cid: str) -> "Order | None":
    """The broker's order for this client_order_id; None when it has none or cannot answer now."""
    try:
        return ctx.broker.get_order(cid)
    except BrokerUnavailable:
        return None

