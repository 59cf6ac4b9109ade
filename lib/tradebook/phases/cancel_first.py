"""Clear the way for an exit: cancel the symbol's working orders and wait until the broker
confirms them final (VEN-2; issue 12 item 4).

A real venue refuses an exit that meets our own working order on the symbol: a sell
whose shares are held by a working sell ("insufficient qty available"), or an
opposite-side market order against a working buy ("potential wash trade"). And its
cancels are asynchronous: a cancel request only moves the order to pending_cancel. So
a flatten or a protective exit first cancels the symbol's working orders, then looks
them up until every one is final — a bounded wait (``WAIT_POLLS`` look-ups) — records
what happened to ours (a fill may have beaten the cancel), and only then sends. When
the broker has not confirmed in time the exit is not sent and not failed: it stays
PLANNED and the next run or monitor tick tries again.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Collection

from tradebook.broker.base import is_final
from tradebook.ledger import events
from tradebook.errors import BrokerRejected, BrokerUnavailable

if TYPE_CHECKING:
    from tradebook.broker.base import Order
    from tradebook.context import Context

WAIT_POLLS = 5            # look-ups of each cancelled order before giving up for this run
POLL_INTERVAL_S = 0.4     # real brokers only: the simulator confirms on look-ups, not on time


def working_orders(ctx: "Context", symbol: str, keep: Collection[str] = ()) -> list["Order"]:
    """The broker's working orders on ``symbol`` (except the client ids in ``keep``)."""
    return [o for o in ctx.broker.open_orders() if o.symbol == symbol and o.client_order_id not in keep]


def clear_symbol(ctx: "Context", symbol: str, now: datetime, *, keep: Collection[str] = (),
                 why: str = "exit") -> bool:
    """Cancel every working order on ``symbol`` (but those in ``keep``) and wait until all are final.

    True when nothing is working on the symbol any more; False when the broker has not
    confirmed in time or could not be reached (the caller leaves its exit for later).
    """
    try:
        orders = working_orders(ctx, symbol, keep)
    except BrokerUnavailable:
        return False
    if not orders:
        return True
    for order in orders:
        if order.status == "pending_cancel":
            continue                      # already asked; only the confirmation is missing
        try:
            ctx.broker.cancel(order.client_order_id)
        except BrokerRejected:
            pass                          # already final (filled, cancelled): the look-up below tells
        except BrokerUnavailable:
            return False
    _record_requests(ctx, orders, now, why)
    done = wait_final(ctx, [o.client_order_id for o in orders])
    _sync_ours(ctx, [o.client_order_id for o in orders])
    return done


def renew_stuck_exits(ctx: "Context", now: datetime) -> list[str]:
    """EXIT-9: an immediate exit whose order is still working at a later tick (a market order
    partly filled and stuck, a venue that sat on it) is cancelled, so this tick's checks send a
    fresh exit for what is still held. Returns the symbols cleared."""
    from tradebook.ledger import orders as order_store
    from tradebook.phases.intents import FLATTEN_PREFIX
    from tradebook.phases.order_sync import LEDGER_FINAL, LOCAL_OPEN

    with ctx.ledger.connect() as con:   # flatten's own exits are flatten's to renew
        symbols = order_store.working_immediate_exit_symbols(con, LEDGER_FINAL | LOCAL_OPEN, now, FLATTEN_PREFIX)
    return [s for s in symbols if clear_symbol(ctx, s, now, why="renew a stuck immediate exit")]


def wait_final(ctx: "Context", cids: list[str]) -> bool:
    interval = 0.0 if ctx.params.mode == "sim" else POLL_INTERVAL_S
    pending = list(cids)
    for k in range(WAIT_POLLS):
        still = []
        for cid in pending:
            try:
                order = ctx.broker.get_order(cid)
            except BrokerUnavailable:
                still.append(cid)
                continue
            if order is not None and not is_final(order.status):
                still.append(cid)
        pending = still
        if not pending:
            return True
        if interval and k + 1 < WAIT_POLLS:
            time.sleep(interval)
    return False


def _record_requests(ctx: "Context", orders: list["Order"], now: datetime, why: str) -> None:
    with ctx.ledger.transaction() as con:
        for o in orders:
            events.record(con, "ORDER_CANCEL_REQUESTED", run_id=ctx.run_id, symbol=o.symbol, qty=o.qty, ts=now,
                          reason=f"cancel first: {why} on {o.symbol} waits until {o.client_order_id} "
                                f"({o.side} {o.status}) is final (VEN-2)",
                          data={"client_order_id": o.client_order_id, "status": o.status})


def _sync_ours(ctx: "Context", cids: list[str]) -> None:
    """Record how our cancelled orders ended (fills that beat the cancel reach the ledger now)."""
    from tradebook.phases.reconcile import sync_orders

    try:
        sync_orders(ctx, cids)
    except BrokerUnavailable:
        pass                              # the next sync records them; the exit is capped by broker qty
