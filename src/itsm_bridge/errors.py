"""The few error kinds the core distinguishes (see the failure note in hookspecs)."""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is invalid; the message names the key and the fix (exit code 2)."""


class UsageError(BridgeError):
    """The command was called wrongly (exit code 2)."""


class OperationFailed(BridgeError):
    """The operation could not be done; the message says why (exit code 1)."""


class TransientError(BridgeError):
    """A plugin hit a passing fault (timeout, 429, 5xx): the core retries the step later."""


class NeedsHuman(BridgeError):
    """A plugin hit a fault no retry can fix (bad credentials, missing permission, bad data)."""


class WebhookRejected(BridgeError):
    """An inbound webhook is refused with `status` (401, 400 or 422) and nothing is stored."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
