"""Fixtures: a seeded ServiceNow sandbox on a loopback port, and a requests session for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from itsm_bridge_sandbox.servicenow import ServiceNowSandbox

SEED_FILE = Path(__file__).resolve().parents[3] / "config" / "sandbox-seed.yaml"


@pytest.fixture(scope="session")
def seed() -> dict[str, Any]:
    return yaml.safe_load(SEED_FILE.read_text())["servicenow"]


@pytest.fixture(scope="session")
def running(seed: dict[str, Any]) -> Iterator[ServiceNowSandbox]:
    """One server for the session (stopping one costs half a second); reset per test."""
    server = ServiceNowSandbox(seed)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sn(running: ServiceNowSandbox) -> ServiceNowSandbox:
    running.reset()
    return running


@pytest.fixture
def http(sn: ServiceNowSandbox) -> Iterator[requests.Session]:
    session = requests.Session()
    session.auth = ("sandbox", "sandbox")
    session.headers["Accept"] = "application/json"
    yield session
    session.close()


@pytest.fixture
def url(sn: ServiceNowSandbox) -> str:
    return sn.url
