"""Alerts (OPS-5): things an operator must hear about, logged, stored and delivered.

Every alert is logged (``logs.py``) and stored as an ``ALERT`` event in the ledger;
an alert stored inside the caller's transaction is delivered only after that commit
(``ledger.after_commit``), so no network call holds the ledger and no alert announces
a change that rolled back;
when Apprise URLs are configured (``params.alerts.apprise_urls`` or the environment
variable ``TRADEBOOK_APPRISE_URLS``, the better home for URLs that carry tokens) it is
also sent through Apprise. Apprise is optional and imported only to deliver. A
delivery failure is logged and never raised: an unreachable chat server must not stop
trading. A configuration that cannot deliver (URLs set, Apprise missing, a URL
Apprise does not understand) is a ConfigError at start (``check_delivery``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tradebook.errors import ConfigError
from tradebook.ledger import events
from tradebook.logs import alert_urls_of, get_logger, log_event, redactor

if TYPE_CHECKING:
    from tradebook.params import Params

EVENT_KIND = "ALERT"
# kind -> (log level, apprise notify type)
KINDS: dict[str, tuple[int, str]] = {
    "FREEZE": (logging.CRITICAL, "failure"),
    "BREAKER": (logging.CRITICAL, "failure"),
    "INCIDENT": (logging.ERROR, "warning"),
    "RUN_FAILED": (logging.ERROR, "failure"),
    "DIVERGENCE": (logging.ERROR, "warning"),
    "MISSED_WINDOW": (logging.WARNING, "warning"),
    "DAEMON_START": (logging.INFO, "info"),
    "DAEMON_STOP": (logging.INFO, "info"),
}
_log = get_logger("alerts")
_defaults: dict[str, Any] = {}


@dataclass(frozen=True)
class Alert:
    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    stored: bool = False
    delivered: bool | None = None  # None: no URLs configured, or deferred
    deferred: bool = False         # stored in the caller's transaction: delivered after its commit


def configure(params: "Params") -> None:
    """Check delivery (ConfigError when it cannot work) and make ``params`` the default."""
    check_delivery(params)
    if any("@" in url or url.count("/") > 3 for url in params.alerts.apprise_urls):
        # params are stored with every run (runs.params_json, notebook parameters)
        log_event(_log, "warning", "alerts.apprise_urls in params look like they carry tokens; params are "
                                   "stored with every run: prefer TRADEBOOK_APPRISE_URLS in the environment")
    _defaults["params"] = params


def check_delivery(params: "Params") -> None:
    """ConfigError when URLs are configured but Apprise is missing or refuses a URL."""
    urls = alert_urls_of(params)
    if not urls:
        return
    try:
        import apprise
    except ImportError:
        raise ConfigError("alerts.apprise_urls is set but the optional package `apprise` is not "
                          "installed: pip install 'tradebook[alerts]' (or remove the URLs)") from None
    bad = [i for i, url in enumerate(urls) if not apprise.Apprise().add(url)]
    if bad:
        # Never echo the URL itself: it usually carries a token.
        raise ConfigError(f"alerts.apprise_urls: entry #{bad[0] + 1} is not a URL Apprise understands "
                          f"(scheme {_scheme(urls[bad[0]])!r}); see the Apprise URL list")


def alert(target: Any, kind: str, message: str, *, data: dict[str, Any] | None = None,
          params: "Params | None" = None, run_id: str | None = None,
          now: datetime | None = None) -> Alert:
    """Log, store (``target``: a Ledger, an open DuckDB connection inside the caller's
    transaction, or None) and deliver one alert. Never raises for delivery problems."""
    message = redactor().text(message)
    data = redactor().obj(dict(data or {}))
    level, _ = KINDS.get(kind, (logging.ERROR, "warning"))
    if kind not in KINDS:
        _log.error("unknown alert kind %r (stored anyway; add it to alerts.KINDS)", kind)
    # Direct call: data keys (run_id, message, ...) must never collide with log_event's arguments.
    _log.log(level, f"ALERT {kind}: {message}", extra={"fields": {"alert": kind, **data}, "run_id": run_id})
    stored = _store(target, kind, message, data, run_id, now)
    if target is None or _is_ledger(target):
        return Alert(kind, message, data, stored, deliver(kind, message, params=params, data=data))
    # Inside the caller's transaction: deliver after its commit (no network call while it holds
    # the ledger, and nothing announced if it rolls back). ``delivered`` is unknown here.
    from tradebook.ledger.db import after_commit

    after_commit(target, lambda: deliver(kind, message, params=params, data=data))
    return Alert(kind, message, data, stored, None, deferred=True)


def _is_ledger(target: Any) -> bool:
    from tradebook.ledger.db import Ledger

    return isinstance(target, Ledger)


def _store(target: Any, kind: str, message: str, data: dict[str, Any], run_id: str | None,
           now: datetime | None) -> bool:
    from tradebook.ledger.db import Ledger

    payload = {"alert": kind, **data}
    if target is None:
        return False
    if isinstance(target, Ledger):
        try:
            with target.transaction() as con:
                events.record(con, EVENT_KIND, run_id=run_id, reason=message, data=payload, ts=now)
            return True
        except Exception as exc:  # a locked/corrupt ledger must not swallow the alert itself
            log_event(_log, "error", f"alert {kind} could not be stored in the ledger: {exc}", alert=kind)
            return False
    # An open connection: the caller's transaction decides; its errors are the caller's.
    events.record(target, EVENT_KIND, run_id=run_id, reason=message, data=payload, ts=now)
    return True


def deliver(kind: str, message: str, *, params: "Params | None" = None,
            data: dict[str, Any] | None = None) -> bool | None:
    """Send through Apprise; True/False for the outcome, None when no URL is configured."""
    params = params or _defaults.get("params")
    urls = alert_urls_of(params) if params is not None else alert_urls_of(None)
    if not urls:
        return None
    for url in urls:  # Apprise's own log lines may echo a URL: treat each as a secret
        redactor().add(url)
    try:
        import apprise
    except ImportError:
        log_event(_log, "error", f"alert {kind} not delivered: apprise is not installed", alert=kind)
        return False
    mode = getattr(params, "mode", "?")
    body = message + (("\n" + "\n".join(f"{k}: {v}" for k, v in data.items())) if data else "")
    try:
        sender = apprise.Apprise()
        for url in urls:
            sender.add(url)
        ok = bool(sender.notify(title=f"[tradebook {mode}] {kind}", body=body,
                                notify_type=KINDS.get(kind, (0, "warning"))[1]))
    except Exception as exc:  # delivery must never take trading down with it
        log_event(_log, "error", f"alert {kind} delivery raised {type(exc).__name__}: {exc}", alert=kind)
        return False
    if not ok:
        log_event(_log, "error", f"alert {kind} delivery failed for at least one of {len(urls)} URL(s)",
                  alert=kind)
    return ok


def recent_alerts(ledger: Any, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Stored alerts, newest first (for status views and tests)."""
    stored = ledger.read(events.find, EVENT_KIND, alert=kind or None, newest_first=True, limit=limit)
    return [{"ts": e.ts, "run_id": e.run_id, "message": e.reason, **(e.data or {})} for e in stored]


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "(none)"
