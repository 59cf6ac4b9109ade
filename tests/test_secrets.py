"""OPS-6: the Alpaca keys never show up in logs, exception text/reprs/tracebacks or params dumps.

Fake keys are set in the environment, the adapter runs successful and failing calls against
the loopback fake with every logger at DEBUG (urllib3 included), and everything captured is
scanned for the key values. (The scan of a whole demo's ``runs/`` tree comes with the demo.)
"""
from __future__ import annotations

import json
import logging
import traceback
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tradebook.broker.alpaca.broker import AlpacaBroker
from tradebook.testing.alpaca_fake.server import FakeAlpacaServer
from tradebook.broker.base import OrderRequest
from tradebook.errors import TradebookError

KEY_ID = "PKTESTSECRETKEY123456"
SECRET = "SKTESTSECRETVALUE9876543210abcdef"
NY = ZoneInfo("America/New_York")


def _texts(exc: BaseException) -> list[str]:
    """str, repr, args and the full formatted traceback (with its chain) of an exception."""
    return [str(exc), repr(exc), *map(str, exc.args), "".join(traceback.format_exception(exc))]


def _chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _run_failing_calls(broker: AlpacaBroker, fake: FakeAlpacaServer) -> list[BaseException]:
    """A few calls that fail in different ways; returns the typed errors they raised."""
    errors: list[BaseException] = []
    scripted = [("http_500", "/v2/account", broker.account), ("http_429", "/v2/clock", broker.clock),
                ("latency", "/v2/positions", broker.positions), ("http_503", "/v2/stocks/snapshots",
                                                                 lambda: broker.quotes(["AAPL"]))]
    for kind, path, fn in scripted:
        fake.inject(kind, times=5, path=path, seconds=0.5)
        with pytest.raises(TradebookError) as info:
            fn()
        errors.append(info.value)
    fake.inject("reject_buying_power")
    with pytest.raises(TradebookError) as info:
        broker.submit(OrderRequest("AAPL", "buy", Decimal(1), "secret-scan-2", "market"))
    errors.append(info.value)
    with pytest.raises(TradebookError) as info:
        broker.asset("NOPE")
    errors.append(info.value)
    return errors


def test_ops6_when_adapter_runs_and_fails_then_keys_nowhere(monkeypatch, make_params, caplog):
    """OPS-6: logs (DEBUG, all loggers), errors (text, repr, traceback, chain) and params dumps."""
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with FakeAlpacaServer(start=datetime(2011, 7, 6, 10, 0, tzinfo=NY)) as fake:
        params = make_params(mode="paper", **{"alpaca.url_override": fake.url, "alpaca.data_url_override": fake.url,
                                               "alpaca.timeout_s": 0.2, "alpaca.retries": 1, "alpaca.backoff_s": 0,
                                               "alpaca.max_backoff_s": 0})
        broker = AlpacaBroker.from_params(params, on_circuit_open=lambda reason: logging.getLogger(
            "tradebook.test").error("breaker: %s", reason))
        broker.account()
        broker.submit(OrderRequest("AAPL", "buy", Decimal("1.5"), "secret-scan-1", "market"))
        broker.validate_fractional(["AAPL"])
        errors = _run_failing_calls(broker, fake)
        with FakeAlpacaServer(key_id="PKSOMEONEELSE", secret_key="SKSOMEONEELSE") as strict:
            other = AlpacaBroker.from_params(make_params(mode="paper", **{"alpaca.url_override": strict.url}))
            with pytest.raises(TradebookError) as refused:
                other.account()
            errors.append(refused.value)
        monkeypatch.delenv("APCA_API_SECRET_KEY")
        with pytest.raises(TradebookError) as missing:
            AlpacaBroker.from_params(params)
        errors.append(missing.value)
        monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
        with pytest.raises(TradebookError) as live:
            AlpacaBroker.from_params(make_params(mode="live"))
        errors.append(live.value)

    assert broker.circuit_open, "the failing calls should have opened the breaker (and logged it)"
    haystack = [caplog.text, *(r.getMessage() for r in caplog.records), repr(broker), repr(fake),
                json.dumps(params.as_dict()), str(broker.breaker.status())]
    for error in errors:
        for link in _chain(error):
            assert type(link).__module__.startswith("tradebook"), f"SDK exception attached: {type(link)}"
            haystack += _texts(link)
    found = [text for text in haystack if KEY_ID in text or SECRET in text]
    assert found == []
    assert "urllib3" in caplog.text or "fake alpaca" in caplog.text, "DEBUG capture did not see HTTP logs"
    assert len(errors) == 9
