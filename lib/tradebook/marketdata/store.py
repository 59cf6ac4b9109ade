"""The local market data store (DATA-1): adjusted daily bars, one Parquet file per symbol.

``fetch`` pulls bars through the broker adapter (Alpaca: paged, split- and
dividend-adjusted, the feed the params choose) into ``<root>/<params.data.store_dir>``,
outside the ledger, incrementally (only days after the last stored one). ``check``
reports gaps against the XNYS calendar, duplicate days and non-positive or absurd
prices. ``load_bars_any`` is what the backtest and SimBroker replay: stored symbols
from the store (checked: a corrupt or gapped store is an error, nothing is traded),
the bundled sample for the rest. Parquet goes through DuckDB (no pyarrow needed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebook.errors import ConfigError, TradebookError

if TYPE_CHECKING:
    import pandas as pd

    from tradebook.params import Params

COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume"]
MAX_DAILY_MOVE = 0.75    # a close 75% away from the previous one is a data error, not a market


class DataStoreError(TradebookError):
    """The store is missing a symbol, or its data failed the checks: nothing is replayed from it."""


@dataclass
class CheckReport:
    """Problems per symbol (empty: clean) and the span each symbol covers."""

    problems: dict[str, list[str]] = field(default_factory=dict)
    spans: dict[str, tuple[date, date, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def lines(self) -> list[str]:
        out = []
        for symbol, (first, last, n) in sorted(self.spans.items()):
            issues = self.problems.get(symbol) or []
            if not n:  # nothing stored: no span to show (date.min would read as 0001-01-01)
                out.append(f"{symbol}: " + "; ".join(issues or ["no bars"]))
                continue
            out.append(f"{symbol}: {n} bars {first} → {last}: " + ("ok" if not issues else "; ".join(issues)))
        return out


def store_dir(params: "Params", root: Path | None = None) -> Path:
    path = Path(params.data.store_dir)
    return path if path.is_absolute() or root is None else root / path


def symbol_file(folder: Path, symbol: str) -> Path:
    if not symbol.replace(".", "").replace("-", "").isalnum():
        raise ConfigError(f"{symbol!r} is not a ticker symbol")
    return folder / f"{symbol.upper()}.parquet"


def read_symbol(folder: Path, symbol: str) -> "pd.DataFrame":
    """One symbol's stored bars (COLUMNS, sorted by date); empty if never fetched."""
    import duckdb
    import pandas as pd

    path = symbol_file(folder, symbol)
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    try:
        frame = duckdb.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY date").df()
    except duckdb.Error as exc:
        raise DataStoreError(f"{path} is not a readable Parquet file ({exc}); delete it and run "
                             f"`tradebook data fetch --symbols {symbol} ...` again") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataStoreError(f"{path} lacks columns {', '.join(missing)}; fetch {symbol} again")
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    return frame[COLUMNS]


def write_symbol(folder: Path, symbol: str, frame: "pd.DataFrame") -> Path:
    """Replace a symbol's file atomically (temp file, then rename): a crash never leaves half a file."""
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    path = symbol_file(folder, symbol)
    tmp = path.with_suffix(".parquet.tmp")
    con = duckdb.connect()
    try:
        con.register("bars", frame[COLUMNS])
        con.execute(f"COPY (SELECT symbol, CAST(date AS DATE) AS date, open, high, low, close, volume FROM bars "
                    f"ORDER BY date) TO '{tmp}' (FORMAT parquet)")
    finally:
        con.close()
    os.replace(tmp, path)
    return path


def fetch(broker: Any, folder: Path, symbols: list[str], start: date, end: date) -> dict[str, int]:
    """Fetch [start, end] for each symbol, only days after the last stored one; new bars per symbol."""
    import pandas as pd

    added = {}
    for symbol in symbols:
        have = read_symbol(folder, symbol)
        lo = start
        if len(have) and have["date"].min() <= start:
            lo = max(start, have["date"].max() + timedelta(days=1))
        if lo > end:
            added[symbol] = 0
            continue
        new = broker.daily_bars([symbol], lo, end)
        new = new[new["symbol"] == symbol]
        if not len(have) and not len(new):  # unknown symbol or no data in range: never store an empty file
            added[symbol] = 0
            continue
        merged = pd.concat([have, new[COLUMNS]], ignore_index=True) if len(have) else new[COLUMNS]
        merged = merged.drop_duplicates("date", keep="last").sort_values("date")
        write_symbol(folder, symbol, merged)
        added[symbol] = len(merged) - len(have)
    return added


def stored_symbols(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []


def check_frame(frame: "pd.DataFrame") -> list[str]:
    """Gaps against the XNYS calendar, duplicate days, non-positive or absurd prices in one symbol's bars."""
    import numpy as np

    from tradebook.sessions import sessions

    if not len(frame):
        return ["no bars"]
    problems = []
    dup = frame["date"][frame["date"].duplicated()]
    if len(dup):
        problems.append(f"{len(dup)} duplicate day(s), first {dup.iloc[0]}")
    prices = frame[["open", "high", "low", "close"]].to_numpy(dtype=float)
    bad = ~np.isfinite(prices).all(axis=1) | (prices <= 0).any(axis=1)
    if bad.any():
        problems.append(f"{int(bad.sum())} bar(s) with a non-positive or missing price, first {frame['date'][bad].iloc[0]}")
    o, h, lo, c = prices.T
    inverted = (h < lo) | (c > h * 1.0001) | (c < lo * 0.9999) | (o > h * 1.0001) | (o < lo * 0.9999)
    if inverted.any():
        problems.append(f"{int(inverted.sum())} bar(s) outside their own high/low, first {frame['date'][inverted].iloc[0]}")
    with np.errstate(divide="ignore", invalid="ignore"):
        jump = np.abs(c[1:] / c[:-1] - 1) > MAX_DAILY_MOVE
    if jump.any():
        problems.append(f"{int(jump.sum())} close(s) moving > {MAX_DAILY_MOVE:.0%} in a day, first "
                        f"{frame['date'].iloc[1:][jump].iloc[0]} (unadjusted split?)")
    days = set(frame["date"])
    expected = [s.day for s in sessions(min(days), max(days))]
    missing = [d for d in expected if d not in days]
    if missing:
        problems.append(f"{len(missing)} session(s) missing against the XNYS calendar, first {missing[0]}")
    extra = sorted(days - set(expected))
    if extra:
        problems.append(f"{len(extra)} bar(s) on days the exchange was closed, first {extra[0]}")
    return problems


def check(folder: Path, symbols: list[str] | None = None) -> CheckReport:
    """``check_frame`` for each stored symbol (or those given)."""
    report = CheckReport()
    for symbol in symbols or stored_symbols(folder):
        try:
            frame = read_symbol(folder, symbol)
        except DataStoreError as exc:   # a corrupt file is a finding, not a crash of the check
            report.problems[symbol], report.spans[symbol] = [str(exc)], (date.min, date.min, 0)
            continue
        report.problems[symbol] = check_frame(frame)
        if not len(frame):  # say what to do: a stored empty file fails every check until it is replaced
            path = symbol_file(folder, symbol)
            report.problems[symbol] = [f"no bars stored ({path} is empty): fetch {symbol} again or delete the file"
                                       if path.exists() else f"no bars stored: run `tradebook data fetch --symbols "
                                       f"{symbol} --start ...`"]
        if len(frame):
            report.spans[symbol] = (frame["date"].min(), frame["date"].max(), len(frame))
        else:
            report.spans[symbol] = (date.min, date.min, 0)
    return report


def load_bars_any(symbols: list[str], params: "Params", root: Path | None = None) -> "pd.DataFrame":
    """Bars to replay: stored symbols from the store (they must pass ``check``), bundled ones otherwise."""
    import pandas as pd

    from tradebook import marketdata

    folder = store_dir(params, root)
    stored = set(stored_symbols(folder))
    parts = []
    for symbol in symbols:
        if symbol in stored:
            frame = read_symbol(folder, symbol)
            problems = check_frame(frame)
            if problems:
                raise DataStoreError(f"stored bars for {symbol} ({symbol_file(folder, symbol)}) fail the checks: "
                                     f"{'; '.join(problems)}; fix with `tradebook data fetch` or remove the file")
            parts.append(frame)
        elif symbol in marketdata.AVAILABLE:
            parts.append(marketdata.load_bars([symbol]))
        else:
            raise DataStoreError(f"no bars for {symbol}: not in the store ({folder}) nor the bundled sample "
                                 f"({', '.join(marketdata.AVAILABLE)}); run `tradebook data fetch --symbols {symbol} "
                                 "--start ... --end ...`")
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
