"""Return correlations between symbols, for GATE-13.

``correlations`` turns a wide frame of closes into ``{(a, b): corr}`` (both orders
of every pair with enough data). The gate never scans that map per order: it asks
an index of each symbol's *neighbours* (pairs above the limit), built once per map
and limit, so the rule costs O(neighbours), not O(positions).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

from tradebook.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

Pair = tuple[str, str]


class CorrelationIndex:
    """The symbols a correlation map covers and, per symbol, its neighbours above a limit."""

    __slots__ = ("symbols", "neighbours", "limit")

    def __init__(self, items: Iterable[tuple[Pair, float]], limit: float):
        covered: set[str] = set()
        near: dict[str, list[tuple[str, float]]] = {}
        for (a, b), c in items:
            covered.add(a)
            covered.add(b)
            if c > limit and a != b:
                near.setdefault(a, []).append((b, c))
                near.setdefault(b, []).append((a, c))
        self.symbols = frozenset(covered)
        self.limit = limit
        # Highest correlation first, duplicates (a, b) / (b, a) removed.
        self.neighbours = {s: tuple(sorted(dict(v).items(), key=lambda kv: -kv[1])) for s, v in near.items()}


class CorrelationMap(dict):
    """``{(a, b): corr}`` as built by :func:`correlations`; caches its neighbour index per limit."""

    def __init__(self, pairs: Mapping[Pair, float] | Iterable[tuple[Pair, float]] = ()):
        super().__init__(pairs)
        self._indexes: dict[float, CorrelationIndex] = {}

    def index(self, limit: float) -> CorrelationIndex:
        idx = self._indexes.get(limit)
        if idx is None:
            idx = self._indexes[limit] = CorrelationIndex(self.items(), limit)
        return idx


# Plain mappings in GateContext.correlations get an index cached by identity. The entry keeps
# a reference to the mapping so its id cannot be reused while cached; treat it as read-only.
_plain_cache: dict[int, tuple[Mapping, float, int, CorrelationIndex]] = {}


def correlation_index(corr: Mapping[Pair, float], limit: float) -> CorrelationIndex:
    """The neighbour index of ``corr`` at ``limit``, built once per map and limit."""
    if isinstance(corr, CorrelationMap):
        return corr.index(limit)
    hit = _plain_cache.get(id(corr))
    if hit is not None and hit[0] is corr and hit[1] == limit and hit[2] == len(corr):
        return hit[3]
    idx = CorrelationIndex(corr.items(), limit)
    if len(_plain_cache) >= 8:
        _plain_cache.clear()
    _plain_cache[id(corr)] = (corr, limit, len(corr), idx)
    return idx


def correlations(closes_wide: "pd.DataFrame", lookback: int) -> CorrelationMap:
    """Pairwise correlation of daily returns over the last ``lookback`` returns (vectorised).

    ``closes_wide``: one column per symbol, rows in date order (``marketdata.closes_wide``).
    A pair needs at least ``max(5, lookback // 2)`` overlapping returns; pairs without
    enough data, or with a flat series, are left out (GATE-13 then uses the sector proxy).
    """
    import numpy as np

    if lookback < 2:
        raise ConfigError(f"correlation lookback must be at least 2 returns, got {lookback}")
    window = closes_wide.iloc[-(lookback + 1):]
    returns = window.pct_change(fill_method=None).iloc[1:]
    matrix = returns.corr(min_periods=max(5, lookback // 2)).to_numpy()
    n = matrix.shape[0]
    ok = ~np.isnan(matrix) & ~np.eye(n, dtype=bool)
    i, j = np.nonzero(ok)
    names = np.asarray([str(c) for c in closes_wide.columns], dtype=object)
    return CorrelationMap(zip(zip(names[i].tolist(), names[j].tolist()), matrix[i, j].tolist()))
