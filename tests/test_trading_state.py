"""One trading-state type for controls and gate; the order path turns an open API circuit into REDUCE_ONLY.

SPEC: CTL-1, CTL-3, GATE-1, EXE-4.
"""
from __future__ import annotations

import pytest

from tradebook.safety import controls, gate
from tradebook.phases.execute import run_execute
from tradebook.phases.reconcile import run_reconcile
from tradebook.safety.state import STATES, TradingState, strictest
from support.trading import (control_rows, decide_time, hold, make_ctx, plant, stored_intents, stored_verdicts,
                             window_time)


def test_strictest_when_states_mixed_then_most_restrictive_member():
    """CTL-1: the effective state is the most restrictive source; plain names compare equal to members."""
    assert strictest(["RUNNING", "FROZEN", "REDUCE_ONLY"]) is TradingState.FROZEN
    assert strictest([]) is TradingState.RUNNING
    assert [s.value for s in STATES] == ["RUNNING", "REDUCE_ONLY", "HALTED", "FROZEN"]
    assert TradingState.REDUCE_ONLY == "REDUCE_ONLY" and not TradingState.REDUCE_ONLY.allows_entries


def test_effective_state_when_frozen_then_controls_and_gate_share_the_enum(ctx):
    """CTL-2/GATE-1: controls reports a TradingState and the gate's context is typed with the same one."""
    controls.freeze(ctx.ledger, "test", actor="t", source="test")
    status = controls.effective_state(ctx.params, ctx.root, ctx.ledger)
    assert status.state is TradingState.FROZEN and not status.allows_exits
    assert gate.GateContext(now=None, params=ctx.params).control_state is TradingState.RUNNING


@pytest.fixture
def circuit_ctx(root, monkeypatch):
    """Decided after the close: exit MSFT (held), enter AAPL; the broker reports an open API circuit."""
    ctx = make_ctx(root)
    ctx.broker.advance_to(decide_time())
    hold(ctx, "MSFT", 100, 25.0)
    plant(ctx, "MSFT", "EXIT", 100)
    plant(ctx, "AAPL", "ENTRY", 10)
    run_reconcile(ctx)  # REC-8: entries need a reconcile covering the session
    ctx.broker.advance_to(window_time())
    # What AlpacaBroker reports while its breaker is open (EXE-4); the venue itself is SimBroker.
    monkeypatch.setattr(ctx.broker, "circuit_open", True, raising=False)
    monkeypatch.setattr(ctx.broker, "breaker", type("B", (), {"reason": "API circuit breaker open: 5 failures"})(),
                        raising=False)
    return ctx


def test_execute_when_adapter_reports_circuit_open_then_order_path_records_reduce_only_and_gate_holds_entries(
        circuit_ctx):
    """EXE-4/CTL-3: the order path records REDUCE_ONLY (source api_breaker); GATE-1 lets the exit out
    and rejects the entry with a recorded verdict; the broker factory writes nothing."""
    ctx = circuit_ctx
    run_execute(ctx)
    status = controls.effective_state(ctx.params, ctx.root, ctx.ledger)
    assert status.state is TradingState.REDUCE_ONLY and "via api_breaker" in " ".join(status.reasons)
    states = {i.symbol: i.state for i in stored_intents(ctx.ledger)}
    assert states == {"MSFT": "FILLED", "AAPL": "REJECTED"}
    codes = {v.reason_code for v in stored_verdicts(ctx.ledger) if v.rule == "GATE-1"}
    assert "REDUCE_ONLY" in codes
    assert [c["source"] for c in control_rows(ctx)].count("api_breaker") == 1


def test_execute_when_the_last_submit_opens_the_circuit_then_reduce_only_recorded_at_once(root, monkeypatch):
    """EXE-4: the failure that opens the API circuit is reported by the adapter (CircuitOpen); the order
    path records REDUCE_ONLY at once, even when no order follows in this run."""
    from tradebook.errors import CircuitOpen

    ctx = make_ctx(root)
    ctx.broker.advance_to(decide_time())
    plant(ctx, "AAPL", "ENTRY", 10)
    run_reconcile(ctx)
    ctx.broker.advance_to(window_time())
    broker, sent = ctx.broker, []

    def failing_submit(request):   # what AlpacaBroker does when this call trips its breaker
        sent.append(request.symbol)
        monkeypatch.setattr(broker, "circuit_open", True, raising=False)
        raise CircuitOpen("API circuit breaker open: 5 failures in 60s; entry not resubmitted")

    monkeypatch.setattr(broker, "submit", failing_submit)
    run_execute(ctx)
    status = controls.effective_state(ctx.params, ctx.root, ctx.ledger)
    assert status.state is TradingState.REDUCE_ONLY and set(sent) == {"AAPL"}   # the same client id only
    assert "via api_breaker" in " ".join(status.reasons)


def _adapter_reporting_circuit_open_once(broker, monkeypatch) -> list[str]:
    """What AlpacaBroker does now (issue 15 item 5): the send whose failure opens the circuit raises CircuitOpen
    (outcome unknown, not at the venue); after that it reports ``circuit_open`` and refuses nothing itself."""
    from tradebook.errors import CircuitOpen

    real_submit, sent = broker.submit, []

    def submit(request):
        sent.append(f"{request.side} {request.symbol} {request.client_order_id}")
        if len(sent) == 1:
            monkeypatch.setattr(broker, "circuit_open", True, raising=False)
            raise CircuitOpen(f"API circuit breaker open: 5 failures in 60s; {request.side} {request.client_order_id} "
                              "not at Alpaca and not resubmitted while the API circuit is open")
        return real_submit(request)

    monkeypatch.setattr(broker, "submit", submit)
    return sent


def test_execute_when_the_circuit_opens_on_an_entry_send_then_the_order_path_holds_it_and_gate_1_refuses_it(
        root, monkeypatch):
    """EXE-4/GATE-1 (issue 15 item 5): the order path, not the adapter, decides that an entry does not leave
    while the API circuit is open: not sent again, REDUCE_ONLY recorded, and the next run (after its look-up)
    refuses it with a GATE-1 REDUCE_ONLY verdict."""
    ctx = make_ctx(root)
    ctx.broker.advance_to(decide_time())
    plant(ctx, "AAPL", "ENTRY", 10)
    run_reconcile(ctx)
    ctx.broker.advance_to(window_time())
    sent = _adapter_reporting_circuit_open_once(ctx.broker, monkeypatch)
    run_execute(ctx)
    assert [s.split()[:2] for s in sent] == [["buy", "AAPL"]]   # sent once; not again by the order path
    assert [i.state for i in stored_intents(ctx.ledger)] == ["SUBMITTED"]   # outcome unknown: looked up next
    assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state is TradingState.REDUCE_ONLY
    run_execute(ctx)
    assert len(sent) == 1 and ctx.broker.open_orders() == [] and ctx.broker.positions() == []
    assert [i.state for i in stored_intents(ctx.ledger)] == ["REJECTED"]
    refused = [v.reason_code for v in stored_verdicts(ctx.ledger) if v.rule == "GATE-1" and v.severity == "reject"]
    assert refused == ["REDUCE_ONLY"]


def test_monitor_when_the_circuit_opens_on_a_stop_exit_send_then_the_order_path_sends_it_again_and_it_gets_out(
        root, monkeypatch):
    """EXE-4/EXIT-4: a breached stop gets out with the API circuit open: the adapter reports CircuitOpen for
    the first send, the order path looks the id up and sends the exit again (same client_order_id), GATE-1
    passes it under REDUCE_ONLY."""
    from tradebook.phases.monitor import run_monitor
    from support.trading import EXEC_DAY, mid, ny

    ctx = make_ctx(root)
    ctx.broker.advance_to(ny(EXEC_DAY, 12))
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.10)   # 9% under water: the 5% stop is breached
    sent = _adapter_reporting_circuit_open_once(ctx.broker, monkeypatch)
    report = run_monitor(ctx)
    assert [(e.code, e.symbol) for e in report.exits] == [("STOP_LOSS", "AAPL")]
    assert len(sent) == 2 and sent[0] == sent[1] and sent[0].startswith("sell AAPL")
    assert [i.state for i in stored_intents(ctx.ledger)] == ["FILLED"] and ctx.broker.positions() == []
    assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state is TradingState.REDUCE_ONLY


@pytest.fixture
def alpaca_ctx(root, monkeypatch):
    """A context whose broker is the real AlpacaBroker against the loopback Alpaca fake at midday; its API
    circuit opens on the first failure."""
    from tradebook.testing.alpaca_fake.server import FakeAlpacaServer
    from support.trading import EXEC_DAY, ny

    monkeypatch.setenv("APCA_API_KEY_ID", "PKCIRCUITTEST0001")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "SKCIRCUITTESTSECRET0001")
    with FakeAlpacaServer(start=ny(EXEC_DAY, 12)) as fake:
        ctx = make_ctx(root, **fake.overrides(), api_breaker_failures=1,
                       **{"alpaca.retries": 2, "alpaca.backoff_s": 0.01, "alpaca.max_backoff_s": 0.02})
        yield ctx, fake


def test_monitor_when_alpaca_circuit_opens_on_the_stop_exit_send_then_it_gets_out_through_the_order_path(
        alpaca_ctx):
    """EXE-4/EXIT-4 against the Alpaca fake: the dropped send of a stop exit opens the API circuit; the adapter
    reports CircuitOpen (looked up, not at Alpaca, not resubmitted by it); the order path sends the exit again
    under the same client_order_id, GATE-1 passes it under REDUCE_ONLY, and the position is closed."""
    from tradebook.ledger import positions as position_store
    from tradebook.ledger import trades as trade_store
    from tradebook.phases.monitor import run_monitor

    ctx, fake = alpaca_ctx
    price = ctx.broker.quotes(["AAPL"])["AAPL"].mid * 1.10   # 9% under water: the 5% stop is breached
    fake.seed_position("AAPL", 10, price)
    now = ctx.now()
    with ctx.ledger.transaction() as con:
        position_store.insert(con, "AAPL", 10, price, "STRATEGY", now, 0.7, None, None, now)
        trade_store.append(con, now, "AAPL", "buy", 10, price, "FILL", None, "test set-up")
    fake.inject("drop_connection", path="/v2/orders", method="POST")
    report = run_monitor(ctx)
    assert [(e.code, e.symbol) for e in report.exits] == [("STOP_LOSS", "AAPL")]
    assert ctx.broker.circuit_open and fake.count("POST", "/v2/orders") == 2
    assert [i.state for i in stored_intents(ctx.ledger)] == ["FILLED"] and ctx.broker.positions() == []
    status = controls.effective_state(ctx.params, ctx.root, ctx.ledger)
    assert status.state is TradingState.REDUCE_ONLY and "via api_breaker" in " ".join(status.reasons)
