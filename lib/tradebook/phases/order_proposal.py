"""The order an intent proposes now (EXIT-2): a marketable limit at the quote, exits capped at what is held.

Pure: an intent, a quote and what is available in, a ``ProposedOrder`` for the gate out.
Used by the order path and by the split of large exits (EXIT-6), which sizes its parts from it.
"""
from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

from tradebook.phases import intents as it

if TYPE_CHECKING:
    from tradebook.broker.base import Quote
    from tradebook.safety.gate import ProposedOrder


def limit_price(side: str, quote_price: float) -> Decimal:
    """Marketable limit at the quote: buys rounded up, sells down, to the tick (EXIT-2)."""
    step = Decimal("0.01") if quote_price >= 1 else Decimal("0.0001")
    return Decimal(str(quote_price)).quantize(step, rounding=ROUND_CEILING if side == "buy" else ROUND_FLOOR)


def propose(intent: it.Intent, quote: "Quote | None", available: dict[str, float],
            qty: float | None = None) -> "ProposedOrder | None":
    """The order for an intent now: limit at bid/ask (market only for immediate); exits capped at what is held."""
    from tradebook.phases.exit_split import part_number
    from tradebook.safety.gate import ProposedOrder

    qty = intent.qty if qty is None else qty
    if intent.side == "sell":
        qty = min(qty, available.get(intent.symbol, 0.0))
        if qty <= 1e-9:
            return None
    market = intent.order_type == "market"
    ref = (quote.ask if intent.side == "buy" else quote.bid) if quote is not None else None
    limit = None if market or ref is None else float(limit_price(intent.side, ref))
    price = limit or ref or intent.decision_price or 0.0
    return ProposedOrder(intent.intent_id, intent.symbol, intent.side, qty, price, kind=intent.kind,  # type: ignore[arg-type]  # str holds a Literal value
                         order_type="market" if market else "limit", limit_price=limit, urgency=intent.urgency,  # type: ignore[arg-type]  # str holds a Literal value
                         confidence=intent.confidence, decision_price=intent.decision_price,
                         decision_time=intent.decision_time, intraday=intent.urgency == "immediate",
                         part=part_number(intent.intent_id) if intent.kind == "EXIT" else 0)

