"""Jira: the backlog a release is made of (intake, scope, versions, rollback to the backlog).

This module only wires hooks to the modules that translate each one into Jira's API:
`intake` (step 3, work items become issues), `scope` and `versions` (steps 3 and 10),
`rollback` (step 14), `release_sync` (the version and issues follow the release's state),
`poller` and `webhook` (the backlog changed), `connection` (`check-config --connect`).
Transitions go through `workflow`, comments through `comments`; all HTTP through `client`
(the `jira` library's session, our retries). Settings: `settings.py`, docs/jira.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import BacklogItem, ConnectionCheck, Event, Release, WorkItem
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_jira import connection, intake, poller, release_sync, rollback, scope, webhook
from itsm_bridge_jira.client import JiraClient
from itsm_bridge_jira.settings import Settings
from itsm_bridge_jira.workflow import Mover, Workflows

log = logging.getLogger(__name__)
_Settings = Settings


class JiraPlugin:
    """The hook implementations; each delegates to one module."""

    Settings = Settings

    def __init__(self, config: _Settings, settings: BridgeSettings) -> None:
        self.config = config
        self.bridge = settings
        self.client = JiraClient(config)
        self.workflows = Workflows()  # learned from every transitions list read

    def mover(self) -> Mover:
        return Mover(self.client, self.workflows)

    # -- step 3 ----------------------------------------------------------------------------
    @hookimpl
    def add_to_backlog(self, item: WorkItem) -> BacklogItem | None:
        """The work item's issue, found by its label before one is created."""
        return intake.add_to_backlog(self.client, item)

    @hookimpl
    def release_scope(self, release: Release) -> list[BacklogItem] | None:
        """The issues of the release's version (created when missing), by issue type."""
        return scope.release_scope(self.client, release, self.bridge)

    # -- step 14 ---------------------------------------------------------------------------
    @hookimpl
    def return_to_backlog(self, release: Release, items: list[BacklogItem], reason: str) -> None:
        """Comment, transition to `backlog_status`, drop the version, leave open sprints."""
        rollback.return_to_backlog(self.client, self.mover(), release, items, reason)

    # -- every change of the release -------------------------------------------------------
    @hookimpl
    def release_changed(self, release: Release, event: Event) -> None:
        """Scheduled: the version's date follows the window; succeeded: release it."""
        release_sync.release_changed(self.client, self.mover(), release, event, self.bridge)

    # -- the daemon ------------------------------------------------------------------------
    @hookimpl
    def register_pollers(self, register: Callable[..., Any]) -> None:
        """The `jira` poller: issues updated since the cursor, as `scope` events."""
        register("jira", self.config.poll_seconds, poller.Poller(self.client))

    @hookimpl
    def register_webhooks(self, register: Callable[..., Any]) -> None:
        """`POST /webhooks/jira`: signed issue events, as `scope` events."""
        if self.config.webhook_secret is None:
            log.warning("jira: webhooks are accepted unsigned (plugins.jira.webhook_secret)")
        register("jira", webhook.Handler(self.config))

    # -- `itsm-bridge check-config --connect` ----------------------------------------------
    @hookimpl
    def check_connection(self) -> list[ConnectionCheck]:
        """One authenticated read (`myself`), one attempt, a short timeout."""
        return [connection.check(self.client, self.config)]
