"""The strategy interface and built-ins (STR-1, STR-2): chosen in params, validated, failing safely."""
from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradebook.research import backtest
from tradebook.errors import ConfigError
from tradebook.ledger import events
from tradebook.marketdata import load_bars
from tradebook.params import Params, load_params
from tradebook.research import Held, StrategyError
from tradebook.strategies.base import call_strategy
from tradebook.strategies.loader import build, load_strategy
from support.trading import make_ctx, ny, stored_intents

RAISES_EVERYWHERE = '''
from tradebook.research import Signals, Strategy

class Raises(Strategy):
    def generate(self, bars, held):
        return 1 / 0

class Sometimes(Strategy):
    def generate(self, bars, held):
        if bars["date"].iloc[-1].day == 3:
            raise ValueError("bad third of the month")
        return Signals([], [])
'''

BROKEN = '''
from tradebook.research import EntrySignal, Signals, Strategy, StrategyParams

class Raises(Strategy):
    def generate(self, bars, held):
        if "IBM" in set(bars["symbol"]):
            raise ZeroDivisionError("division by zero in my indicator")
        return Signals([], [])

class Garbage(Strategy):
    def generate(self, bars, held):
        last = bars.groupby("symbol").tail(1)
        return Signals([EntrySignal(s, 1.7, float(c), "too sure", d) for s, c, d in
                        zip(last["symbol"], last["close"], last["date"]) if s == "MSFT"], [])

class NotSignals(Strategy):
    def generate(self, bars, held):
        return {"AAPL": 0.5}
'''

ALWAYS = '''
from pydantic import Field
from tradebook.research import EntrySignal, Signals, Strategy, StrategyParams

class BuyFirst(Strategy):
    """Buys the params' first symbol on every close while flat: a strategy that surely trades."""
    class Params(StrategyParams):
        symbol: str = "MSFT"
        confidence: float = Field(0.8, ge=0, le=1)

    def history_days(self):
        return 5

    def generate(self, bars, held):
        last = bars[bars["symbol"] == self.params.symbol].tail(1)
        if self.params.symbol in held or not len(last):
            return Signals([], [])
        row = last.iloc[0]
        return Signals([EntrySignal(self.params.symbol, self.params.confidence, float(row.close),
                                    "ALWAYS: buy when flat", row.date)], [])
'''


def _project(root: Path, **files: str) -> Path:
    folder = root / "strategies"
    folder.mkdir(exist_ok=True)
    (folder / "__init__.py").write_text("")
    for name, text in files.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
    return root


def test_str1_when_user_strategy_in_strategies_folder_then_backtest_and_decide_call_it(root):
    """STR-1: a strategy in <project>/strategies/ runs in the backtest and in decide, lib/ untouched."""
    _project(root, always=ALWAYS)
    ctx = make_ctx(root, **{"strategy.use": "strategies.always:BuyFirst", "strategy.params": {"symbol": "IBM"}})
    result = backtest.run_backtest(ctx.params, root=root, start=date(2011, 7, 1), end=date(2011, 7, 29),
                                   frictions=False)
    assert result.strategy == "strategies.always:BuyFirst"
    assert result.fills["symbol"].tolist() == ["IBM"] and result.fills["reason"].str.contains("ALWAYS").all()
    ctx.broker.advance_to(ny(date(2011, 7, 28), 16, 15))
    from tradebook.phases.decide import run_decide

    report = run_decide(ctx)
    assert [(d.symbol, d.kind, d.approved) for d in report.decisions] == [("IBM", "ENTRY", True)]
    assert "ALWAYS: buy when flat" in report.decisions[0].reason


def test_str1_when_strategy_params_have_unknown_key_then_refused_naming_it(root):
    """STR-1: strategy params are validated by the strategy's own model; unknown keys refused."""
    with pytest.raises(ConfigError, match=r"strategy\.params\.trend_smaa: unknown key"):
        load_params(root / "params" / "sim.yaml", {"strategy.params": {"trend_smaa": 50}})
    _project(root, always=ALWAYS)
    choice = Params.model_validate({"strategy": {"use": "strategies.always:BuyFirst",
                                                 "params": {"symbl": "IBM"}}}).strategy
    with pytest.raises(StrategyError, match=r"strategies\.always:BuyFirst.*\n.*strategy\.params\.symbl: unknown key"):
        load_strategy(choice, root)


def test_str1_when_swing_params_contradict_then_params_refused():
    with pytest.raises(ValueError, match="fast_sma must be shorter than trend_sma"):
        Params.model_validate({"strategy": {"params": {"fast_sma": 120, "trend_sma": 100}}})


@pytest.mark.parametrize("use, message", [
    ("strategies.nothere:X", r"strategy strategies\.nothere:X cannot be loaded: ModuleNotFoundError"),
    ("strategies.broken:Missing", r"strategy strategies\.broken:Missing cannot be loaded: AttributeError"),
    ("not a path", r"neither a built-in"),
])
def test_str1_when_strategy_cannot_load_then_error_names_it(root, use, message):
    _project(root, broken=BROKEN)
    with pytest.raises((StrategyError, ValueError), match=message):
        load_strategy(Params.model_validate({"strategy": {"use": use}}).strategy, root)


def test_str1_when_strategy_raises_then_error_names_strategy_and_symbol(root):
    """STR-1: an exception inside generate names the strategy and the symbol that breaks it."""
    _project(root, broken=BROKEN)
    strategy = build("strategies.broken:Raises", {}, root)
    bars = load_bars(["AAPL", "IBM", "MSFT"])
    with pytest.raises(StrategyError, match=r"strategies\.broken:Raises, symbol IBM raised ZeroDivisionError"):
        call_strategy(strategy, bars, {})


@pytest.mark.parametrize("cls, message", [
    ("Garbage", r"strategies\.broken:Garbage, symbol MSFT: malformed entry signal: confidence must be"),
    ("NotSignals", r"strategies\.broken:NotSignals returned dict, not Signals"),
])
def test_str1_when_strategy_returns_malformed_signals_then_error_names_it(root, cls, message):
    _project(root, broken=BROKEN)
    with pytest.raises(StrategyError, match=message):
        call_strategy(build(f"strategies.broken:{cls}", {}, root), load_bars(["AAPL", "MSFT"]), {})


def test_str1_when_strategy_raises_in_decide_then_nothing_planned_and_error_recorded(root):
    """STR-1: decide with a failing strategy plans no intent, records STRATEGY_ERROR and fails the run."""
    _project(root, broken=BROKEN)
    ctx = make_ctx(root, **{"strategy.use": "strategies.broken:Raises"})
    ctx.broker.advance_to(ny(date(2011, 7, 28), 16, 15))
    from tradebook.phases.decide import run_decide

    with pytest.raises(StrategyError, match="symbol IBM"):
        run_decide(ctx)
    assert stored_intents(ctx.ledger) == []
    assert [e.symbol for e in ctx.ledger.read(events.find, "STRATEGY_ERROR")] == ["IBM"]


def test_str1_when_strategy_raises_in_backtest_then_those_sessions_trade_nothing(root):
    _project(root, broken=BROKEN)
    params = Params.model_validate({"strategy": {"use": "strategies.broken:Raises"}})
    result = backtest.run_backtest(params, root=root, symbols=["IBM"], start=date(2011, 7, 1),
                                   end=date(2011, 7, 15))
    assert len(result.fills) == 0 and len(result.strategy_errors) == 10
    assert "symbol IBM raised ZeroDivisionError" in result.strategy_errors[0][1]


def test_str2_when_sma_cross_strategy_then_signals_are_the_parity_reference_crossings():
    """STR-2: the sma_cross built-in signals exactly the backtrader-parity crossings on each day."""
    strategy = build("sma_cross", {"fast": 20, "slow": 50})
    bars = load_bars(["MSFT"])
    up, down = backtest.crossings(bars["close"].to_numpy(), 20, 50)
    days = bars["date"].tolist()
    for i in [*np.flatnonzero(up)[:6], *np.flatnonzero(down)[:6], 400, 401]:
        window = bars.iloc[max(0, i - strategy.history_days()):i + 1]
        held = {"MSFT": Held(100, 30.0, None)} if down[i] else {}
        signals = call_strategy(strategy, window, held)
        assert (len(signals.entries), len(signals.exits)) == (int(up[i]), int(down[i])), days[i]


def _signal_file(root: Path, rows: list[tuple], name: str = "model_a.csv") -> None:
    folder = root / "signals"
    folder.mkdir(exist_ok=True)
    pd.DataFrame(rows, columns=["symbol", "confidence", "generated_at"]).to_csv(folder / name, index=False)


def test_str2_gate7_when_external_signal_files_then_fresh_signals_enter_and_stale_ones_do_not(root):
    """STR-2 / GATE-7: the newest signal per symbol generated before the close and within max_age_hours."""
    _signal_file(root, [("AAPL", 0.15, "2011-07-28T14:00:00Z"),      # fresh: enters
                        ("IBM", 0.9, "2011-07-26T14:00:00Z"),        # two days old: stale
                        ("MSFT", 0.7, "2011-07-29T14:00:00Z"),       # tomorrow: never look ahead
                        ("GOOG", 0.05, "2011-07-28T15:00:00-04:00")])  # fresh, below signal_threshold
    strategy = build("external_signals", {}, root)
    bars = load_bars(["AAPL", "GOOG", "IBM", "MSFT"])
    signals = call_strategy(strategy, bars[bars["date"] <= date(2011, 7, 28)], {})
    assert [(e.symbol, e.confidence) for e in signals.entries] == [("AAPL", 0.15), ("GOOG", 0.05)]
    assert "model_a.csv" in signals.entries[0].reason
    ctx = make_ctx(root, **{"strategy.use": "external_signals"})
    ctx.broker.advance_to(ny(date(2011, 7, 28), 16, 15))
    from tradebook.phases.decide import run_decide

    report = run_decide(ctx)
    assert {(d.symbol, d.approved, d.code) for d in report.decisions} >= {("AAPL", True, "NEW_POSITION"),
                                                                          ("GOOG", False, "LOW_CONFIDENCE")}


def test_str2_when_external_signal_file_is_malformed_then_error_names_file(root):
    (root / "signals").mkdir()
    (root / "signals" / "bad.csv").write_text("ticker,score\nAAPL,0.3\n")
    with pytest.raises(StrategyError, match=r"signal file .*bad\.csv lacks column\(s\) symbol, confidence"):
        call_strategy(build("external_signals", {}, root), load_bars(["AAPL"]), {})


@pytest.mark.integration
def test_str1_when_tradebook_backtest_names_a_user_strategy_then_it_runs_and_a_broken_one_is_one_clear_line(root):
    """STR-1 through the CLI: `tradebook backtest -p strategy.use=strategies.<file>:<Class>`."""
    import os
    import subprocess
    import sys

    _project(root, always=ALWAYS)

    def tradebook(*args):
        return subprocess.run([sys.executable, "-m", "tradebook.cli", "backtest", *args], cwd=root, text=True,
                              capture_output=True, timeout=120, env={**os.environ, "TRADEBOOK_ROOT": str(root)})

    out = tradebook("-p", "strategy.use=strategies.always:BuyFirst", "--start", "2011-07-01", "--end", "2011-07-29")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("strategy strategies.always:BuyFirst: 2011-07-01") and "1 fills" in out.stdout
    bad = tradebook("-p", "strategy.use=strategies.missing:Nope")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "strategy strategies.missing:Nope cannot be loaded" in bad.stderr


def test_res1_when_strategy_keeps_no_indicator_table_then_signals_plot_shows_close_and_fills():
    """RES-1 / STR-1: `result.show("signals", ...)` works for any strategy (old code: ValueError
    "this result has no indicator table"); a symbol the backtest has no bars for is named."""
    import matplotlib

    matplotlib.use("Agg")
    from tradebook.research import figures

    result = backtest.run_backtest(Params(symbols=["AAPL", "MSFT"]), strategy=build("sma_cross", {"fast": 10, "slow": 30}),
                                   start=date(2011, 1, 3), end=date(2011, 12, 30))
    assert result.indicators is None and len(result.fills)
    fig = figures.signals_figure(result, "AAPL", 2011)
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and [line.get_label() for line in ax.get_lines()] == ["close"]
    markers = sum(len(c.get_offsets()) for c in ax.collections)
    assert markers == int(((result.fills["symbol"] == "AAPL")
                           & (pd.to_datetime(result.fills["date"]).dt.year == 2011)).sum()) > 0
    with pytest.raises(ValueError, match="no bars for 'GOOG'.*AAPL, MSFT"):
        figures.signals_figure(result, "GOOG", 2011)


def test_str1_when_generate_raises_on_every_symbol_then_error_says_the_call_not_a_symbol(root):
    """STR-1: a generate() that raises whatever the bars is reported as raising for the whole call
    (old code: "symbol AAPL raised ZeroDivisionError", naming the first symbol tried)."""
    _project(root, buggy=RAISES_EVERYWHERE)
    with pytest.raises(StrategyError, match=r"strategies\.buggy:Raises raised ZeroDivisionError for the whole call") as err:
        call_strategy(build("strategies.buggy:Raises", {}, root), load_bars(["AAPL", "MSFT"]), {})
    assert err.value.symbol is None and "symbol AAPL" not in str(err.value)


@pytest.mark.integration
def test_bt1_when_strategy_fails_on_sessions_then_cli_says_so_first_and_exits_1(root):
    """STR-1 / BT-1: `tradebook backtest` with a strategy that failed says so on its first line and
    exits 1; on every session it prints no all-zero table (old code: "+0.0%" table, the failure
    line last, exit 0)."""
    import os
    import subprocess
    import sys

    _project(root, buggy=RAISES_EVERYWHERE)

    def tradebook(use):
        return subprocess.run([sys.executable, "-m", "tradebook.cli", "backtest", "-p", f"strategy.use={use}",
                               "--start", "2011-01-01", "--end", "2011-02-28"], cwd=root, text=True,
                              capture_output=True, timeout=120, env={**os.environ, "TRADEBOOK_ROOT": str(root)})

    every = tradebook("strategies.buggy:Raises")
    assert every.returncode == 1 and every.stdout == ""
    assert every.stderr.startswith("error: the strategy failed on every session (39 of 39)"), every.stderr
    some = tradebook("strategies.buggy:Sometimes")   # 2011-01-03 and 2011-02-03
    assert some.returncode == 1 and some.stderr.startswith("error: the strategy failed on 2 of 39 sessions")
    assert some.stdout.startswith("strategy strategies.buggy:Sometimes: 2011-01-03")


def test_bt1_when_strategy_fails_on_some_sessions_then_notebook_summary_says_so_first(root, monkeypatch):
    """STR-1 / BT-1: the research notebook's summary section opens with the strategy's failures,
    as the CLI does (old code: the statistics only, `result.strategy_errors` unseen)."""
    import IPython.display

    _project(root, buggy=RAISES_EVERYWHERE)
    params = Params.model_validate({"strategy": {"use": "strategies.buggy:Sometimes"}})
    result = backtest.run_backtest(params, root=root, start=date(2011, 1, 1), end=date(2011, 2, 28))
    shown: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    result.show("summary")
    assert not result.failed_everywhere
    assert shown[0].data.startswith("**Strategy failed:** the strategy failed on 2 of 39 sessions")
    assert "First, 2011-01-03:" in shown[0].data and "bad third of the month" in shown[0].data
