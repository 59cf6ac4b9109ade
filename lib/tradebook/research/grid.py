"""The SMA crossover grid, vectorised over every (fast, slow) pair at once (SPEC §7 sweep target).

Same rules as ``backtest.SmaCross`` run one pair and one symbol at a time through
``backtest.run_reference``: buy ``size`` shares on an up-cross when flat, sell all
on a down-cross, signals at the close, fills at the symbol's next open, no costs.
Each (pair, symbol) is its own portfolio. The final values are bit-for-bit those
of the one-at-a-time runs: the moving averages come from the same pandas rolling
means, near-ties are settled with the same exactly-rounded sums as
``sma_cross.crossings``, and cash is accumulated in the same order as
``backtest_results.equity_curve``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FAST = tuple(range(5, 51, 5))
SLOW = tuple(range(20, 201, 10))


def sma_pairs(fast: Iterable[int] = FAST, slow: Iterable[int] = SLOW) -> list[tuple[int, int]]:
    """Every (fast, slow) with fast < slow: 174 pairs for the default ranges."""
    slow = list(slow)
    return [(f, s) for f in fast for s in slow if f < s]


def sma_grid(bars: "pd.DataFrame", pairs: Sequence[tuple[int, int]] | None = None, *, size: float = 10.0,
             cash: float = 100_000.0) -> "pd.DataFrame":
    """Final value of each (symbol, fast, slow) portfolio: columns symbol, fast, slow, fills, final_value.

    ``bars``: long bars (symbol, date, open, close, ...). Each symbol is simulated on
    its own dates only, as ``run_reference([symbol], bars=that symbol's bars)`` does.
    """
    import pandas as pd

    pairs = list(pairs if pairs is not None else sma_pairs())
    if not pairs or any(f < 1 or s < 1 for f, s in pairs):
        raise ValueError("sma_grid needs at least one (fast, slow) pair of positive windows")
    frames = []
    for symbol, frame in bars.sort_values(["symbol", "date"], kind="stable").groupby("symbol", sort=True):
        close = frame["close"].to_numpy(dtype=float)
        opens = frame["open"].to_numpy(dtype=float)
        up, down = grid_crossings(close, pairs)
        fills, final = _portfolios(up, down, opens, close, size, cash)
        frames.append(pd.DataFrame({"symbol": str(symbol), "fast": [f for f, _ in pairs],
                                    "slow": [s for _, s in pairs], "fills": fills, "final_value": final}))
    if not frames:
        raise ValueError("sma_grid got no bars")
    return pd.concat(frames, ignore_index=True)


def grid_crossings(close: "np.ndarray", pairs: Sequence[tuple[int, int]]) -> tuple["np.ndarray", "np.ndarray"]:
    """[pair, session] up- and down-cross flags, identical to ``sma_cross.crossings`` for each pair."""
    import numpy as np

    n = len(close)
    sma = _rolling_means(close, {w for pair in pairs for w in pair})
    fast = np.array([f for f, _ in pairs])
    slow = np.array([s for _, s in pairs])
    diff = np.stack([sma[f] for f in fast]) - np.stack([sma[s] for s in slow])
    with np.errstate(invalid="ignore"):
        close_call = np.argwhere(np.abs(diff) <= 1e-9 * np.abs(close))
    for k, i in close_call:  # rare: settle the sign with exactly rounded means, as sma_cross.crossings does
        f, s = int(fast[k]), int(slow[k])
        diff[k, i] = math.fsum(close[i - f + 1:i + 1]) / f - math.fsum(close[i - s + 1:i + 1]) / s
    nzd = _ffill_rows(np.where(diff == 0, np.nan, diff))
    seeded = slow - 1 < n
    rows = np.flatnonzero(seeded)
    nzd[rows, slow[seeded] - 1] = diff[rows, slow[seeded] - 1]  # the seed keeps a zero
    up = np.zeros(diff.shape, dtype=bool)
    down = np.zeros_like(up)
    with np.errstate(invalid="ignore"):
        up[:, 1:] = (nzd[:, :-1] < 0) & (diff[:, 1:] > 0)
        down[:, 1:] = (nzd[:, :-1] > 0) & (diff[:, 1:] < 0)
    short = slow >= n  # sma_cross.crossings: no crossings at all when the history is not longer than slow
    up[short], down[short] = False, False
    return up, down


def _rolling_means(close: "np.ndarray", windows: set[int]) -> dict[int, "np.ndarray"]:
    """pandas rolling means (the very function ``sma_cross.crossings`` uses), one per distinct window."""
    import pandas as pd

    s = pd.Series(close)
    return {w: s.rolling(w).mean().to_numpy() for w in sorted(windows)}


def _ffill_rows(a: "np.ndarray") -> "np.ndarray":
    """Forward-fill NaNs along each row."""
    import numpy as np

    idx = np.where(np.isnan(a), 0, np.arange(a.shape[1]))
    np.maximum.accumulate(idx, axis=1, out=idx)
    return np.take_along_axis(a, idx, axis=1)


def _portfolios(up: "np.ndarray", down: "np.ndarray", opens: "np.ndarray", close: "np.ndarray",
                size: float, cash: float) -> tuple["np.ndarray", "np.ndarray"]:
    """(fills, final value) per pair: fills at the next open, cash summed in time order.

    Crosses alternate, so the position is flat before the first up-cross and a
    down-cross only sells when an up-cross came before it.
    """
    import numpy as np

    sells = down & (np.cumsum(up, axis=1) > 0)
    buy_fill, sell_fill = up[:, :-1], sells[:, :-1]  # a cross on the last bar never fills
    flow = np.zeros(up.shape)
    flow[:, 1:] = np.where(buy_fill, -(size * opens[1:]), 0.0) + np.where(sell_fill, size * opens[1:], 0.0)
    # cumsum is a sequential sum: the same rounding as the equity curve's cash path
    cash_end = cash + np.cumsum(flow, axis=1)[:, -1]
    held = buy_fill.sum(axis=1) - sell_fill.sum(axis=1)
    qty = held * float(size)
    final = cash_end + np.nan_to_num(qty * close[-1])
    return buy_fill.sum(axis=1) + sell_fill.sum(axis=1), final
