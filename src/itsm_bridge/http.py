"""Outbound HTTP for every plugin: sessions, timeouts, retries that honour Retry-After, and
errors sorted into the two kinds the core acts on (transient: retry; needs a human).

Plugins never retry a create through `retrying()`: a create is retried only by the core's
step retry, after the plugin has looked the record up again (see hookspecs).
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import tenacity
from pydantic import SecretStr
from tenacity.wait import wait_base

from itsm_bridge import __version__
from itsm_bridge.errors import NeedsHuman, OperationFailed, TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = (5.0, 30.0)  # connect, read
USER_AGENT = f"itsm-bridge/{__version__}"


class HTTPTransientError(TransientError):
    """A 429/5xx answer or a network fault; `retry_after` in seconds when the server said."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class HTTPNeedsHuman(NeedsHuman):
    """401/403: credentials or permissions must be fixed by a person."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class HTTPRequestError(OperationFailed):
    """Another 4xx: the request was wrong; `message` is the vendor's own explanation."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def retry_after_seconds(response: requests.Response) -> float | None:
    """The `Retry-After` header as seconds (delta-seconds or an HTTP date), else None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_for(response: requests.Response, vendor_message: str, what: str) -> Exception:
    """The typed error for a failed answer: transient, needs a human, or a bad request."""
    status = response.status_code
    text = f"{what}: HTTP {status}: {vendor_message}".rstrip(": ")
    if status in TRANSIENT_STATUS:
        return HTTPTransientError(text, status, retry_after_seconds(response))
    if status in (401, 403):
        return HTTPNeedsHuman(f"{text} (check the plugin's credentials and roles)", status)
    return HTTPRequestError(text, status)


def network_error(exc: requests.RequestException, what: str) -> HTTPTransientError:
    """A connection failure or timeout as a transient error (the URL, never credentials)."""
    return HTTPTransientError(f"{what}: {type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else ""


class wait_retry_after(wait_base):
    """Wait what the server asked (capped), else exponential backoff with jitter."""

    def __init__(self, max_wait: float, fallback: wait_base) -> None:
        self.max_wait = max_wait
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        asked = getattr(exc, "retry_after", None)
        if asked is not None:
            return float(min(asked, self.max_wait))
        return float(min(self.fallback(retry_state), self.max_wait))


def retrying(
    attempts: int = 4,
    max_wait: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tenacity.Retrying:
    """A tenacity policy for idempotent calls (reads, updates by id), never for creates."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(HTTPTransientError),
        wait=wait_retry_after(max_wait, tenacity.wait_exponential_jitter(initial=1, max=max_wait)),
        stop=tenacity.stop_after_attempt(attempts),
        sleep=sleep,
        reraise=True,
        before_sleep=lambda state: log.info(
            "retrying after %s (attempt %d)",
            state.outcome.exception() if state.outcome else "?",
            state.attempt_number,
        ),
    )


def call_with_retries(policy: tenacity.Retrying, fn: Callable[[], T]) -> T:
    """Run `fn` under `policy` (typed for mypy)."""
    result: T = policy(fn)
    return result


def redact(text: str, *secrets: SecretStr | str | None) -> str:
    """`text` with every secret value replaced by ***."""
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value:
            text = text.replace(value, "***")
    return text


def count_requests(session: requests.Session, counter: dict[str, Any]) -> None:
    """Count every response of `session` in `counter["requests"]` (benchmarks, tests)."""
    counter.setdefault("requests", 0)

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        counter["requests"] += 1

    session.hooks["response"].append(hook)


# -- outbound metrics ----------------------------------------------------------------------
Observer = Callable[[str, str], None]


def _no_observer(plugin: str, status: str) -> None:
    return None


_observer: Observer = _no_observer


def set_observer(observer: Observer | None) -> None:
    """Report every outbound call as `observer(plugin, status)`: the HTTP status as text, or
    "error" when no answer came (connection refused, timeout). None restores the no-op. The
    daemon sets `Metrics.outbound`; the observer runs on the calling thread."""
    global _observer
    _observer = observer or _no_observer


def observe(plugin: str, status: str) -> None:
    """Tell the observer about one call; an observer that fails never fails the call."""
    try:
        _observer(plugin, status)
    except Exception:
        log.debug("the outbound observer failed", exc_info=True)


def instrument(session: requests.Session, plugin: str) -> requests.Session:
    """Report each answer `session` receives (a response hook, redirects included) and each
    network fault ("error", once however deep in redirects it happened) to the observer."""

    def on_response(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        observe(plugin, str(response.status_code))

    session.hooks["response"].append(on_response)
    send = session.send
    nesting = threading.local()  # a redirect is sent from inside the first send

    def send_observed(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        depth = getattr(nesting, "depth", 0)
        nesting.depth = depth + 1
        try:
            return send(request, **kwargs)
        except requests.RequestException:
            if depth == 0:
                observe(plugin, "error")
            raise
        finally:
            nesting.depth = depth

    session.send = send_observed  # type: ignore[method-assign]
    return session


def check_base_url(value: str, what: str, example: str, credentials: str) -> str:
    """A vendor's base URL from the configuration: http(s), a host, no credentials, no query
    or fragment; a path (a context path such as `/jenkins`) is kept. Returned without a
    trailing slash. ValueError says what is wrong without repeating the URL (it may carry a
    password): `what` names the URL ("the Jenkins root URL"), `example` shows one, and
    `credentials` says where they belong ("plugins.jenkins.user and token").
    """
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be {what}, e.g. {example}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError(f"must not carry credentials; set {credentials} instead")
    if not parts.hostname:
        raise ValueError(f"has no host; use {what}, e.g. {example}")
    if parts.query or parts.fragment:
        raise ValueError(f"must not carry a query or fragment; use {what} only")
    try:
        parts.port  # noqa: B018 -- raises on a port that is not a number
    except ValueError:
        raise ValueError("has an invalid port") from None
    return value.strip().rstrip("/")
