"""Fixtures the daemon's integration tests share: a free port for the daemon and the sandbox
(Jira, ServiceNow, Jenkins) serving on free ports of its own, which tells the daemon at
`port` when Jenkins jobs end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration.daemon_support import free_port, sandbox_for
from itsm_bridge_sandbox import Sandbox


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def sandbox(port: int) -> Iterator[Sandbox]:
    server = sandbox_for(port)
    yield server
    server.stop()
