"""DATA-1: `tradebook data fetch` through the Alpaca adapter into a local Parquet store (against the
Alpaca fake's bars endpoint), `data check`, and the backtest and SimBroker replaying stored symbols."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from tradebook.research import backtest
from tradebook import marketdata
from tradebook.testing.alpaca_fake.server import FakeAlpacaServer
from tradebook.params import Params
from tradebook.marketdata import store as datastore
from tradebook.marketdata.store import DataStoreError
from tradebook.sessions import sessions
from support.trading import make_ctx, ny, stored_intents

KEYS = {"APCA_API_KEY_ID": "PKTESTDATASTORE0000000", "APCA_API_SECRET_KEY": "SKTESTDATASTORE00000000000000000000000000"}


@pytest.fixture
def fake():
    with FakeAlpacaServer(start=date(2011, 7, 26)) as server:
        yield server


def cli(root: Path, fake: FakeAlpacaServer, *args: str) -> subprocess.CompletedProcess:
    overrides = [f"-p{k}={v}" for k, v in fake.overrides().items()]
    return subprocess.run([sys.executable, "-m", "tradebook.cli", *args, *overrides], cwd=root, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TRADEBOOK_ROOT": str(root), **KEYS})


@pytest.mark.integration
def test_data1_when_fetching_from_the_alpaca_fake_then_store_is_complete_and_fetch_is_incremental(root, fake):
    """DATA-1 end to end: the CLI pulls daily bars through the adapter from the fake's bars endpoint
    into <root>/data/bars/*.parquet; a second fetch adds only the new days; data check is clean."""
    out = cli(root, fake, "data", "fetch", "--symbols", "AAPL,MSFT", "--start", "2011-01-03", "--end", "2011-03-31")
    assert out.returncode == 0, out.stderr
    expected = len(sessions(date(2011, 1, 3), date(2011, 3, 31)))
    assert f"AAPL: {expected} new bar(s)" in out.stdout and "ok" in out.stdout
    folder = root / "data" / "bars"
    first = datastore.read_symbol(folder, "AAPL")
    bundled = marketdata.load_bars(["AAPL"]).set_index("date")
    assert first["close"].tolist() == pytest.approx(bundled.loc[first["date"], "close"].tolist(), rel=1e-5)  # the wire rounds
    out = cli(root, fake, "data", "fetch", "--symbols", "AAPL", "--start", "2011-01-03", "--end", "2011-06-30")
    assert out.returncode == 0, out.stderr
    assert f"AAPL: {len(sessions(date(2011, 4, 1), date(2011, 6, 30)))} new bar(s)" in out.stdout
    again = datastore.read_symbol(folder, "AAPL")
    assert again.iloc[:len(first)].equals(first) and again["date"].is_unique
    check = cli(root, fake, "data", "check")
    assert check.returncode == 0 and "AAPL: " in check.stdout and "MSFT: " in check.stdout


def test_data1_when_fetch_asked_in_sim_mode_then_clear_error(root):
    out = subprocess.run([sys.executable, "-m", "tradebook.cli", "data", "fetch", "--symbols", "AAPL", "--start",
                          "2011-01-03"], cwd=root, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "TRADEBOOK_ROOT": str(root)})
    assert out.returncode == 2 and "data fetch pulls bars from Alpaca" in out.stderr and "Traceback" not in out.stderr


def _store_symbol(root: Path, symbol: str, source: str = "MSFT", drop: int | None = None) -> Path:
    """A stored symbol made of real bundled bars (renamed), optionally with one session missing."""
    frame = marketdata.load_bars([source]).copy()
    frame["symbol"] = symbol
    if drop is not None:
        frame = frame.drop(frame.index[drop])
    return datastore.write_symbol(root / "data" / "bars", symbol, frame)


def test_data1_when_backtesting_a_stored_symbol_then_the_store_is_replayed(root):
    """DATA-1: the backtest replays any symbol in the store (here one the bundle does not have)."""
    _store_symbol(root, "XYZ")
    params = Params.model_validate({"symbols": ["XYZ"], "sim": {"fractionable": []}})
    result = backtest.run_backtest(params, root=root, start=date(2010, 1, 1), end=date(2011, 12, 30), use_gate=False)
    assert len(result.fills) > 0 and set(result.fills["symbol"]) == {"XYZ"}


def test_data1_when_simbroker_runs_on_a_stored_symbol_then_decide_sees_its_bars(root):
    """DATA-1: SimBroker replays a stored symbol: its daily bars and quotes come from the store."""
    _store_symbol(root, "XYZ")
    ctx = make_ctx(root, symbols=["XYZ"], **{"sim.fractionable": []})
    ctx.broker.advance_to(ny(date(2011, 7, 28), 16, 15))
    bars = ctx.broker.daily_bars(["XYZ"], date(2011, 7, 1), date(2011, 7, 28))
    msft = marketdata.load_bars(["MSFT"])
    want = msft[(msft["date"] >= date(2011, 7, 1)) & (msft["date"] <= date(2011, 7, 28))]
    assert bars["close"].tolist() == pytest.approx(want["close"].tolist())
    from tradebook.phases.decide import run_decide

    run_decide(ctx)   # runs on the stored bars without an error


@pytest.mark.parametrize("damage", ["gap", "corrupt", "absurd"])
def test_data1_when_the_store_is_gapped_or_corrupt_then_clear_error_and_nothing_traded(root, damage):
    """DATA-1: a gapped, corrupt or absurd store is an error naming the file; the backtest and decide trade nothing."""
    path = _store_symbol(root, "XYZ", drop=3000 if damage == "gap" else None)
    if damage == "corrupt":
        path.write_bytes(b"PAR1 this is not parquet")
    if damage == "absurd":
        frame = datastore.read_symbol(path.parent, "XYZ")
        frame.loc[2500, ["open", "high", "low", "close"]] = [-1.0, -1.0, -1.0, -1.0]
        datastore.write_symbol(path.parent, "XYZ", frame)
    message = {"gap": "1 session(s) missing against the XNYS calendar", "corrupt": "not a readable Parquet file",
               "absurd": "non-positive or missing price"}[damage]
    assert message in " ".join(datastore.check(path.parent).problems["XYZ"])
    params = Params.model_validate({"symbols": ["XYZ"]})
    with pytest.raises(DataStoreError, match=re.escape(message)):
        backtest.run_backtest(params, root=root)
    ctx = make_ctx(root, symbols=["XYZ"])
    ctx.broker.advance_to(ny(date(2011, 7, 28), 16, 15))
    from tradebook.phases.decide import run_decide
    from tradebook.errors import TradebookError

    with pytest.raises(TradebookError, match=re.escape(message)):
        run_decide(ctx)
    assert stored_intents(ctx.ledger) == []


@pytest.mark.integration
def test_data1_fetch_when_source_has_no_bars_for_symbol_then_clear_error_and_no_empty_file(root, fake):
    """DATA-1: a symbol the source does not serve (the fake knows only the bundled four) fails the
    fetch (exit 1) with a message naming it; no empty Parquet file is left to fail every later check,
    and no placeholder dates (0001-01-01) are printed."""
    out = cli(root, fake, "data", "fetch", "--symbols", "ZZZQ,AAPL", "--start", "2011-01-03", "--end", "2011-01-31")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "ZZZQ: the data source returned no bars" in out.stderr and "ZZZQ: no bars stored" in out.stdout
    assert "0001-01-01" not in out.stdout + out.stderr and "Traceback" not in out.stderr
    assert not (root / "data" / "bars" / "ZZZQ.parquet").exists()
    assert (root / "data" / "bars" / "AAPL.parquet").exists()


def test_data1_check_when_a_stored_file_has_no_bars_then_names_it_and_what_to_do(root):
    """DATA-1: an empty Parquet file (left by an older fetch of an unknown symbol) fails the check
    with its path and the fix, not a bare "no bars" dated 0001-01-01."""
    import pandas as pd

    folder = root / "data" / "bars"
    datastore.write_symbol(folder, "SPY", pd.DataFrame(columns=datastore.COLUMNS))
    report = datastore.check(folder)
    assert not report.ok
    (line,) = report.lines()
    assert line.startswith("SPY: no bars stored (") and "SPY.parquet is empty" in line and "delete the file" in line
    assert "0001-01-01" not in line
