"""Fixtures for the ServiceNow plugin: the sandbox over real HTTP, the plugin, releases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from itsm_bridge.models import Release
from itsm_bridge.settings import BridgeSettings, settings_from_mapping
from itsm_bridge_sandbox import load_seed
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin, Settings

SERVICES = {
    "payments": {
        "ci": "payments-api",
        "stakeholders": ["payments-team@acme.com"],
        "jobs": {
            "build": "payments/build",
            "deploy": "payments/deploy",
            "smoke_test": "payments/smoke",
            "rollback": "payments/rollback",
        },
    }
}


@pytest.fixture(scope="session")
def snow_server() -> Iterator[ServiceNowSandbox]:
    """One ServiceNow sandbox per session (reset before each test)."""
    server = ServiceNowSandbox(load_seed()["servicenow"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def snow(snow_server: ServiceNowSandbox) -> ServiceNowSandbox:
    snow_server.reset()
    return snow_server


@pytest.fixture
def bridge_settings() -> BridgeSettings:
    return settings_from_mapping({"services": SERVICES})


@pytest.fixture
def make_plugin(
    snow: ServiceNowSandbox, bridge_settings: BridgeSettings
) -> Callable[..., ServiceNowPlugin]:
    """A plugin pointed at the sandbox; keyword arguments override its settings."""

    def make(**overrides: Any) -> ServiceNowPlugin:
        config = Settings.model_validate(
            {
                "url": snow.url,
                "user": "sandbox",
                "password": "sandbox",
                "assignment_group": "Change Management",
                **overrides,
            }
        )
        plugin = ServiceNowPlugin(config, bridge_settings)
        plugin.client._retry.sleep = lambda seconds: None  # no real waiting in tests
        return plugin

    return make


@pytest.fixture
def plugin(make_plugin: Callable[..., ServiceNowPlugin]) -> ServiceNowPlugin:
    return make_plugin()


@pytest.fixture
def make_release() -> Callable[..., Release]:
    def make(**fields: Any) -> Release:
        start = datetime(2026, 12, 5, 21, tzinfo=UTC)
        base: dict[str, Any] = {
            "id": "rel-20261128-0000abcd",
            "service": "payments",
            "version": "1.4.0",
            "name": "Faster refunds",
            "window_start": start,
            "window_end": start + timedelta(hours=2),
        }
        return Release.model_validate({**base, **fields})

    return make
