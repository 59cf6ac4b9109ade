"""Resilience for the Alpaca adapter (EXE-2, EXE-3, EXE-4, OPS-6).

* ``TimeoutSession``: alpaca-py calls ``session.request`` with no timeout at all; this
  session gives every request a (connect, read) timeout.
* ``classify``/``translate``: which failures are transient (timeouts, connection errors,
  5xx, 429) and the typed, secret-free tradebook error for each SDK failure.
* ``call_with_retries``: tenacity retries for transient failures only, exponential backoff;
  a 429 waits until ``X-RateLimit-Reset`` (capped) and never counts toward the breaker;
  business rejects are never retried.
* ``CircuitBreaker`` lives in ``alpaca_breaker`` (persisted across processes).

Typed errors are raised outside any ``except`` block, so they carry no ``__context__``: the
SDK exceptions (whose ``.request`` holds the auth headers) never travel with them.
"""
from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

import requests
from alpaca.common.exceptions import APIError
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from tradebook.broker.alpaca.breaker import BreakerFile, CircuitBreaker, MemoryStore  # noqa: F401  (re-exported)
from tradebook.errors import (BrokerError, BrokerRejected, BrokerUnavailable, DuplicateClientOrderId,
                              FractionalNotSupported, SecretsError, TradebookError)

log = logging.getLogger("tradebook.broker.alpaca")
T = TypeVar("T")
_MAX_TEXT = 240


class TimeoutSession(requests.Session):
    """A requests session that applies a default (connect, read) timeout to every request (EXE-3)."""

    def __init__(self, timeout_s: float):
        super().__init__()
        self.timeout = (min(3.05, timeout_s), timeout_s)

    def request(self, method, url, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, **kwargs)


class Redactor:
    """Replaces secret values in any text we emit; its repr reveals nothing."""

    def __init__(self, secrets: Iterable[str]):
        self._secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[REDACTED]")
        return text[:_MAX_TEXT] + ("…" if len(text) > _MAX_TEXT else "")

    def __repr__(self) -> str:
        return "Redactor(<hidden>)"


# --- classification ----------------------------------------------------------------------------
def status_of(exc: BaseException) -> int | None:
    """HTTP status of an SDK APIError (None for transport failures)."""
    if isinstance(exc, APIError):
        try:
            return int(exc.status_code) if exc.status_code is not None else None
        except (TypeError, ValueError):
            return None
    return None


def api_detail(exc: BaseException) -> tuple[int | None, str]:
    """(code, message) from an APIError body; safe for HTML or code-less bodies."""
    try:
        body = json.loads(str(exc))
    except ValueError:
        return None, "non-JSON error body"
    if not isinstance(body, dict):
        return None, "unexpected error body"
    code = body.get("code")
    return (code if isinstance(code, int) else None), str(body.get("message", ""))


def is_transient(exc: BaseException) -> bool:
    """EXE-2: timeouts, connection errors, garbled 2xx bodies, 5xx and 429 may be retried."""
    if isinstance(exc, (requests.Timeout, requests.ConnectionError, requests.JSONDecodeError)):
        return True
    status = status_of(exc)
    return status is not None and (status >= 500 or status == 429)


def may_have_landed(exc: BaseException) -> bool:
    """Could a POST that failed this way have been executed anyway? (429 and connect failures: no)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError) and exc.args:
        from urllib3.exceptions import NewConnectionError

        if isinstance(getattr(exc.args[0], "reason", None), NewConnectionError):
            return False   # refused or unreachable: the request was never sent
    return is_transient(exc) and status_of(exc) != 429


def rate_limit_reset_s(exc: BaseException, now: float) -> float | None:
    """Seconds until a 429's ``X-RateLimit-Reset`` (UNIX epoch seconds, per Alpaca's OpenAPI specs)."""
    response = getattr(exc, "response", None) if isinstance(exc, APIError) else None
    value = response.headers.get("X-RateLimit-Reset") if response is not None else None
    try:
        return None if not value else max(0.0, float(value) - now)
    except ValueError:
        return None


_DUPLICATE = re.compile(r"client[\s_-]*order[\s_-]*id", re.I)


def is_duplicate_client_id(status: int | None, code: int | None, message: str) -> bool:
    """A duplicate client_order_id, however the venue words it (422 40010001, 409 40910000, ...)."""
    if code == 40910000 or status == 409:
        return True
    low = message.lower()
    return (bool(_DUPLICATE.search(message)) and "unique" in low) or "duplicate client" in low


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds from a 429/503 ``Retry-After`` header (delta seconds or an HTTP date)."""
    response = getattr(exc, "response", None) if isinstance(exc, APIError) else None
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def describe(exc: BaseException) -> str:
    """A short, secret-free label for logs: 'HTTP 503', 'timeout', 'connection error'."""
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection error"
    if isinstance(exc, requests.JSONDecodeError):
        return "garbled response body"
    status = status_of(exc)
    return f"HTTP {status}" if status is not None else type(exc).__name__


def translate(exc: BaseException, what: str, redact: Redactor, attempts: int = 1) -> TradebookError:
    """The typed tradebook error for an SDK failure (message redacted, no SDK objects attached)."""
    if isinstance(exc, TradebookError):
        return exc
    status = status_of(exc)
    if status is None:
        if is_transient(exc):
            return BrokerUnavailable(redact(f"Alpaca {what}: {describe(exc)} after {attempts} attempt(s)"))
        return BrokerError(redact(f"Alpaca {what}: unexpected {type(exc).__name__}: {exc}"))
    code, message = api_detail(exc)
    text = redact(f"Alpaca {what}: HTTP {status}" + (f" {message}" if message else "")
                  + (f" (code {code})" if code else ""))
    low = message.lower()
    if status >= 500 or status == 429:
        return BrokerUnavailable(f"{text} after {attempts} attempt(s)")
    if status == 401:
        return SecretsError(f"{text}: the API keys were refused; check that APCA_API_KEY_ID/"
                            "APCA_API_SECRET_KEY are the pair for this mode (paper keys differ from live)")
    if status in (409, 422) and is_duplicate_client_id(status, code, message):
        return DuplicateClientOrderId(text)
    if status == 422 and (code == 42210000 and "fraction" in low or "not fractionable" in low):
        return FractionalNotSupported(text)
    if status == 403:
        reason = ("INSUFFICIENT_BUYING_POWER" if "buying power" in low
                  else "INSUFFICIENT_QTY" if "insufficient qty" in low else "FORBIDDEN")
        return BrokerRejected(text, code=reason)
    return BrokerRejected(text, code={404: "NOT_FOUND", 422: "INVALID"}.get(status, f"HTTP_{status}"))


# --- retries -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """EXE-2: ``retries`` extra attempts for transient failures, backoff doubling from ``backoff_s``."""

    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    sleep: Callable[[float], None] = time.sleep
    rate_limit_max_wait_s: float = 60.0
    wall: Callable[[], float] = time.time

    def wait_s(self, attempt: int, exc: BaseException | None) -> float:
        """429: until X-RateLimit-Reset (capped); otherwise Retry-After or exponential backoff."""
        if exc is not None and status_of(exc) == 429:
            reset = rate_limit_reset_s(exc, self.wall())
            if reset is not None:
                return min(reset, self.rate_limit_max_wait_s)
        hinted = retry_after_s(exc) if exc is not None else None
        if hinted is not None:
            return min(hinted, self.max_backoff_s)
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


def call_with_retries(fn: Callable[[], T], *, what: str, policy: RetryPolicy, breaker: CircuitBreaker,
                      redact: Redactor) -> T:
    """Run ``fn`` with retries for transient failures; failures count toward the breaker.

    Raises a typed tradebook error (see ``translate``); business rejects after one attempt.
    """
    def counted() -> T:
        try:
            result = fn()
        except Exception as exc:
            if status_of(exc) == 429:
                pass   # rate limited: the API is up and answering; waiting is the cure, not the breaker
            elif is_transient(exc):
                breaker.record_failure(f"{what}: {describe(exc)}")
            elif status_of(exc) is not None:
                breaker.record_success()   # the API answered: it is up
            raise
        breaker.record_success()
        return result

    def before_sleep(state) -> None:
        exc = state.outcome.exception()
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("Alpaca %s: %s, retry %d/%d in %.2fs", what, describe(exc), state.attempt_number,
                    policy.retries, wait)

    retrying = Retrying(stop=stop_after_attempt(policy.retries + 1), retry=retry_if_exception(is_transient),
                        wait=lambda s: policy.wait_s(s.attempt_number, s.outcome.exception()),
                        sleep=policy.sleep, before_sleep=before_sleep, reraise=True)
    error: TradebookError | None = None
    try:
        return retrying(counted)
    except Exception as exc:
        error = translate(exc, what, redact, retrying.statistics.get("attempt_number", 1))
    raise error


def or_none_on_404(fn: Callable[[], T]) -> Callable[[], T | None]:
    """Wrap an SDK call so that Alpaca's 404 (no such order/position/asset) becomes None."""
    def run() -> T | None:
        try:
            return fn()
        except APIError as exc:
            if status_of(exc) == 404:
                return None
            raise
    return run
