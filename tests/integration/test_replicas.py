"""Acceptance of several replicas on PostgreSQL (issue 11): two `itsm-bridge run` processes on
one database (a fresh schema per test), against one sandbox. Waiting steps are not polled
(`poll_seconds` 600) and Jenkins notifies replica B only, while A holds the poller lock and so
processes the inbox: releases progress only because B's stored webhooks wake A (NOTIFY) and
A's wake-ups reach both.

- 20 releases created concurrently through both replicas complete, each exactly once;
- a webhook stored by one replica wakes the leader at once (NOTIFY), however idle it is;
- `kill -9` of the replica holding the poller lock: the other takes over the pollers and the
  releases the dead one had leased within 2 lease periods, with no duplicate change, change
  task, comment or Jenkins build.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration.daemon_support import (
    Bridge,
    assert_no_duplicates,
    free_port,
    sandbox_for,
    wait_until,
    write_config,
)
from itsm_bridge.store import schema as t
from itsm_bridge_sandbox import Sandbox

pytestmark = pytest.mark.integration

LEASE_SECONDS = 3
LEADS = "this replica holds the poller lock"


@pytest.fixture
def database(postgres_server: str) -> str:
    engine = sa.create_engine(postgres_server)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return postgres_server


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture
def sandbox(ports: tuple[int, int]) -> Iterator[Sandbox]:
    server = sandbox_for(ports[1])  # Jenkins notifies B only: A, the leader, hears by NOTIFY
    yield server
    server.stop()


@pytest.fixture
def lease_seconds(request: pytest.FixtureRequest) -> int:
    return int(getattr(request, "param", LEASE_SECONDS))


@pytest.fixture
def replicas(
    tmp_path: Path, database: str, ports: tuple[int, int], sandbox: Sandbox, lease_seconds: int
) -> Iterator[list[Bridge]]:
    made = []
    # releases of one service at once: ServiceNow's conflict check would block all but one
    servicenow = {"conflict_check": False}
    for name, port in zip(("a", "b"), ports, strict=True):
        path = tmp_path / f"{name}.yaml"
        # no polling of waiting steps: every wake-up is an event
        config = write_config(
            path, database, port, sandbox, servicenow, 600, lease_seconds=lease_seconds
        )
        made.append(Bridge(config, port, name=name))
    yield made
    for bridge in made:
        bridge.kill()


def start_both(a: Bridge, b: Bridge) -> None:
    """A first, so that A holds the poller lock; then B, which does not."""
    a.start()
    wait_until(lambda: LEADS in a.log(), timeout=10, what=a.log)
    b.start()
    time.sleep(0.5)
    assert LEADS not in b.log()


def test_twenty_releases_created_concurrently_through_both_complete_exactly_once(
    replicas: list[Bridge], sandbox: Sandbox
) -> None:
    a, b = replicas
    start_both(a, b)
    versions = [f"2.0.{n}" for n in range(20)]
    with ThreadPoolExecutor(20) as pool:
        rids = list(pool.map(lambda n: replicas[n % 2].create(versions[n]), range(20)))
    assert len(set(rids)) == 20
    deadline = time.monotonic() + 60  # every wake-up an event: far less in fact
    for n, rid in enumerate(rids):
        data = replicas[n % 2].wait_done(rid, timeout=max(1.0, deadline - time.monotonic()))
        assert data["state"] == "closed", (rid, data["steps"])
    for rid in rids:
        assert_no_duplicates(sandbox, rid)
    # both replicas advanced releases (the claims spread the work)
    for bridge in replicas:
        assert "jira: version 2.0." in bridge.log(), bridge.name


# A long lease: A has no lease expiry of B's to wake up for either
@pytest.mark.parametrize("lease_seconds", [60], indirect=True)
def test_a_webhook_a_replica_stored_wakes_the_quiet_leader_at_once(
    replicas: list[Bridge],
) -> None:
    """B (not the leader) hears Jenkins; A, idle, processes the inbox only because B's NOTIFY
    wakes it: without it each job's end would wait for A's next pass (up to a minute)."""
    a, b = replicas
    start_both(a, b)
    started = time.monotonic()
    rid = b.create("2.1.0")
    data = b.wait_done(rid, timeout=15)
    assert data["state"] == "closed", data["steps"]
    print(f"closed in {time.monotonic() - started:.1f} s")


def leases_of(database: str, pid: int) -> list[str]:
    engine = sa.create_engine(database)
    c = t.releases.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(c.id, c.lease_owner).where(c.lease_owner.is_not(None)))
        held = [str(rid) for rid, owner in rows if re.search(rf":{pid}:[0-9a-f]{{6}}$", owner)]
    engine.dispose()
    return held


def test_kill_9_of_the_leader_hands_its_pollers_and_leased_releases_to_the_other(
    replicas: list[Bridge], sandbox: Sandbox, database: str
) -> None:
    a, b = replicas
    start_both(a, b)
    versions = ["1.0.0", "1.4.0", "3.0.0", "3.0.1"]
    rids = [replicas[n % 2].create(version) for n, version in enumerate(versions)]
    held: list[str] = []

    def a_holds_a_lease() -> bool:
        held[:] = leases_of(database, a.pid)
        return bool(held)

    wait_until(a_holds_a_lease, timeout=30, every=0.005, what="A never held a release's lease")
    a.kill()  # kill -9: no graceful anything
    killed = time.monotonic()
    wait_until(lambda: LEADS in b.log(), timeout=2 * LEASE_SECONDS, what=b.log)
    took_pollers = time.monotonic() - killed

    def b_took_them() -> bool:
        return all(rid not in leases_of(database, a.pid) for rid in held)

    wait_until(b_took_them, timeout=2 * LEASE_SECONDS, every=0.05, what=b.log)
    took_releases = time.monotonic() - killed
    assert took_pollers < 2 * LEASE_SECONDS and took_releases < 2 * LEASE_SECONDS
    print(f"pollers taken over in {took_pollers:.1f} s, releases in {took_releases:.1f} s")
    for rid in rids:
        data = b.wait_done(rid, timeout=90)
        assert data["state"] == "closed", (rid, data["steps"])
    for rid, version in zip(rids, versions, strict=True):
        scope = sandbox.jira.issue_keys(f'project = PAY AND fixVersion = "{version}"')
        assert_no_duplicates(sandbox, rid, scope)
