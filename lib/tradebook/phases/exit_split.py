"""EXIT-6: an exit larger than ``max_order_notional`` goes out as child orders within the cap.

GATE-5's ``max_order_notional`` is a hard cap per order, meant to limit risk-taking; it
must never keep a position from getting out. So before the gate, an EXIT whose order
would exceed the cap (at the price the gate will see) is replaced, in one transaction,
by child EXIT intents ``<parent>-part<k>`` (deterministic ids, hence deterministic
client_order_ids per child), each sized within ``SAFETY`` of the cap; the parent
becomes CANCELLED with a reason naming its children. The children are ordinary intents
(same urgency, order type, decision price and time), so they take the same crash-safe
order path in the same run, and a crash after the split finds them PLANNED.

The children of one split count as one order against GATE-10's rates (``part`` > 1
rides on part 1), so a split is never cut in half by a per-run or per-symbol budget.
"""
from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from tradebook.phases import intents as it
from tradebook.ledger import events

if TYPE_CHECKING:
    from tradebook.broker.base import Quote
    from tradebook.context import Context

SAFETY = 0.98          # children at most 98% of the cap: a small price move before sending still fits
MAX_PARTS = 100        # beyond this the cap is absurd for the position: leave it to the gate (GATE-5)
_PART = re.compile(r"-part(\d+)$")


def child_id(parent: str, k: int) -> str:
    """The deterministic id of a split's k-th child (1-based)."""
    return f"{parent}-part{k}"


def part_number(intent_id: str) -> int:
    """k for a split's k-th child, 0 for an intent that is not a child."""
    m = _PART.search(intent_id)
    return int(m.group(1)) if m else 0


def parent_of(intent_id: str) -> str:
    """The intent a child was split from (repeatedly, for a child re-split later); itself otherwise."""
    while _PART.search(intent_id):
        intent_id = _PART.sub("", intent_id)
    return intent_id


def split_sizes(qty: float, price: float, cap: float) -> list[float] | None:
    """Quantities summing to ``qty``, each worth at most SAFETY * cap at ``price`` (None: cannot).

    Whole-share quantities split into whole shares, as even as possible; a fractional
    quantity splits evenly (the last child takes the rounding rest).
    """
    if not (qty > 0 and price > 0 and cap > 0) or qty * price <= cap:
        return None
    per = SAFETY * cap / price
    if float(qty).is_integer():
        per = math.floor(per)
        if per < 1:
            return None
        n = math.ceil(qty / per)
        base, rest = divmod(int(qty), n)
        sizes = [float(base + (k < rest)) for k in range(n)]
    else:
        # Children are cut to whole millionths and the last takes the rest, which can push it just past
        # ``per``: one more child then (the rest shrinks as n grows).
        n = math.ceil(qty / per)
        while True:
            each = math.floor(qty / n * 1e6) / 1e6
            sizes = [each] * (n - 1) + [round(qty - each * (n - 1), 9)]
            if sizes[-1] <= per or n > MAX_PARTS:
                break
            n += 1
    return sizes if 1 < len(sizes) <= MAX_PARTS else None


def split_large_exits(ctx: "Context", intents: list[it.Intent], quotes: dict[str, "Quote"],
                      available: dict[str, float], now: datetime) -> tuple[list[it.Intent], list[it.Intent]]:
    """(intents with over-cap PLANNED exits replaced by their children, the parents that were split)."""
    from tradebook.phases.order_proposal import propose

    cap = ctx.params.max_order_notional
    plans: list[tuple[it.Intent, list[float]]] = []
    for intent in intents:
        if intent.kind != "EXIT" or intent.side != "sell" or intent.state != it.PLANNED:
            continue
        proposed = propose(intent, quotes.get(intent.symbol), available)
        sizes = None if proposed is None else split_sizes(proposed.qty, proposed.price, cap)
        if sizes:
            plans.append((intent, sizes))
    if not plans:
        return intents, []
    children = _record_split(ctx, plans, now)
    out: list[it.Intent] = []
    for intent in intents:
        out.extend(children.get(intent.intent_id, [intent]))
    return out, [p for p, _ in plans]


def _record_split(ctx: "Context", plans: list[tuple[it.Intent, list[float]]],
                  now: datetime) -> dict[str, list[it.Intent]]:
    """Children in, parents CANCELLED, one transaction (a crash leaves either the parent or its children)."""
    out: dict[str, list[it.Intent]] = {}
    cap = ctx.params.max_order_notional
    with ctx.ledger.transaction() as con:
        for parent, sizes in plans:
            kids = [replace(parent, intent_id=child_id(parent.intent_id, k), qty=q, created_at=now,
                            run_id=ctx.run_id, state=it.PLANNED, attempt=0, gate_status=None, gate_reason=None,
                            updated_at=now, reason=f"part {k}/{len(sizes)} of {parent.intent_id}: {parent.reason}")
                    for k, q in enumerate(sizes, start=1)]
            for kid in kids:
                it.insert(con, kid)
            ids = ", ".join(k.intent_id for k in kids)
            reason = (f"split into {len(kids)} child orders within max_order_notional {cap:g} (EXIT-6): {ids}")
            it.transition(con, parent.intent_id, it.CANCELLED, reason=reason, now=now, run_id=ctx.run_id)
            events.record(con, "EXIT_SPLIT", run_id=ctx.run_id, symbol=parent.symbol, qty=sum(sizes), ts=now,
                          reason=reason, data={"intent_id": parent.intent_id, "children": [k.intent_id for k in kids],
                                              "sizes": sizes, "cap": cap})
            out[parent.intent_id] = kids
    return out
