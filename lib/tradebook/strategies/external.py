"""External signals (``use: external_signals``): files of symbol, confidence, generated_at (seed 001).

Drop CSV or Parquet files into ``folder`` (relative to the project root), columns
``symbol``, ``confidence`` (0..1) and ``generated_at`` (ISO timestamp; UTC when it
has no zone). At each decision close the newest signal per symbol generated at or
before the close counts, if it is fresh: GATE-7 freshness, at most ``max_age_hours``
old (default ``None``: the params' ``max_signal_age_hours`` applies via the
strategy's own field of the same default, 24 h). Signals from the future are never
used, so a backtest over the files has no look-ahead. Entry: confidence > 0; the
decide phase then applies ``signal_threshold`` (LOW_CONFIDENCE rejection, POS-1).
Exit: a held symbol whose fresh signal is below ``exit_below`` (off when None).
A file without the three columns, or with a confidence outside [0, 1], is a
StrategyError naming the file: nothing is traded that session.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Mapping
from zoneinfo import ZoneInfo

from pydantic import Field

from tradebook.strategies.base import (EntrySignal, ExitSignal, Held, Signals, Strategy,
                                                StrategyError, StrategyParams)

if TYPE_CHECKING:
    import pandas as pd

NY = ZoneInfo("America/New_York")
REQUIRED = ("symbol", "confidence", "generated_at")


class ExternalSignalParams(StrategyParams):
    folder: str = "signals"                       # relative to the project root
    max_age_hours: float = Field(24.0, gt=0)      # GATE-7: older signals are stale
    exit_below: float | None = Field(None, ge=0, le=1)


class ExternalSignals(Strategy):
    """Trade the confidences other tools write into a folder."""

    Params = ExternalSignalParams
    params: ExternalSignalParams

    def history_days(self) -> int:
        return 1

    def folder(self) -> Path:
        path = Path(self.params.folder)
        root = getattr(self, "root", None)
        return path if path.is_absolute() or root is None else Path(root) / path

    def read(self) -> "pd.DataFrame":
        """Every signal in the folder: symbol, confidence, generated_at (UTC), file."""
        import pandas as pd

        frames = [_read_file(p, self.label) for p in sorted(self.folder().glob("*"))
                  if p.suffix.lower() in (".csv", ".parquet")]
        if not frames:
            return pd.DataFrame(columns=[*REQUIRED, "file"])
        return pd.concat(frames, ignore_index=True)

    def generate(self, bars: "pd.DataFrame", held: Mapping[str, Held]) -> Signals:
        import pandas as pd

        signals = self.read()
        entries: list = []
        exits: list = []
        if not len(bars) or not len(signals):
            return Signals(entries, exits)
        last = bars.groupby("symbol", sort=True).tail(1)
        for row in last.itertuples(index=False):
            decided = datetime.combine(row.date, time(16, 0), NY)
            oldest = decided - timedelta(hours=self.params.max_age_hours)
            mine = signals[(signals["symbol"] == row.symbol) & (signals["generated_at"] <= pd.Timestamp(decided))
                           & (signals["generated_at"] >= pd.Timestamp(oldest))]
            if not len(mine):
                continue
            s = mine.sort_values("generated_at").iloc[-1]
            what = f"confidence {s.confidence:.2f} from {s.file} at {s.generated_at:%Y-%m-%d %H:%M}Z"
            if row.symbol in held:
                if self.params.exit_below is not None and s.confidence < self.params.exit_below:
                    exits.append(ExitSignal(row.symbol, f"SIGNAL_EXIT: {what} < {self.params.exit_below:g}",
                                            float(row.close), asof=row.date))
                    continue
            if s.confidence > 0:
                entries.append(EntrySignal(row.symbol, float(s.confidence), float(row.close), f"SIGNAL: {what}",
                                           row.date))
        entries.sort(key=lambda e: (-e.confidence, e.symbol))
        return Signals(entries, exits)


def _read_file(path: Path, label: str) -> "pd.DataFrame":
    import duckdb
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path)
        else:
            frame = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").df()
    except Exception as exc:
        raise StrategyError(f"strategy {label}: signal file {path} cannot be read: {exc}", strategy=label) from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise StrategyError(f"strategy {label}: signal file {path} lacks column(s) {', '.join(missing)} "
                            f"(needs {', '.join(REQUIRED)})", strategy=label)
    frame = frame[list(REQUIRED)].copy()
    frame["symbol"] = frame["symbol"].astype(str).str.upper()
    try:
        frame["confidence"] = pd.to_numeric(frame["confidence"], errors="raise").astype(float)
        frame["generated_at"] = pd.to_datetime(frame["generated_at"], utc=True, format="ISO8601")  # naive = UTC
    except Exception as exc:
        raise StrategyError(f"strategy {label}: signal file {path} has a bad confidence or generated_at: {exc}",
                            strategy=label) from None
    bad = frame[~frame["confidence"].between(0.0, 1.0)]
    if len(bad):
        raise StrategyError(f"strategy {label}, symbol {bad['symbol'].iloc[0]}: signal file {path} has confidence "
                            f"{bad['confidence'].iloc[0]!r} outside [0, 1]", strategy=label, symbol=bad['symbol'].iloc[0])
    frame["file"] = path.name
    return frame
