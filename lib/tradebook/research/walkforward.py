"""Walk-forward (SWP-1): pick the best set in each in-sample window, then see how it did out of sample.

Windows are rolling (the in-sample window slides) or anchored (it always starts at
the first date and grows). Each window's in-sample sweep and out-of-sample run are
ordinary sweeps in the same table (names ``<name>:is<k>`` / ``<name>:oos<k>``), so a
walk-forward resumes like any sweep. The gap between in- and out-of-sample figures
is the overfitting warning: a set that only shines in sample is not worth promoting.
"""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from tradebook.errors import ConfigError
from tradebook.research import table
from tradebook.research.sweep import _root, default_name, load_job_bars, make_job, plan, run_sets

if TYPE_CHECKING:
    import pandas as pd

    from tradebook.params import Params

MIN_OOS_DAYS = 30
HIGHER_IS_BETTER = ("sharpe", "cagr_pct", "final_equity", "max_drawdown_pct")  # drawdowns are negative


def parse_span(text: str) -> tuple[str, int]:
    """``"3y"``, ``"18m"``, ``"26w"`` → (pandas DateOffset unit, count)."""
    match = re.fullmatch(r"\s*(\d+)\s*([ymw])\s*", text.lower())
    if not match or int(match.group(1)) < 1:
        raise ConfigError(f"window length {text!r} must look like 3y, 18m or 26w")
    return {"y": "years", "m": "months", "w": "weeks"}[match.group(2)], int(match.group(1))


def windows(first: date, last: date, in_sample: str, out_of_sample: str,
            mode: str = "rolling") -> list[tuple[date, date, date, date]]:
    """(is_start, is_end, oos_start, oos_end) per window, each boundary counted from ``first``.

    The last out-of-sample window may be short, but not under MIN_OOS_DAYS (a few
    sessions say nothing about a set).
    """
    import pandas as pd

    if mode not in ("rolling", "anchored"):
        raise ConfigError(f"walk-forward mode {mode!r}: choose rolling or anchored")
    (is_unit, is_n), (oos_unit, oos_n) = parse_span(in_sample), parse_span(out_of_sample)
    base, end, day = pd.Timestamp(first), pd.Timestamp(last), timedelta(days=1)
    out, k = [], 0
    while True:
        shift = pd.DateOffset(**{oos_unit: oos_n * k})
        oos_start = base + pd.DateOffset(**{is_unit: is_n}) + shift  # boundaries from ``first``: no drift
        if (end - oos_start).days + 1 < MIN_OOS_DAYS:
            break
        is_start = base + shift if mode == "rolling" else base
        oos_end = min(oos_start + pd.DateOffset(**{oos_unit: oos_n}) - day, end)
        out.append((is_start.date(), (oos_start - day).date(), oos_start.date(), oos_end.date()))
        k += 1
    if not out:
        raise ConfigError(f"{first} → {last} is too short for an in-sample window of {in_sample} "
                          f"plus out-of-sample {out_of_sample}")
    return out


def walk_forward(strategy: str, grid: Mapping[str, Sequence[Any]], *, in_sample: str = "3y",
                 out_of_sample: str = "1y", mode: str = "rolling", metric: str = "sharpe",
                 params: "Params | None" = None, symbols: Sequence[str] | None = None,
                 start: date | None = None, end: date | None = None, use_gate: bool = True,
                 frictions: bool = True, search: str = "grid", samples: int | None = None, seed: int = 0, name: str | None = None,
                 db: Path | str | None = None, workers: int | None = None, ray: str | None = None,
                 ray_cpus: int | None = None, progress: bool = True) -> "pd.DataFrame":
    """One row per window: dates, the in-sample winner, its in- and out-of-sample figures, the gap."""
    if metric not in HIGHER_IS_BETTER:
        raise ConfigError(f"walk-forward metric {metric!r}: choose one of {', '.join(HIGHER_IS_BETTER)}")
    job = make_job(strategy, params=params, symbols=symbols, start=start, end=end, use_gate=use_gate,
                   frictions=frictions)
    sets = plan(strategy, grid, search=search, samples=samples, seed=seed, root=job.root)
    bars = load_job_bars(job)
    first = max(start or date.min, min(bars["date"]))
    last = min(end or date.max, max(bars["date"]))
    name = name or "wf-" + default_name(job, grid, search, samples, seed)
    db = Path(db) if db else _default_db(params)
    table.check_not_ledger(db, (params or _defaults()).ledger_path(_root()))
    spans = windows(first, last, in_sample, out_of_sample, mode)
    with table.connect(db) as con:
        opts = dict(con=con, db=db, workers=workers, ray=ray, ray_cpus=ray_cpus, progress=progress, bars=bars)
        rows = [_window(k, span, job, sets, metric, name, opts) for k, span in enumerate(spans)]
    import pandas as pd

    return pd.DataFrame(rows)


def _window(k: int, span: tuple[date, date, date, date], job, sets: list, metric: str, name: str,
            opts: dict) -> dict[str, Any]:
    """Sweep one in-sample window, run its winner out of sample, and report both."""
    is_start, is_end, oos_start, oos_end = span
    con = opts["con"]
    inside = run_sets(replace(job, start=is_start, end=is_end), sets, name=f"{name}:is{k}", **opts).results(con)
    best = _best(inside, metric)
    outside = run_sets(replace(job, start=oos_start, end=oos_end), [best["set"]], name=f"{name}:oos{k}",
                       **opts).results(con).iloc[0]
    return {"window": k, "is_start": is_start, "is_end": is_end, "oos_start": oos_start,
            "oos_end": oos_end, "params": best["params"], f"is_{metric}": best[metric],
            f"oos_{metric}": outside[metric], "gap": best[metric] - outside[metric],
            "is_cagr_pct": best["cagr_pct"], "oos_cagr_pct": outside["cagr_pct"],
            "oos_max_drawdown_pct": outside["max_drawdown_pct"], "oos_round_trips": outside["trades"],
            "sets": len(inside)}


def _best(frame: "pd.DataFrame", metric: str) -> dict[str, Any]:
    """The in-sample winner (ties: the earlier set), with its set as a dict."""
    import json

    ok = frame[frame["error"].isna() & frame[metric].notna()]
    if ok.empty:
        raise ConfigError("no parameter set ran without error in an in-sample window; check the grid")
    row = ok.loc[ok[metric].idxmax()]
    return {**row.to_dict(), "set": json.loads(row["params"])}


def summary(report: "pd.DataFrame", metric: str = "sharpe") -> dict[str, float]:
    """Mean in- and out-of-sample metric, mean gap, and out/in efficiency (1.0: no decay)."""
    is_mean, oos_mean = float(report[f"is_{metric}"].mean()), float(report[f"oos_{metric}"].mean())
    return {f"is_{metric}": is_mean, f"oos_{metric}": oos_mean, "gap": is_mean - oos_mean,
            "efficiency": oos_mean / is_mean if is_mean else float("nan"), "windows": len(report)}


def _defaults() -> "Params":
    from tradebook.params import Params

    return Params()


def _default_db(params: "Params | None") -> Path:
    from tradebook.research.sweep import DEFAULT_DB

    return (params or _defaults()).runs_path(_root()) / DEFAULT_DB
