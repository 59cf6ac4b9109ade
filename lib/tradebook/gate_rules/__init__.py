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

from tradebook.gate_rules.correlation import CorrelationMap, correlation_index, correlations
from tradebook.gate_rules.exposure import buying_power, concentration, gross_exposure, max_position
from tradebook.gate_rules.market import market_quality, planned_age_hours, signal_freshness, slippage
from tradebook.gate_rules.orders import no_shorts, order_notional, order_rate
from tradebook.gate_rules.portfolio import correlation, reentry
from tradebook.gate_rules.state import control_state, market_open

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

# Every reason code a rule can emit, with its rule and default severity. Stable: reports,
# alerts and stored verdicts key on these strings. RULE_ERROR comes from gate.evaluate.
REASON_CODES: dict[str, tuple[str, str]] = {
    "HALTED": ("GATE-1", "reject"),
    "FROZEN": ("GATE-1", "reject"),
    "REDUCE_ONLY": ("GATE-1", "reject"),
    "UNKNOWN_CONTROL_STATE": ("GATE-1", "reject"),
    "MARKET_CLOSED": ("GATE-2", "reject"),
    "MAX_POSITION": ("GATE-3", "reject"),
    "GROSS_EXPOSURE": ("GATE-4", "reject"),
    "INVALID_ORDER": ("GATE-5", "reject"),
    "MAX_ORDER_NOTIONAL": ("GATE-5", "reject"),
    "MIN_ORDER_NOTIONAL": ("GATE-5", "reject"),
    "DUST_EXIT": ("GATE-5", "warn"),
    "NO_SHORTS": ("GATE-6", "reject"),
    "STALE_SIGNAL": ("GATE-7", "reject"),      # warn for reducing exits
    "PRICE_GAP": ("GATE-7", "reject"),         # warn for reducing exits
    "SLIPPAGE": ("GATE-8", "reject"),
    "NO_QUOTE": ("GATE-8", "reject"),          # warn for urgency=immediate market exits
    "NO_LIMIT_PRICE": ("GATE-8", "reject"),
    "MARKET_ORDER": ("GATE-8", "reject"),
    "SPREAD": ("GATE-9", "reject"),            # warn for reducing exits
    "SYMBOL_MOVE": ("GATE-9", "reject"),       # warn for reducing exits
    "ORDER_RATE_SYMBOL": ("GATE-10", "reject"),
    "ORDER_RATE_DAY": ("GATE-10", "reject"),
    "ORDER_RATE_RUN": ("GATE-10", "reject"),
    "BUYING_POWER": ("GATE-11", "reject"),
    "UNMAPPED_SYMBOL": ("GATE-12", "reject"),
    "TIER_CAP": ("GATE-12", "reject"),
    "SECTOR_CAP": ("GATE-12", "reject"),
    "TIER_CAP_BUFFER": ("GATE-12", "warn"),
    "SECTOR_CAP_BUFFER": ("GATE-12", "warn"),
    "CORRELATION": ("GATE-13", "reject"),
    "REENTRY": ("GATE-14", "reject"),
    "COOLDOWN": ("GATE-14", "reject"),
    "MAX_CONCURRENT": ("GATE-14", "reject"),
}

__all__ = [
    "RULES", "REASON_CODES", "CorrelationMap", "correlation_index", "correlations", "planned_age_hours",
    "control_state", "market_open", "max_position", "gross_exposure", "order_notional", "no_shorts",
    "signal_freshness", "slippage", "market_quality", "order_rate", "buying_power", "concentration",
    "correlation", "reentry",
]
