"""Array helpers of the backtest: dates as days, forward-filled closes, rolling correlations.

Pure numpy/pandas over [session, symbol] arrays; the simulator, the session rules, the
results and the backtest's gate share them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def rolling_correlation(close: "np.ndarray", window: int) -> "np.ndarray":
    """[session, i, j] correlation of daily returns over the last ``window`` sessions (NaN if incomplete)."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        r = close[1:] / close[:-1] - 1.0
    r = np.vstack([np.full((1, close.shape[1]), np.nan), r])
    ok = ~np.isnan(r)
    x = np.where(ok, r, 0.0)
    both = ok[:, :, None] & ok[:, None, :]

    def wsum(a: "np.ndarray") -> "np.ndarray":
        c = np.cumsum(a, axis=0)
        out = c.copy()
        out[window:] = c[window:] - c[:-window]
        return out

    n = wsum(both.astype(float))
    sx = wsum(x[:, :, None] * both)
    sy = wsum(x[:, None, :] * both)
    sxy = wsum(x[:, :, None] * x[:, None, :])
    sxx = wsum(x[:, :, None] ** 2 * both)
    syy = wsum(x[:, None, :] ** 2 * both)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / n
        corr = cov / np.sqrt((sxx - sx ** 2 / n) * (syy - sy ** 2 / n))
    corr[n < window] = np.nan
    return corr


def to_days(values: "pd.Series") -> "np.ndarray":
    """datetime.date objects (or datetimes) as datetime64[D], fast (numpy's own object path is slow)."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values):
        return values.to_numpy().astype("datetime64[D]")
    epoch = 719163  # date(1970, 1, 1).toordinal()
    ordinals = np.array([d.toordinal() for d in values.tolist()], dtype=np.int64)
    return (ordinals - epoch).astype("datetime64[D]")


def pd_ffill(values: "np.ndarray") -> "np.ndarray":
    """Forward-fill NaNs down each column (last known close for sessions without a bar)."""
    import pandas as pd

    return pd.DataFrame(values).ffill().to_numpy()
