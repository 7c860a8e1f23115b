"""One channel's delivery: attempts under a tenacity policy, reported as a `Delivery`.

A sender raises `DeliveryError`: transient (a network fault, HTTP 429/5xx, an SMTP 4xx
reply) is tried again after a wait (the server's Retry-After when it gave one, else
exponential backoff with jitter, both at most `max_retry_wait_seconds`); permanent (an SMTP
5xx reply, HTTP 4xx, a refused certificate) is not. A server asking to wait longer than that
is not waited for: the delivery fails at once and says so. `deliver` never raises: whatever
goes wrong becomes `Delivery(ok=False)`, because a failed notification never fails a release.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import tenacity

from itsm_bridge.models import Delivery
from itsm_bridge_notify.templates import TemplateFailure

log = logging.getLogger("itsm_bridge.notify")


class DeliveryError(Exception):
    """A failed attempt: `transient` ones are tried again; `retry_after` in seconds."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


@dataclass
class RetryPolicy:
    """How often and how long to try (`plugins.notify.retries`, `max_retry_wait_seconds`)."""

    attempts: int = 3
    max_wait: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep)


def _error(state: tenacity.RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


class _asks_too_long(tenacity.stop.stop_base):
    """Stop when the server asked to wait longer than we may."""

    def __init__(self, max_wait: float) -> None:
        self.max_wait = max_wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        asked = getattr(_error(retry_state), "retry_after", None)
        return asked is not None and asked > self.max_wait


def _wait(max_wait: float) -> Callable[[tenacity.RetryCallState], float]:
    backoff = tenacity.wait_exponential_jitter(initial=1, max=max_wait, jitter=1)

    def wait(state: tenacity.RetryCallState) -> float:
        asked = getattr(_error(state), "retry_after", None)
        return float(asked) if asked is not None else float(min(backoff(state), max_wait))

    return wait


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.transient


def deliver(channel: str, target: str, send: Callable[[], str], policy: RetryPolicy) -> Delivery:
    """Call `send` (it returns a short detail) until it succeeds or the policy gives up."""
    attempts = 0

    def attempt() -> str:
        nonlocal attempts
        attempts += 1
        return send()

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_transient),
        stop=tenacity.stop_any(
            tenacity.stop_after_attempt(policy.attempts), _asks_too_long(policy.max_wait)
        ),
        wait=_wait(policy.max_wait),
        sleep=policy.sleep,
        reraise=True,
        before_sleep=lambda state: log.info(
            "%s delivery to %s: attempt %d failed (%s); trying again",
            channel,
            target,
            state.attempt_number,
            _error(state),
        ),
    )
    try:
        detail: str = retrying(attempt)
    except DeliveryError as exc:
        text = str(exc)
        if exc.retry_after is not None and exc.retry_after > policy.max_wait:
            text += (
                f" (asked to wait {exc.retry_after:g} s, more than "
                f"max_retry_wait_seconds={policy.max_wait:g}: not waited)"
            )
        elif exc.transient:
            text += f" (gave up after {attempts} attempt(s))"
        return _failed(channel, target, text, attempts)
    except TemplateFailure as exc:
        return _failed(channel, target, str(exc), attempts)
    except Exception as exc:  # a bug in a sender must not fail the release either
        log.exception("%s delivery to %s failed unexpectedly", channel, target)
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return _failed(channel, target, f"{type(exc).__name__}: {first}".rstrip(": "), attempts)
    return Delivery(channel=channel, target=target, ok=True, detail=detail, attempts=attempts)


def _failed(channel: str, target: str, detail: str, attempts: int) -> Delivery:
    log.warning("%s delivery to %s failed: %s", channel, target, detail)
    return Delivery(channel=channel, target=target, ok=False, detail=detail, attempts=attempts)
