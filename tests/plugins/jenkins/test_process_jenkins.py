"""The release process with the Jenkins plugin against the Jenkins sandbox: the core drives
`itsm_bridge.process.Process` on a controlled clock (as `sync --once` does with `run_due`),
and every build is counted at the vendor boundary, the sandbox's request log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from fake_vendor import SimulatedCrash
from itsm_bridge.commands import ReleaseCommands
from itsm_bridge.inbox import process_inbox, receive, webhook_handlers
from itsm_bridge.models import JobState, Release, ReleaseState, TestSummary
from itsm_bridge.plugins import load_plugins
from itsm_bridge.process import Process
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge.store import open_store
from itsm_bridge_jenkins import JenkinsPlugin
from itsm_bridge_sandbox.jenkins import JenkinsSandbox
from support import ManualClock

pytestmark = pytest.mark.integration
SECRET = "hook-secret-1234"
JOBS = {
    "build": "payments/build",
    "deploy": "payments/deploy",
    "smoke_test": "payments/smoke",
    "rollback": "payments/rollback",
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 10, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Bridge:
    """The bridge with only the Jenkins plugin (and the defaults), restartable."""

    def __init__(
        self,
        tmp_path: Path,
        sandbox: JenkinsSandbox,
        jenkins_clock: ManualClock,
        jenkins: dict[str, Any] | None = None,
        **policy: Any,
    ) -> None:
        self.sandbox = sandbox
        self.jenkins_clock = jenkins_clock
        self.clock = Clock()
        self.settings = settings_from_mapping(
            {
                "database": f"sqlite:///{tmp_path}/bridge.db",
                "data_dir": str(tmp_path),
                "plugins": {
                    "enabled": ["jenkins"],
                    "jenkins": {
                        "url": sandbox.url,
                        "user": "sandbox",
                        "token": "sandbox",
                        "webhook_token": SECRET,
                        **(jenkins or {}),
                    },
                },
                "services": {"payments": {"ci": "payments-api", "jobs": JOBS}},
                "policy": {"verify_minutes": 0, "poll_seconds": 30, **policy},
            }
        )
        self.store = open_store(self.settings.database)
        self.restart()

    def restart(self) -> None:
        """A new process: plugins loaded again (a new Jenkins session), the same database."""
        self.process = Process(
            self.store, load_plugins(self.settings), self.settings, clock=self.clock
        )
        self.commands = ReleaseCommands(self.process)

    @property
    def plugin(self) -> JenkinsPlugin:
        plugin = self.process.host.plugin("jenkins")
        assert isinstance(plugin, JenkinsPlugin)
        return plugin

    def create(self, version: str) -> str:
        return self.commands.create("payments", version).id

    def release(self, rid: str) -> Release:
        with self.store.begin() as tx:
            release = tx.release(rid)
        assert release is not None
        return release

    def steps(self, rid: str) -> dict[str, tuple[str, str]]:
        with self.store.begin() as tx:
            return {s.name: (s.status, s.detail) for s in tx.steps(rid)}

    def events(self, rid: str) -> list[Any]:
        with self.store.begin() as tx:
            return list(tx.events(rid))

    def cycle(self, seconds: float = 30, jenkins_seconds: float = 1.0) -> None:
        """One `sync` pass after `seconds` of bridge time and `jenkins_seconds` of Jenkins'."""
        self.clock.now += timedelta(seconds=seconds)
        self.jenkins_clock.tick(jenkins_seconds)
        self.process.run_due()
        self.approve_awaited()

    def approve_awaited(self) -> None:
        with self.store.begin() as tx:
            awaiting = [
                r.id
                for r in tx.releases_in({ReleaseState.PLANNED})
                if any(
                    s.number == 7
                    and s.status == "waiting"
                    and (s.state.get("approval") or {}).get("status") == "pending"
                    for s in tx.steps(r.id)
                )
            ]
        for rid in awaiting:
            self.commands.approve(rid, note="CAB ok")

    def run_until(self, rid: str, *states: str, cycles: int = 40) -> Release:
        for _ in range(cycles):
            if self.release(rid).state.value in states:
                return self.release(rid)
            self.cycle()
        raise AssertionError(f"{rid} is {self.release(rid).state.value}: {self.steps(rid)}")


@pytest.fixture
def bridge(tmp_path: Path, jenkins_sandbox: JenkinsSandbox, clock: ManualClock) -> Bridge:
    return Bridge(tmp_path, jenkins_sandbox, clock)


def builds_of(sandbox: JenkinsSandbox, job: str) -> list[dict[str, str]]:
    """Each build's parameters, oldest first."""
    return [
        {p["name"]: p["value"] for p in b["actions"][0]["parameters"]}
        for b in reversed(sandbox.builds(job))
    ]


def triggers(sandbox: JenkinsSandbox, job: str) -> int:
    path = "/job/" + "/job/".join(job.split("/")) + "/buildWithParameters"
    return len(sandbox.requests_to("POST", path))


def test_build_deploy_and_smoke_test_run_in_jenkins(bridge: Bridge) -> None:
    rid = bridge.create("1.4.0")
    release = bridge.run_until(rid, "closed")
    sandbox = bridge.sandbox
    assert builds_of(sandbox, "payments/build") == [
        {"RELEASE_ID": rid, "SERVICE": "payments", "VERSION": "1.4.0", "CHANGE": ""}
    ]
    [deploy] = builds_of(sandbox, "payments/deploy")
    [smoke] = builds_of(sandbox, "payments/smoke")
    assert (deploy["RELEASE_ID"], deploy["TASK"]) == (rid, "deploy")
    assert (smoke["RELEASE_ID"], smoke["TASK"]) == (rid, "smoke-test")
    assert builds_of(sandbox, "payments/rollback") == []
    assert [triggers(sandbox, j) for j in JOBS.values()] == [1, 1, 1, 0]
    # step 4's result is recorded on the release
    assert release.build is not None
    assert (release.build.job, release.build.number, release.build.state) == (
        "payments/build",
        1,
        JobState.SUCCEEDED,
    )
    assert release.build.tests == TestSummary(passed=42, failed=0, skipped=2)
    assert release.build.artifacts == [
        f"{sandbox.url}/job/payments/job/build/1/artifact/dist/payments-1.4.0.tar.gz"
    ]
    assert "tests: 42 passed, 0 failed, 2 skipped" in bridge.steps(rid)["build"][1]


def test_a_failing_smoke_test_rolls_back_to_the_previous_version(bridge: Bridge) -> None:
    first = bridge.create("1.0.0")
    bridge.run_until(first, "closed")
    rid = bridge.create("1.1.0")  # the seed fails the smoke test of 1.1.0
    release = bridge.run_until(rid, "closed")
    assert "smoke" in release.failure_reason.lower()
    states = [e.message.split(":")[0] for e in bridge.events(rid) if e.kind == "state"]
    assert states[-4:] == [
        "verifying -> failed",
        "failed -> rolling_back",
        "rolling_back -> rolled_back",
        "rolled_back -> closed",
    ]
    [rollback] = builds_of(bridge.sandbox, "payments/rollback")
    assert rollback["ROLLBACK_TO"] == "1.0.0"
    assert (rollback["RELEASE_ID"], rollback["TASK"], rollback["VERSION"]) == (
        rid,
        "rollback",
        "1.1.0",
    )
    assert triggers(bridge.sandbox, "payments/smoke") == 2  # one per release
    assert triggers(bridge.sandbox, "payments/rollback") == 1


def test_failed_tests_over_the_limit_block_the_release(bridge: Bridge) -> None:
    bridge.sandbox.script(
        "payments/build", result="UNSTABLE", tests={"passed": 40, "failed": 2, "skipped": 0}
    )
    rid = bridge.create("1.4.0")
    release = bridge.run_until(rid, "blocked")
    status, detail = bridge.steps(rid)["evaluate"]
    assert status == "failed"
    assert "2 failed test(s) in build payments/build #1; policy allows 0" in detail
    assert release.build is not None and release.build.state == JobState.UNSTABLE
    for _ in range(3):
        bridge.cycle()
    assert triggers(bridge.sandbox, "payments/deploy") == 0


class CrashAfterTrigger(HTTPAdapter):
    """Jenkins receives the trigger; the bridge dies before it reads the answer."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        response = super().send(request, *args, **kwargs)
        if request.method == "POST":
            raise SimulatedCrash("killed between the trigger and the queue's answer")
        return response


def test_a_restart_between_the_trigger_and_the_queue_s_answer_builds_once(
    bridge: Bridge,
) -> None:
    rid = bridge.create("1.4.0")
    bridge.plugin.client.session.mount("http://", CrashAfterTrigger())
    with pytest.raises(SimulatedCrash):
        bridge.process.run_due()
    assert triggers(bridge.sandbox, "payments/build") == 1  # Jenkins queued it
    with bridge.store.begin() as tx:
        build_step = next(s for s in tx.steps(rid) if s.number == 4)
    assert "job" not in build_step.state  # the reference was never committed
    bridge.restart()
    bridge.cycle(jenkins_seconds=0)  # at once: the build still waits in Jenkins' queue
    assert triggers(bridge.sandbox, "payments/build") == 1
    with bridge.store.begin() as tx:
        build_step = next(s for s in tx.steps(rid) if s.number == 4)
    assert build_step.state["job"]["queue_id"] == "1"  # the queued item is the build
    bridge.run_until(rid, "closed")
    assert [triggers(bridge.sandbox, j) for j in JOBS.values()] == [1, 1, 1, 0]
    assert len(bridge.sandbox.builds("payments/build")) == 1


def test_a_notification_finishes_a_job_before_the_next_poll(bridge: Bridge) -> None:
    """Polling every 30 minutes; the FINALIZED delivery wakes the release at once."""
    bridge.settings.policy.poll_seconds = 1800
    handler = webhook_handlers(bridge.process.host)["jenkins"]
    rid = bridge.create("1.4.0")
    bridge.cycle(seconds=0, jenkins_seconds=0)  # the build is triggered
    assert bridge.steps(rid)["build"][0] in ("running", "waiting")
    bridge.jenkins_clock.tick(5)  # Jenkins builds it...
    bridge.cycle(seconds=1, jenkins_seconds=0)  # ...but the step is not due for 30 minutes
    assert bridge.steps(rid)["build"][0] == "waiting"
    polls = len(bridge.sandbox.requests_to("GET", "/queue/item/"))

    finalized = {
        "name": "build",
        "url": "job/payments/job/build/",
        "build": {
            "full_url": f"{bridge.sandbox.url}/job/payments/job/build/1/",
            "number": 1,
            "phase": "FINALIZED",
            "status": "SUCCESS",
            "url": "job/payments/job/build/1/",
            "parameters": {"RELEASE_ID": rid},
        },
    }
    body = json.dumps(finalized).encode()
    assert receive(bridge.store, handler, {}, body, {"token": SECRET}).status == 202
    assert process_inbox(bridge.store, bridge.process) == []
    bridge.process.run_due()  # no time passed: the release was woken
    assert bridge.steps(rid)["build"][0] == "done"
    assert len(bridge.sandbox.requests_to("GET", "/queue/item/")) == polls + 1  # one look
    assert bridge.release(rid).build is not None


def test_a_wrong_webhook_token_is_refused_and_nothing_is_stored(bridge: Bridge) -> None:
    handler = webhook_handlers(bridge.process.host)["jenkins"]
    body = b'{"url": "job/payments/job/build/", "build": {"number": 1, "phase": "FINALIZED"}}'
    reception = receive(bridge.store, handler, {}, body, {"token": "wrong"})
    assert reception.status == 401
    with bridge.store.begin() as tx:
        assert tx.inbox_pending(limit=10) == []


def test_jenkins_unreachable_makes_the_release_wait_not_fail(
    tmp_path: Path, jenkins_sandbox: JenkinsSandbox, clock: ManualClock
) -> None:
    bridge = Bridge(tmp_path, jenkins_sandbox, clock, jenkins={"retries": 1}, give_up_after="1h")
    rid = bridge.create("1.4.0")
    bridge.cycle(jenkins_seconds=0)  # the build is queued
    jenkins_sandbox.stop()
    for _ in range(4):  # 2 minutes of polling an unreachable Jenkins
        bridge.cycle()
    status, detail = bridge.steps(rid)["build"]
    assert status == "waiting"
    assert "transient failure" in detail and "ConnectionError" in detail
    assert bridge.release(rid).state.value == "planned"
