"""Reading a sweep table: the best sets, a metric over two parameters, the walk-forward gap, and the
params change that would promote a set. The research notebook only calls these.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from tradebook.errors import ConfigError
from tradebook.research.table import COLUMNS

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from tradebook.params import Params

SHOWN = ("final_equity", "cagr_pct", "max_drawdown_pct", "sharpe", "trades", "fills", "rejections", "costs")


def param_columns(frame: "pd.DataFrame") -> list[str]:
    """The swept parameters: every column that is not one of the table's own."""
    return [c for c in frame.columns if c not in COLUMNS]


def top_sets(frame: "pd.DataFrame", metric: str = "sharpe", n: int = 10) -> "pd.DataFrame":
    """The ``n`` best sets by ``metric`` (higher is better), parameters first, errors left out."""
    if metric not in frame.columns:
        raise ConfigError(f"no metric {metric!r} in the sweep table; choose one of {', '.join(SHOWN)}")
    ok = frame[frame["error"].isna()]
    cols = param_columns(frame) + [c for c in SHOWN if c in frame.columns] + ["key"]
    best = ok.sort_values(metric, ascending=False, kind="stable").head(n)[cols].reset_index(drop=True)
    # The table's `trades` are round trips (flat to flat), what `tradebook backtest` calls them; fills are apart.
    return best.rename(columns={"trades": "round_trips"})


def readable(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The sweep / walk-forward figures as text, formatted like `tradebook backtest`'s table:
    equity and costs with thousands separators, percentages signed with two decimals and a %,
    Sharpe with two decimals, counts as integers."""
    import pandas as pd

    out = frame.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]) or pd.api.types.is_bool_dtype(out[col]):
            continue
        out[col] = out[col].map(lambda v, fmt=_format_of(col, out[col]): "" if pd.isna(v) else fmt(v))
    return out


def _format_of(col: str, values: "pd.Series"):
    import pandas as pd

    if col.endswith("_pct"):
        return lambda v: f"{v:+.2f}%"
    if "equity" in col or col.endswith("costs"):
        return lambda v: f"{v:,.0f}" if "equity" in col else f"{v:,.2f}"
    if pd.api.types.is_integer_dtype(values) or (values.dropna() % 1 == 0).all():
        return lambda v: f"{int(v):,}"
    return lambda v: f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.3g}"


def heatmap_table(frame: "pd.DataFrame", x: str, y: str, metric: str = "sharpe") -> "pd.DataFrame":
    """``metric`` over two parameters (rows ``y``, columns ``x``); other parameters averaged."""
    for name in (x, y):
        if name not in param_columns(frame):
            raise ConfigError(f"{name!r} is not a swept parameter; the sweep varied {', '.join(param_columns(frame))}")
    return frame[frame["error"].isna()].pivot_table(index=y, columns=x, values=metric, aggfunc="mean")


def heatmap_figure(frame: "pd.DataFrame", x: str, y: str, metric: str = "sharpe") -> "Figure":
    """The heatmap as a matplotlib figure, each cell labelled with its value."""
    from matplotlib.figure import Figure

    grid = heatmap_table(frame, x, y, metric)
    fig = Figure(figsize=(max(4.5, 1.5 + 0.6 * len(grid.columns)), max(3.2, 1.0 + 0.4 * len(grid.index))))
    ax = fig.add_subplot()
    ax.set_title(f"{metric} by {y} and {x}", fontsize=10)
    image = ax.imshow(grid.to_numpy(), aspect="auto", cmap="RdYlGn", origin="lower")
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
    ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if grid.size <= 400:
        for (i, j), value in _cells(grid):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label=metric)
    fig.tight_layout()
    return fig


def show_figure(fig: "Figure") -> None:
    """Display a figure in a notebook as a PNG (the same way the report and backtest notebooks do)."""
    from IPython.display import Image, display

    from tradebook.style import png

    display(Image(png(fig)))


def _cells(grid: "pd.DataFrame"):
    import numpy as np

    values = grid.to_numpy()
    for i, j in zip(*np.nonzero(~np.isnan(values))):
        yield (int(i), int(j)), float(values[i, j])


def gap_figure(report: "pd.DataFrame", metric: str = "sharpe") -> "Figure":
    """In- vs out-of-sample ``metric`` per walk-forward window, side by side."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    k = np.arange(len(report))
    ax.bar(k - 0.2, report[f"is_{metric}"], 0.4, label="in sample (best set)")
    ax.bar(k + 0.2, report[f"oos_{metric}"], 0.4, label="out of sample (same set)")
    ax.set_xticks(k, [f"{d:%Y-%m}" for d in report["oos_start"]])
    ax.set_xlabel("out-of-sample window start")
    ax.set_ylabel(metric)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def promotion(chosen: Mapping[str, Any], params: "Params | None" = None, strategy: str = "swing") -> "pd.DataFrame":
    """The params changes that would make the live strategy run ``chosen``: key, current, proposed.

    Only keys that differ are listed (``strategy.use`` too when the live params choose
    another strategy); apply them in the params YAML (or as ``-p key=value``).
    """
    import pandas as pd

    from tradebook.params import Params
    from tradebook.research.evaluate import REFERENCE
    from tradebook.strategies.loader import build

    if strategy == REFERENCE:
        raise ConfigError(f"{REFERENCE} is the parity reference, not a strategy decide can run: "
                          "sweep sma_cross (or another strategy) to promote a set")
    params = params or Params()
    live = params.strategy
    # the strategy's own params as decide would run them: the live ones, or its defaults when switching
    own = build(strategy, live.params if live.use == strategy else {}).params.model_dump()
    fields = set(own)
    rows = [("strategy.use", live.use, strategy)] if live.use != strategy else []
    current = params.model_dump(mode="json")
    for name, value in chosen.items():
        if name in fields:
            rows.append((f"strategy.params.{name}", own.get(name), value))
            continue
        node: Any = current
        for part in name.split("."):
            node = node[part]
        rows.append((name, node, value))
    return pd.DataFrame([r for r in rows if r[1] != r[2]], columns=["key", "current", "proposed"])


def chosen_set(frame: "pd.DataFrame", key: str | None = None, metric: str = "sharpe") -> dict[str, Any]:
    """A set's parameters by key (default: the best by ``metric``)."""
    import json

    ok = frame[frame["error"].isna()]
    if key is None:
        return json.loads(ok.loc[ok[metric].idxmax()]["params"])
    match = ok[ok["key"] == key]
    if match.empty:
        raise ConfigError(f"no finished set with key {key!r} in this sweep")
    return json.loads(match.iloc[0]["params"])
