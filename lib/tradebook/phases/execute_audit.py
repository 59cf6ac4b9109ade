"""What an execute run did, as the executed notebook (the audit record) shows it (EXE-6, GATE-*).

- ``orders``: every order the run sent or resumed, with its limit price, the average
  fill price, the decision price and the slippage against it (positive = worse).
- ``refusals``: every gate refusal of the run with the rule, the reason code and the
  rule's numbers, as the verdict rows store them.
- ``refusal_text``: the same refusals in one short phrase for the summary line.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from tradebook.context import Context

ORDER_COLUMNS = ["client_order_id", "symbol", "side", "qty", "order_type", "limit_price", "status", "filled_qty",
                 "fill_price", "decision_price", "slippage_bps"]
REFUSAL_COLUMNS = ["intent_id", "symbol", "kind", "side", "qty", "rule", "reason_code", "numbers"]


def orders(ctx: "Context", cids: Iterable[str]) -> list[dict[str, Any]]:
    """One row per order: limit, fill price, decision price and quantity-weighted slippage (bps)."""
    from tradebook.ledger import fills as fill_store
    from tradebook.ledger import orders as order_store

    cids = sorted(set(cids))
    if not cids:
        return []
    with ctx.ledger.connect() as con:
        rows = order_store.audit_rows(con, cids)
        slippage = fill_store.slippage_by_order(con, cids)
    return [dict(zip(ORDER_COLUMNS, [*r, slippage.get(r[0])])) for r in rows]


def refusals(ctx: "Context", intent_ids: Iterable[str], since: datetime) -> list[dict[str, Any]]:
    """The run's rejecting verdicts (at or after ``since``) with the numbers the rule reported."""
    from tradebook.ledger import verdicts as verdict_store

    ids = sorted(set(intent_ids))
    if not ids:
        return []
    with ctx.ledger.connect() as con:
        rows = verdict_store.rejections_with_intent(con, ids, since)
    return [dict(zip(REFUSAL_COLUMNS, [*r[:7], numbers(r[7])])) for r in rows]


def numbers(detail: Any) -> str:
    """A verdict's detail as ``key=value`` pairs (floats to 6 significant digits)."""
    data = json.loads(detail) if isinstance(detail, str) else (detail or {})
    if not isinstance(data, dict):
        return str(data)
    return ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in data.items())


def refusal_text(rows: list[dict[str, Any]]) -> str:
    """E.g. ``GATE-1 HALTED x3 (AAPL, IBM, MSFT)``: rule and code with how many intents and which symbols."""
    counts = Counter((r["rule"], r["reason_code"]) for r in rows)
    parts = []
    for (rule, code), n in counts.most_common():
        symbols = sorted({r["symbol"] for r in rows if (r["rule"], r["reason_code"]) == (rule, code)})
        parts.append(f"{rule} {code} x{n} ({', '.join(symbols)})")
    return "; ".join(parts)
