"""`follow_job`: a start is a first attempt only once, for a task this run created."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.jobs import follow_job
from itsm_bridge.models import JobRef, Release
from itsm_bridge.outcome import StepContext
from itsm_bridge.plugins import PluginHost
from itsm_bridge.store import StepRow


class Starts:
    def __init__(self) -> None:
        self.first_attempts: list[bool] = []

    @hookimpl
    def start_job(
        self, release: Release, purpose: str, params: dict[str, str], first_attempt: bool
    ) -> JobRef:
        self.first_attempts.append(first_attempt)
        return JobRef(system="ci", job="r", purpose=purpose, queue_id="7")


def host_with(plugin: Any) -> PluginHost:
    host = PluginHost()
    host.register(plugin, "ci", version="0", module="tests")
    return host


def context(unstarted: set[str]) -> StepContext:
    release = Release(id="rel-1", service="payments", version="2.0.0")
    step = StepRow(number=14, name="rollback", status="running")
    now = datetime(2026, 12, 3, tzinfo=UTC)
    return StepContext(release=release, step=step, tasks=[], core={}, now=now, unstarted=unstarted)


def test_the_first_start_of_a_task_this_run_created_is_its_first_attempt_and_only_once() -> None:
    starts = Starts()
    host = host_with(starts)
    ctx = context({"rollback"})
    for _ in range(2):
        _, job, started = follow_job(
            host, ctx, "rollback", None, {"RELEASE_ID": "rel-1"}, "rollback"
        )
        assert started and job is not None and job.queue_id == "7"
    assert starts.first_attempts == [True, False]
    assert ctx.unstarted == set()


def test_a_task_the_run_did_not_create_and_the_build_always_look_first() -> None:
    starts = Starts()
    host = host_with(starts)
    ctx = context({"deploy"})
    follow_job(host, ctx, "rollback", None, {"RELEASE_ID": "rel-1"}, "rollback")
    follow_job(host, ctx, "build", None, {"RELEASE_ID": "rel-1"})
    assert starts.first_attempts == [False, False]
    assert ctx.unstarted == {"deploy"}
