"""Fixtures for the Jira plugin: the sandbox over real HTTP in both deployments, the plugin
pointed at it (no real sleeping), releases of the payments service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from itsm_bridge.models import ExternalRecord, Release
from itsm_bridge.settings import BridgeSettings, settings_from_mapping
from itsm_bridge_jira import JiraPlugin, Settings
from itsm_bridge_sandbox import load_seed
from itsm_bridge_sandbox.jira import JiraSandbox

START = datetime(2026, 12, 5, 21, tzinfo=UTC)  # 22:00 in Berlin, a Saturday
CHANGE = ExternalRecord(
    system="servicenow", kind="change_request", id="a" * 32, number="CHG0030002"
)


@pytest.fixture(scope="session")
def _jira_servers() -> Iterator[dict[str, JiraSandbox]]:
    """One started Jira sandbox per deployment for the session (reset before each test)."""
    servers = {name: JiraSandbox(deployment=name) for name in ("Server", "Cloud")}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(params=["Server", "Cloud"])
def jira(request: pytest.FixtureRequest, _jira_servers: dict[str, JiraSandbox]) -> JiraSandbox:
    """The seeded sandbox, once as Data Center (`Server`) and once as Cloud."""
    server = _jira_servers[str(request.param)]
    server.reset(load_seed()["jira"])
    return server


@pytest.fixture
def cloud(_jira_servers: dict[str, JiraSandbox]) -> JiraSandbox:
    server = _jira_servers["Cloud"]
    server.reset(load_seed()["jira"])
    return server


@pytest.fixture
def bridge_settings() -> BridgeSettings:
    return settings_from_mapping(
        {"windows": {"timezone": "Europe/Berlin"}, "services": {"payments": {"ci": "payments"}}}
    )


@pytest.fixture
def sleeps() -> list[float]:
    """The waits the plugin's retries asked for (nothing really sleeps)."""
    return []


@pytest.fixture
def make_plugin(
    jira: JiraSandbox, bridge_settings: BridgeSettings, sleeps: list[float]
) -> Callable[..., JiraPlugin]:
    """A plugin pointed at the sandbox; keyword arguments override its settings."""

    def make(**overrides: Any) -> JiraPlugin:
        config = Settings.model_validate(
            {"url": jira.url, "user": "sandbox", "token": "sandbox", "project": "PAY", **overrides}
        )
        plugin = JiraPlugin(config, bridge_settings)
        plugin.client.retry.sleep = sleeps.append
        return plugin

    return make


@pytest.fixture
def plugin(make_plugin: Callable[..., JiraPlugin]) -> JiraPlugin:
    return make_plugin()


@pytest.fixture
def make_release() -> Callable[..., Release]:
    def make(**fields: Any) -> Release:
        base: dict[str, Any] = {
            "id": "rel-20261128-0000abcd",
            "service": "payments",
            "version": "1.5.0",
            "name": "New fee model",
            "window_start": START,
            "window_end": START + timedelta(hours=2),
            "records": [CHANGE],
        }
        return Release.model_validate({**base, **fields})

    return make


def _writes(server: JiraSandbox) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in server.requests_to()
        if r.method != "GET" and not r.path.endswith(("/search", "/search/jql"))
    ]


@pytest.fixture
def writes() -> Callable[[JiraSandbox], list[str]]:
    """`METHOD path` of every request that may change something (all but GET and search)."""
    return _writes
