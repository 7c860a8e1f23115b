"""Acceptance of `itsm-bridge run` (issue 11): the daemon as a subprocess against the sandbox.

- a release created through `POST /api/v1/releases` closes, woken by Jenkins' webhooks;
- webhooks without or with a wrong token (401), malformed JSON (400) or a payload missing
  required fields (422) store nothing;
- SIGTERM mid-release exits 0 within 10 s, and a restart completes the release with no
  duplicate anywhere, whether the step in flight finished before the deadline or not;
- /readyz fails while the database is unreachable and recovers after (PostgreSQL behind a
  TCP proxy the test stops and starts).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from integration.daemon_support import (
    JENKINS_HOOK,
    Bridge,
    assert_no_duplicates,
    servicenow_creates,
    wait_until,
    write_config,
)
from integration.tcp_proxy import TcpProxy
from itsm_bridge.store import schema as t
from itsm_bridge_jenkins.webhook import dedupe_key as jenkins_dedupe_key
from itsm_bridge_sandbox import Sandbox

pytestmark = pytest.mark.integration


@pytest.fixture
def bridges() -> Iterator[list[Bridge]]:
    started: list[Bridge] = []
    yield started
    for bridge in started:
        bridge.kill()


def inbox_rows(database: str, dedupe_key: str) -> int:
    """The inbox's rows with this key (the sandbox's own late notifications and the pollers'
    work items may arrive meanwhile: they are not what the test sends)."""
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).where(t.inbox.c.dedupe_key == dedupe_key)
        count = int(conn.execute(query).scalar_one())
    engine.dispose()
    return count


def scope_of(sandbox: Sandbox, version: str) -> list[str]:
    return sandbox.jira.issue_keys(f'project = PAY AND fixVersion = "{version}"')


def test_a_release_created_through_the_api_closes_and_bad_webhooks_store_nothing(
    tmp_path: Path, port: int, sandbox: Sandbox, bridges: list[Bridge]
) -> None:
    database = f"sqlite:///{tmp_path}/bridge.db"
    config = write_config(tmp_path / "bridge.yaml", database, port, sandbox)
    bridge = Bridge(config, port)
    bridges.append(bridge.start("--log-format", "json"))
    scope = scope_of(sandbox, "1.4.0")
    assert scope

    rid = bridge.create("1.4.0", name="Faster refunds")
    data = bridge.wait_done(rid, timeout=60)
    assert data["state"] == "closed", data["steps"]
    assert_no_duplicates(sandbox, rid, scope)
    assert sandbox.jira.version("PAY", "1.4.0")["released"] is True
    change = next(r for r in data["records"] if r["kind"] == "change_request")
    assert sandbox.servicenow.record("change_request", change["id"])["state"] == "3"
    metrics = requests.get(f"{bridge.base}/metrics", timeout=5).text
    assert 'itsm_bridge_webhooks_total{source="jenkins",status="202"}' in metrics
    assert 'itsm_bridge_outbound_requests_total{plugin="servicenow",status="201"}' in metrics
    assert 'itsm_bridge_step_duration_seconds_count{status="done",step="6"} 1.0' in metrics

    # webhooks refused by the real server store nothing
    hook = f"{bridge.base}/webhooks/jenkins"
    finalized = {
        "name": "build",
        "url": "job/payments/job/build/",
        "build": {"number": 99, "phase": "FINALIZED", "status": "SUCCESS"},
    }
    key = jenkins_dedupe_key("payments/build", 99, "FINALIZED")
    answers = [
        requests.post(hook, json=finalized, timeout=5).status_code,
        requests.post(f"{hook}?token=wrong", json=finalized, timeout=5).status_code,
        requests.post(f"{hook}?token={JENKINS_HOOK}", data=b"{not json", timeout=5).status_code,
        requests.post(f"{hook}?token={JENKINS_HOOK}", json={"name": "x"}, timeout=5).status_code,
    ]
    assert answers == [401, 401, 400, 422]
    assert inbox_rows(database, key) == 0
    accepted = requests.post(f"{hook}?token={JENKINS_HOOK}", json=finalized, timeout=5)
    assert accepted.status_code == 202
    assert inbox_rows(database, key) == 1

    code, seconds = bridge.stop(signal.SIGINT)
    assert (code, seconds < 10) == (0, True)
    lines = [json.loads(line) for line in bridge.log().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    assert sum("webhooks/jenkins" in str(x.get("path")) for x in lines) >= 4  # once each
    assert JENKINS_HOOK not in bridge.log()  # the token travelled in the query string


class SlowChange:
    """Holds the sandbox's `POST change_request` (step 6) for `seconds`; `entered` is set
    when it arrives, `served` once ServiceNow answered it."""

    def __init__(self, sandbox: Sandbox, seconds: float) -> None:
        self.seconds = seconds
        self.entered = threading.Event()
        self.sandbox = sandbox
        sandbox.servicenow.app.before.insert(0, self)

    def __call__(self, request: Any) -> None:
        if request.method == "POST" and request.path == "/api/now/table/change_request":
            self.entered.set()
            time.sleep(self.seconds)

    def served(self) -> bool:
        return bool(self.sandbox.servicenow.requests_to("POST", "/api/now/table/change_request"))


@pytest.mark.parametrize(
    ("hold", "deadline", "finishes"),
    [(1.0, 3, True), (3.0, 1, False)],
    ids=["the step in flight finishes", "the step in flight outlives the deadline"],
)
def test_sigterm_mid_release_exits_0_and_a_restart_completes_it_once(
    tmp_path: Path,
    port: int,
    sandbox: Sandbox,
    bridges: list[Bridge],
    hold: float,
    deadline: int,
    finishes: bool,
) -> None:
    database = f"sqlite:///{tmp_path}/bridge.db"
    config = write_config(
        tmp_path / "bridge.yaml", database, port, sandbox, shutdown_seconds=deadline
    )
    slow = SlowChange(sandbox, hold)
    first = Bridge(config, port)
    bridges.append(first.start())
    rid = first.create("1.4.0")
    assert slow.entered.wait(30), first.log()
    code, seconds = first.stop(signal.SIGTERM)
    assert code == 0, first.log()[-3000:]
    assert seconds < 10
    assert f"steps in flight have {deadline}" in first.log()
    if finishes:  # the step committed before the exit: its change is on the release
        assert seconds >= hold - 0.5
        assert "lease dropped" not in first.log()
    else:  # it was abandoned at the deadline (its lease dropped); ServiceNow made it later
        assert deadline <= seconds < hold
        assert f"release {rid}: its step did not finish in time; lease dropped" in first.log()
        wait_until(slow.served, timeout=10)
    with sa.create_engine(database).connect() as conn:
        kinds = conn.execute(
            sa.select(t.records.c.kind).where(t.records.c.release_id == rid)
        ).scalars()
        assert ("change_request" in list(kinds)) is finishes

    slow.seconds = 0
    second = Bridge(config, port)
    bridges.append(second.start())
    data = second.wait_done(rid, timeout=60)
    assert data["state"] == "closed", data["steps"]
    assert_no_duplicates(sandbox, rid, scope_of(sandbox, "1.4.0"))
    assert servicenow_creates(sandbox, rid)["change_request"] == 1
    assert len(sandbox.servicenow.requests_to("POST", "/api/now/table/change_request")) == 1


def test_readyz_fails_while_the_database_is_unreachable_and_recovers(
    tmp_path: Path, port: int, sandbox: Sandbox, bridges: list[Bridge], postgres_server: str
) -> None:
    engine = sa.create_engine(postgres_server)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    real = sa.engine.make_url(postgres_server)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    proxy.start()
    try:
        database = real.set(port=proxy.port).render_as_string(hide_password=False)
        config = write_config(tmp_path / "bridge.yaml", database, port, sandbox)
        bridge = Bridge(config, port)
        bridges.append(bridge.start())

        def ready() -> int:
            return requests.get(f"{bridge.base}/readyz", timeout=10).status_code

        wait_until(lambda: ready() == 200, timeout=10)
        proxy.stop()  # the database is unreachable: connections refused, open ones cut
        started = time.monotonic()
        wait_until(lambda: ready() == 503, timeout=10)
        assert time.monotonic() - started < 5
        assert requests.get(f"{bridge.base}/healthz", timeout=5).status_code == 200  # alive
        proxy.start()
        started = time.monotonic()
        wait_until(lambda: ready() == 200, timeout=15)
        assert time.monotonic() - started < 5
        rid = bridge.create("1.4.0")  # and it works again
        assert bridge.wait_done(rid, timeout=60)["state"] == "closed"
        assert bridge.stop()[0] == 0
        assert "lost the poller lock" in bridge.log()
    finally:
        proxy.stop()
