"""Prometheus Alertmanager: firing alerts as failure signals of the releases they concern.

This module only wires hooks to the modules that do the work: `webhook` (notifications
pushed to `POST /webhooks/alertmanager`), `poller` (`GET /api/v2/alerts`, the safety net),
both turning an alert into a `signal` inbox event through `alerts`; `connection`
(`check-config --connect`); `silences` (optional: the expected noise of a deployment).
All HTTP goes through `client`. The core correlates each signal to the watched releases it
concerns and weighs it in steps 13 and 18 (`itsm_bridge.signals`). See docs/alertmanager.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import ConnectionCheck, Event, Release
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_alertmanager import connection, poller, silences, webhook
from itsm_bridge_alertmanager.client import AlertmanagerClient
from itsm_bridge_alertmanager.settings import Settings

__all__ = ["AlertmanagerPlugin", "Settings"]

_Settings = Settings


class AlertmanagerPlugin:
    """The hook implementations; each delegates to one module."""

    Settings = Settings

    def __init__(self, config: _Settings, settings: BridgeSettings) -> None:
        self.config = config
        self.bridge = settings
        self.client = AlertmanagerClient(
            config.url, timeout=config.timeout_seconds, attempts=config.retries
        )

    # -- steps 11 (optional silences) ------------------------------------------------------
    @hookimpl
    def release_changed(self, release: Release, event: Event) -> None:
        """With `silence` configured: silence the deployment's expected noise while the
        release is implementing, and expire the silence when it leaves that state."""
        if self.config.silence is not None:
            silences.on_change(self.client, self.config, release, event)

    # -- the daemon ------------------------------------------------------------------------
    @hookimpl
    def register_webhooks(self, register: Callable[..., Any]) -> None:
        """`POST /webhooks/alertmanager`: each alert of a notification that counts, stored
        as a `signal` event."""
        register("alertmanager", webhook.Handler(self.config))

    @hookimpl
    def register_pollers(self, register: Callable[..., Any]) -> None:
        """The `alertmanager` poller every `poll_seconds` (none when 0)."""
        if self.config.poll_seconds:
            poll = poller.Poller(self.client, self.config)
            register("alertmanager", self.config.poll_seconds, poll)

    # -- `itsm-bridge check-config --connect` ----------------------------------------------
    @hookimpl
    def check_connection(self) -> list[ConnectionCheck]:
        """Alertmanager's API reachable (`GET /api/v2/status`), and which paths are on."""
        return [connection.check(self.client, self.config)]
