"""Fixtures for the Jenkins plugin: the plugin against a mocked URL (`responses`) or against the
sandbox over real HTTP with a clock the tests move by hand, and releases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from itsm_bridge.models import Release
from itsm_bridge.settings import BridgeSettings, settings_from_mapping
from itsm_bridge_jenkins import JenkinsPlugin, Settings
from itsm_bridge_sandbox import load_seed
from itsm_bridge_sandbox.jenkins import JenkinsSandbox
from support import ManualClock

URL = "https://ci.example.com"
TOKEN = "11aa22bb33cc44dd-api-token"
JOBS = {
    "build": "payments/build",
    "deploy": "payments/deploy",
    "smoke_test": "payments/smoke",
    "rollback": "payments/rollback",
}
SERVICES = {
    "payments": {
        "ci": "payments-api",
        "jobs": JOBS,
        "tasks": [
            {"name": "Stop database", "kind": "manual", "before": "deploy"},
            {
                "name": "Warm caches",
                "kind": "automated",
                "job": "ops/warm-caches",
                "after": "smoke_test",
            },
        ],
    }
}
RELEASE_ID = "rel-20261128-0000abcd"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def bridge_settings() -> BridgeSettings:
    return settings_from_mapping({"services": SERVICES})


def build_plugin(bridge: BridgeSettings, **settings: Any) -> JenkinsPlugin:
    """A plugin whose retries do not sleep."""
    config = Settings.model_validate({"url": URL, "user": "bridge", "token": TOKEN, **settings})
    plugin = JenkinsPlugin(config, bridge)
    plugin.client._retry.sleep = lambda seconds: None
    return plugin


@pytest.fixture
def make_plugin(bridge_settings: BridgeSettings) -> Callable[..., JenkinsPlugin]:
    def make(**settings: Any) -> JenkinsPlugin:
        return build_plugin(bridge_settings, **settings)

    return make


@pytest.fixture
def plugin(make_plugin: Callable[..., JenkinsPlugin]) -> JenkinsPlugin:
    return make_plugin()


@pytest.fixture
def make_release() -> Callable[..., Release]:
    def make(**fields: Any) -> Release:
        base: dict[str, Any] = {
            "id": RELEASE_ID,
            "service": "payments",
            "version": "1.4.0",
            "name": "Faster refunds",
        }
        return Release.model_validate({**base, **fields})

    return make


@pytest.fixture
def release(make_release: Callable[..., Release]) -> Release:
    return make_release()


@pytest.fixture
def core_params() -> Callable[..., dict[str, str]]:
    """`core_params(**extra)`: the parameters the core passes (`itsm_bridge.jobs.job_params`),
    for the release of `make_release()`."""

    def make(**extra: str) -> dict[str, str]:
        base = {
            "RELEASE_ID": RELEASE_ID,
            "SERVICE": "payments",
            "VERSION": "1.4.0",
            "CHANGE": "CHG0030001",
        }
        return {**base, **extra}

    return make


@pytest.fixture
def jenkins_sandbox(clock: ManualClock) -> Iterator[JenkinsSandbox]:
    """The Jenkins sandbox with the default seed (payments/build, deploy, smoke, rollback)."""
    server = JenkinsSandbox(load_seed()["jenkins"], clock=clock)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sandbox_plugin(
    jenkins_sandbox: JenkinsSandbox, bridge_settings: BridgeSettings
) -> Callable[..., JenkinsPlugin]:
    """A plugin pointed at the sandbox (user and token `sandbox`); keywords override settings."""

    def make(**settings: Any) -> JenkinsPlugin:
        return build_plugin(
            bridge_settings,
            **{"url": jenkins_sandbox.url, "user": "sandbox", "token": "sandbox", **settings},
        )

    return make
