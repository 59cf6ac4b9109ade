"""Exposure against the caps (GATE-3, GATE-4, GATE-12): one computation and one warning rule.

The gate enforces these caps; the panel and the report only display them, through
``exposure_lines``, so the operator sees the rule that is enforced:

- caps: gross ``max_gross_exposure_pct``, per symbol ``max_position_pct``, per tier
  ``tier_caps[tier]``, per sector ``sector_cap_pct``, all as fractions of equity;
- a symbol's tier and sector come from ``symbol_tiers`` / ``symbol_sectors`` (UNMAPPED
  when missing); a tier without a cap, or an unmapped sector, has no cap (NO_CAP): the
  gate refuses entries there (GATE-12 UNMAPPED_SYMBOL);
- OVER above the cap; WARN within ``cap_buffer_pct`` of equity below a tier or sector
  cap (cap 30%, buffer 5%: from 25%), the gate's TIER_CAP_BUFFER / SECTOR_CAP_BUFFER;
  symbol and gross caps are hard caps, without a warning band.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from tradebook.params import Params

UNMAPPED = "UNMAPPED"
OK, WARN, OVER, NO_CAP, UNKNOWN = "OK", "WARN", "OVER", "NO_CAP", "n/a"
GROUPS = ("gross", "tier", "sector", "symbol")
BUFFERED = frozenset({"tier", "sector"})      # groups with a warning band below the cap (GATE-12)


def in_buffer(after: float, cap: float, buffer: float) -> bool:
    """The one warning rule: ``after`` is within ``buffer`` below ``cap`` (any unit, the same for all)."""
    return after > cap - buffer


def tier_of(symbol: str, params: "Params") -> str:
    return params.symbol_tiers.get(symbol, UNMAPPED)


def sector_of(symbol: str, params: "Params") -> str:
    return params.symbol_sectors.get(symbol, UNMAPPED)


def cap_of(group: str, name: str, params: "Params") -> float | None:
    """The cap of one group as a fraction of equity; None when there is none (entries refused)."""
    if group == "gross":
        return params.max_gross_exposure_pct
    if group == "symbol":
        return params.max_position_pct
    if group == "tier":
        return params.tier_caps.get(name) if name != UNMAPPED else None
    if group == "sector":
        return params.sector_cap_pct if name != UNMAPPED else None
    raise ValueError(f"unknown exposure group {group!r}; choose from {', '.join(GROUPS)}")


def level(group: str, pct: float, cap: float | None, buffer: float) -> str:
    """OK / WARN / OVER against the cap (NO_CAP without one, n/a when the % of equity is unknown)."""
    if cap is None:
        return NO_CAP
    if math.isnan(pct):
        return UNKNOWN
    if pct > cap:
        return OVER
    return WARN if group in BUFFERED and in_buffer(pct, cap, buffer) else OK


@dataclass(frozen=True)
class ExposureLine:
    """One group's exposure: its value, % of equity, cap (None: no cap) and level."""

    group: str      # gross | tier | sector | symbol
    name: str
    value: float
    pct: float      # of equity (inf without equity, NaN when equity is unknown)
    cap: float | None
    level: str
    positions: int = 0


def _pct(value: float, equity: float | None) -> float:
    if equity is None or math.isnan(equity):
        return math.nan
    return value / equity if equity > 0 else (math.inf if value else 0.0)


def exposure_lines(values: Iterable[tuple[str, float]], equity: float | None,
                   params: "Params") -> list[ExposureLine]:
    """Exposure of ``(symbol, market value)`` pairs by gross, tier, sector and symbol against the caps,
    ordered gross, tiers, sectors, symbols (each by name). Values count in absolute terms."""
    totals: dict[tuple[str, str], list[float]] = {("gross", "all"): [0.0, 0]}
    for symbol, value in values:
        v = abs(value)
        for key in (("gross", "all"), ("tier", tier_of(symbol, params)), ("sector", sector_of(symbol, params)),
                    ("symbol", symbol)):
            total = totals.setdefault(key, [0.0, 0])
            total[0] += v
            total[1] += 1
    lines = []
    for (group, name), (value, count) in totals.items():
        pct, cap = _pct(value, equity), cap_of(group, name, params)
        lines.append(ExposureLine(group, name, value, pct, cap, level(group, pct, cap, params.cap_buffer_pct),
                                  int(count)))
    rank = {g: i for i, g in enumerate(GROUPS)}
    return sorted(lines, key=lambda line: (rank[line.group], line.name))
