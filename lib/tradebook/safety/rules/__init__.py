"""Gate rules, one pure function per requirement (GATE-n), each with stable reason codes.

Every rule has the signature ``(order, view, ctx) -> Verdict`` and reads only its
arguments. "Reducing" means the order only shrinks an existing position toward
zero (``PortfolioView.reduces``). Reducing exits pass the exposure, tier/sector,
correlation and re-entry rules (GATE-3/4/12/13/14) and are only warned by the
market-condition rules (GATE-7 stale/gap, GATE-9 spread/move); they still need an
open market (GATE-2), a quote and a sane limit price (GATE-8), the order-rate
budget (GATE-10) and the trading state (GATE-1).

Modules: ``state`` (GATE-1/2), ``orders`` (GATE-5/6/10), ``market`` (GATE-7/8/9),
``exposure`` (GATE-3/4/11/12), ``portfolio`` (GATE-13/14), ``correlation``
(the correlation map GATE-13 reads).
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

from tradebook.safety.rules.correlation import CorrelationMap, correlation_index, correlations
from tradebook.safety.rules.exposure import buying_power, concentration, gross_exposure, max_position
from tradebook.safety.rules.market import market_quality, planned_age_hours, signal_freshness, slippage
from tradebook.safety.rules.orders import no_shorts, order_notional, order_rate
from tradebook.safety.rules.portfolio import correlation, reentry
from tradebook.safety.rules.state import control_state, market_open

RULES = [
    control_state,      # GATE-1
    market_open,        # GATE-2
    max_position,       # GATE-3
    gross_exposure,     # GATE-4
    order_notional,     # GATE-5
    no_shorts,          # GATE-6
    signal_freshness,   # GATE-7
    slippage,           # GATE-8
    market_quality,     # GATE-9
    order_rate,         # GATE-10
    buying_power,       # GATE-11
    concentration,      # GATE-12
    correlation,        # GATE-13
    reentry,            # GATE-14
]

class ReasonCode(NamedTuple):
    """A reason code's rule, default severity, and what a rejection by it does to the intent.

    ``exit`` / ``entry``: ``retry`` leaves the intent PLANNED for the next run or window
    (a temporary refusal: the condition may pass by itself or by an operator's action);
    ``final`` makes it REJECTED; ``expire`` makes it EXPIRED (too old to act on).
    """

    rule: str
    severity: str
    exit: str = "final"
    entry: str = "final"


R, F, X = "retry", "final", "expire"

# Every reason code a rule can emit, with its rule, default severity and refusal class (EXIT-7).
# Stable: reports, alerts and stored verdicts key on these strings. RULE_ERROR comes from
# gate.evaluate. Exits retry whenever the refusal may lift (a halt or freeze an operator
# clears, a closed market, a missing/moving quote, a rate budget, a price that moved past
# a child's cap); they are final only when the order itself is wrong (not reducing, more
# than held, malformed). Entries stay final except the per-run budget, which the next run
# in the same window renews; a halted or frozen entry is never replayed behind the operator.
REASON_CODES: dict[str, ReasonCode] = {
    "HALTED": ReasonCode("GATE-1", "reject", R, F),
    "FROZEN": ReasonCode("GATE-1", "reject", R, F),
    "REDUCE_ONLY": ReasonCode("GATE-1", "reject", F, F),     # exits pass it unless they do not reduce
    "UNKNOWN_CONTROL_STATE": ReasonCode("GATE-1", "reject", R, F),
    "NOT_RECONCILED": ReasonCode("GATE-1", "reject", F, F),  # REC-8: entries only; reducing exits pass
    "MARKET_CLOSED": ReasonCode("GATE-2", "reject", R, F),
    "MAX_POSITION": ReasonCode("GATE-3", "reject", F, F),    # reducing exits pass GATE-3/4/12/13/14
    "GROSS_EXPOSURE": ReasonCode("GATE-4", "reject", F, F),
    "INVALID_ORDER": ReasonCode("GATE-5", "reject", F, F),
    "MAX_ORDER_NOTIONAL": ReasonCode("GATE-5", "reject", R, F),  # exits are split (EXIT-6); re-split next run
    "MIN_ORDER_NOTIONAL": ReasonCode("GATE-5", "reject", F, F),
    "DUST_EXIT": ReasonCode("GATE-5", "warn"),
    "NO_SHORTS": ReasonCode("GATE-6", "reject", F, F),
    "STALE_SIGNAL": ReasonCode("GATE-7", "reject", X, X),     # warn for reducing exits
    "PRICE_GAP": ReasonCode("GATE-7", "reject", F, F),        # warn for reducing exits
    "SLIPPAGE": ReasonCode("GATE-8", "reject", R, F),
    "NO_QUOTE": ReasonCode("GATE-8", "reject", R, F),         # warn for urgency=immediate market exits
    "NO_LIMIT_PRICE": ReasonCode("GATE-8", "reject", F, F),
    "MARKET_ORDER": ReasonCode("GATE-8", "reject", F, F),
    "SPREAD": ReasonCode("GATE-9", "reject", R, F),           # warn for reducing exits
    "SYMBOL_MOVE": ReasonCode("GATE-9", "reject", R, F),      # warn for reducing exits
    "ORDER_RATE_SYMBOL": ReasonCode("GATE-10", "reject", R, F),
    "ORDER_RATE_DAY": ReasonCode("GATE-10", "reject", R, F),
    "ORDER_RATE_RUN": ReasonCode("GATE-10", "reject", R, R),
    "BUYING_POWER": ReasonCode("GATE-11", "reject", F, F),
    "UNMAPPED_SYMBOL": ReasonCode("GATE-12", "reject", F, F),
    "TIER_CAP": ReasonCode("GATE-12", "reject", F, F),
    "SECTOR_CAP": ReasonCode("GATE-12", "reject", F, F),
    "TIER_CAP_BUFFER": ReasonCode("GATE-12", "warn"),
    "SECTOR_CAP_BUFFER": ReasonCode("GATE-12", "warn"),
    "CORRELATION": ReasonCode("GATE-13", "reject", F, F),
    "REENTRY": ReasonCode("GATE-14", "reject", F, F),
    "COOLDOWN": ReasonCode("GATE-14", "reject", F, F),
    "MAX_CONCURRENT": ReasonCode("GATE-14", "reject", F, F),
    "RULE_ERROR": ReasonCode("any", "reject", R, F),          # a rule raised (fail closed)
}


def refusal_state(codes: "Iterable[str]", kind: str) -> str:
    """The intent state after a gate rejection by ``codes``: PLANNED, EXPIRED or REJECTED (EXIT-7).

    PLANNED only when every rejecting code is a retry for this kind (EXIT vs entries);
    an unknown code is final (fail closed: it never loops).
    """
    side = "exit" if kind == "EXIT" else "entry"
    classes = {getattr(REASON_CODES[c], side) if c in REASON_CODES else F for c in codes}
    if not classes or classes == {R}:
        return "PLANNED" if classes else "REJECTED"
    return "EXPIRED" if X in classes else "REJECTED"


__all__ = [
    "RULES", "REASON_CODES", "ReasonCode", "refusal_state", "CorrelationMap", "correlation_index", "correlations", "planned_age_hours",
    "control_state", "market_open", "max_position", "gross_exposure", "order_notional", "no_shorts",
    "signal_freshness", "slippage", "market_quality", "order_rate", "buying_power", "concentration",
    "correlation", "reentry",
]
