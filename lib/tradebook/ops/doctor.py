"""`tradebook doctor`: first contact with a broker account, line by line (issue 14).

Each check says what works and what does not: keys, paper or live, account status, margin,
fractional trading, the asset status of each symbol, which market-data feeds the key may use
for bars and for quotes, and the clock. A check that would stop trading is *blocking* and
makes the command exit non-zero; the rest are information or warnings. Nothing is ordered,
nothing is written to the ledger.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable

from tradebook.errors import BrokerRejected, TradebookError

if TYPE_CHECKING:
    from pathlib import Path

    from tradebook.params import Params

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: str       # ok | warn | FAIL (FAIL: trading would stop)
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<16} {self.detail}"


def run_doctor(params: "Params", root: "Path | None") -> list[Check]:
    """Every first-contact check for the broker ``params`` choose (stops early when nothing more can run)."""
    if params.mode == "sim":
        return _sim_checks(params, root)
    from tradebook.broker import make_broker

    out: list[Check] = []
    try:
        broker: Any = make_broker(params, root, read_only=True)   # an AlpacaBroker: its raw account and URLs are read too
    except TradebookError as exc:
        return [Check("keys and mode", FAIL, str(exc))]
    out.append(Check("keys", OK, "APCA_API_KEY_ID and APCA_API_SECRET_KEY set (values never shown)"))
    out.append(Check("mode", OK, f"{params.mode} · trading {broker.trading_url} · data {broker.data_url}"))
    try:
        account = broker.raw_account()
    except TradebookError as exc:
        return out + [Check("account", FAIL, str(exc))]
    out += _account_checks(account, broker, params)
    out += _asset_checks(broker, params.symbols)
    out += _feed_checks(broker)
    out.append(_clock_check(broker))
    return out


def _sim_checks(params: "Params", root: "Path | None") -> list[Check]:
    from tradebook.broker import make_broker

    broker = make_broker(params, root)
    clock = broker.clock()
    return [Check("mode", OK, "sim: SimBroker replaying bundled daily bars; no keys, no network"),
            Check("clock", OK, f"simulated {clock.now:%Y-%m-%d %H:%M %Z}, market {'open' if clock.is_open else 'closed'}")]


def _account_checks(acct: dict[str, Any], broker: Any, params: "Params") -> list[Check]:
    out = []
    status = str(acct.get("status"))
    blocked = [k for k in ("trading_blocked", "account_blocked", "trade_suspended_by_user") if acct.get(k)]
    if status != "ACTIVE" or blocked:
        out.append(Check("account", FAIL, f"status {status}{'; ' + ', '.join(blocked) if blocked else ''}: "
                                          "Alpaca will refuse orders; see the dashboard"))
    else:
        out.append(Check("account", OK, f"{acct.get('account_number', '?')} ACTIVE · equity {acct.get('equity')} "
                                        f"· cash {acct.get('cash')}"))
    multiplier = float(acct.get("multiplier") or 1)
    if multiplier > 1:
        use = "buying_power (margin allowed)" if broker.allow_margin else \
            f"non_marginable_buying_power {acct.get('non_marginable_buying_power')} (set alpaca.allow_margin: true to use margin)"
        out.append(Check("margin", OK, f"margin account (multiplier {acct.get('multiplier')}, buying power "
                                       f"{acct.get('buying_power')}); GATE-11 uses {use}"))
    else:
        out.append(Check("margin", OK, f"cash account; buying power {acct.get('buying_power')}"))
    try:
        fractional = broker._account_allows_fractional()
    except TradebookError as exc:
        return out + [Check("fractional", WARN, f"account configuration unreadable: {exc}")]
    why = "on" if fractional else ("off in params (fractional_enabled: false)" if not params.fractional_enabled
                                   else "off for this account: whole shares only")
    out.append(Check("fractional", OK if fractional or not params.fractional_enabled else WARN, why))
    return out


def _asset_checks(broker: Any, symbols: list[str]) -> list[Check]:
    out = []
    for symbol in symbols:
        try:
            asset = broker.asset(symbol)
        except TradebookError as exc:
            out.append(Check(f"asset {symbol}", FAIL, str(exc)))
            continue
        if not asset.tradable:
            out.append(Check(f"asset {symbol}", FAIL, "not tradable (inactive or halted at Alpaca): remove it "
                                                      "from symbols or wait"))
        else:
            out.append(Check(f"asset {symbol}", OK, "active, tradable, " +
                             ("fractionable" if asset.fractionable else "whole shares only")))
    return out


def _probe(call: Callable[[], Any]) -> str | None:
    """None when the call works, else why not (the broker's message)."""
    try:
        call()
        return None
    except BrokerRejected as exc:
        return str(exc)


def _feed_checks(broker: Any) -> list[Check]:
    """Which feeds the key may use: bars (sip recent and delayed, iex), quotes (iex, sip)."""
    from alpaca.data.requests import StockBarsRequest, StockSnapshotRequest
    from alpaca.data.timeframe import TimeFrame

    symbol = "AAPL"
    now = broker.clock().now

    def bars(feed: str, end) -> Callable[[], Any]:
        req = StockBarsRequest(symbol_or_symbols=[symbol], timeframe=TimeFrame.Day, start=end - timedelta(days=7),
                               end=end, feed=feed, limit=5)
        return lambda: broker._call(f"probe bars {feed}", lambda: broker._data.get_stock_bars(req))

    def quotes(feed: str) -> Callable[[], Any]:
        req = StockSnapshotRequest(symbol_or_symbols=[symbol], feed=feed)
        return lambda: broker._call(f"probe quotes {feed}", lambda: broker._data.get_stock_snapshot(req))

    recent_sip = _probe(bars("sip", now))
    delayed_sip, iex_bars = _probe(bars("sip", now - timedelta(minutes=16))), _probe(bars("iex", now))
    sip_quotes, iex_quotes = _probe(quotes("sip")), _probe(quotes("iex"))
    used_bars = {"sip": delayed_sip, "iex": iex_bars}[broker.bars_feed]
    used_quotes = {"sip": sip_quotes, "iex": iex_quotes}.get(broker.feed, _probe(quotes(broker.feed)))
    out = [Check("bars feed", FAIL if used_bars else OK,
                 f"alpaca.bars_feed {broker.bars_feed}: " + (used_bars or "works (tradebook asks for bars up to "
                                                                          "now - 15 min)")),
           Check("bars: SIP", OK, "recent SIP allowed (paid plan)" if recent_sip is None else
                 "recent SIP refused (free plan: SIP only older than 15 minutes); "
                 + ("delayed SIP works" if delayed_sip is None else f"delayed SIP refused too: {delayed_sip}")),
           Check("bars: IEX", OK, "works" if iex_bars is None else f"refused: {iex_bars}"),
           Check("quotes feed", FAIL if used_quotes else OK,
                 f"alpaca.feed {broker.feed}: " + (used_quotes or "works")),
           Check("quotes: SIP", OK, "allowed" if sip_quotes is None else "refused (free plan): use feed iex")]
    return out


def _clock_check(broker: Any) -> Check:
    clock = broker.clock()
    state = "open" if clock.is_open else "closed"
    return Check("clock", OK, f"broker time {clock.now:%Y-%m-%d %H:%M %Z}, market {state}; next open "
                              f"{clock.next_open:%Y-%m-%d %H:%M}, next close {clock.next_close:%Y-%m-%d %H:%M}")


def failed(checks: list[Check]) -> bool:
    """True when a check would stop trading (the command exits non-zero)."""
    return any(c.status == FAIL for c in checks)
