"""Fixtures for the Jira sandbox tests: a seeded server per deployment and `jira` clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jira import JIRA

from itsm_bridge_sandbox.jira import JiraSandbox

SEED = Path(__file__).resolve().parents[3] / "config" / "sandbox-seed.yaml"


CLASSIC_VERSIONS = {"1.0.0", "1.1.0"}


@pytest.fixture(scope="session")
def seed() -> dict[str, Any]:
    """The repository's seed with PAY as these tests know it: versions 1.0.0 and 1.1.0, their
    issues and PAY-8 (PAY-1 .. PAY-8), the default workflow. The demo's versions, issues and
    the Bug workflow are left out, so the demo's data can change without touching these
    conformance tests (the whole seed is exercised by tests/plugins/jira and the demo)."""
    data = yaml.safe_load(SEED.read_text())
    project = data["jira"]["projects"][0]
    project.pop("workflows", None)
    project["versions"] = [v for v in project["versions"] if v["name"] in CLASSIC_VERSIONS]
    project["issues"] = [
        i
        for i in project["issues"]
        if not i.get("fixVersions") or set(i["fixVersions"]) <= CLASSIC_VERSIONS
    ]
    assert len(project["issues"]) == 8
    return data


@pytest.fixture(params=["Server", "Cloud"])
def deployment(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def _running() -> Iterator[dict[str, JiraSandbox]]:
    """One started sandbox per deployment for the session (stopping one costs ~0.5 s)."""
    servers = {name: JiraSandbox(deployment=name) for name in ("Server", "Cloud")}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def sandbox(_running: dict[str, JiraSandbox], seed: dict[str, Any], deployment: str) -> JiraSandbox:
    """A freshly seeded sandbox of each deployment."""
    server = _running[deployment]
    server.reset(seed)
    return server


@pytest.fixture
def server_sandbox(_running: dict[str, JiraSandbox], seed: dict[str, Any]) -> JiraSandbox:
    server = _running["Server"]
    server.reset(seed)
    return server


@pytest.fixture
def cloud_sandbox(_running: dict[str, JiraSandbox], seed: dict[str, Any]) -> JiraSandbox:
    server = _running["Cloud"]
    server.reset(seed)
    return server


def connect(server: JiraSandbox, **options: Any) -> JIRA:
    client = JIRA(server=server.url, basic_auth=("sandbox", "sandbox"), max_retries=3, **options)
    client._session.max_retry_delay = 0.05  # keep 429 back-off short in tests
    return client


@pytest.fixture
def jira_connect() -> Callable[..., JIRA]:
    """Open a `jira` client on a sandbox (fixture form of `connect`)."""
    return connect


@pytest.fixture
def client(sandbox: JiraSandbox) -> JIRA:
    return connect(sandbox)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """`JIRA.create_version` sleeps a second after the POST; not in tests."""
    import jira.client

    monkeypatch.setattr(jira.client.time, "sleep", lambda seconds: None)
    return lambda: None
