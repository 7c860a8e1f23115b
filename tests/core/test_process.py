"""The process gates and paths, driven with a fake vendor plugin and a controlled clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fake_vendor import FakeVendorPlugin
from itsm_bridge import steps_close
from itsm_bridge.errors import TransientError, UsageError
from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import Event, ExternalRecord, JobRef, JobStatus, Release, Signal, TaskSpec
from itsm_bridge.outcome import StepContext
from itsm_bridge.process import _Run
from itsm_bridge.store import Tx
from itsm_bridge.views import release_json, render_show
from process_harness import JOBS, Harness


def lease_calls(monkeypatch: pytest.MonkeyPatch, method: str) -> list[str]:
    """The release ids `Tx.<method>` (`lease_release`, `renew_release_lease`) is called with
    from now on: the database calls themselves, counted."""
    calls: list[str] = []
    original = getattr(Tx, method)

    def counted(self: Tx, release_id: str, owner: str, ttl: timedelta) -> bool:
        calls.append(release_id)
        return bool(original(self, release_id, owner, ttl))

    monkeypatch.setattr(Tx, method, counted)
    return calls


def test_automated_release_with_jobs_and_records(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid = h.create()
    release = h.run(rid, cycles=6)
    assert release.state.value == "verifying"
    started = {j["purpose"]: j for j in h.vendor.jobs_started}
    assert set(started) == {"build", "deploy", "smoke_test"}
    change = release.record("fake", "change_request")
    assert change is not None
    assert started["deploy"]["CHANGE"] == change.number
    assert started["deploy"]["RELEASE_ID"] == rid
    assert started["deploy"]["VERSION"] == "1.0.0"
    assert started["build"]["CHANGE"] == ""  # the build starts before the change exists
    release = h.run(rid, minutes=31, cycles=2)
    assert release.state.value == "closed"
    assert "Released: payments 1.0.0: release" in str(h.vendor.records)


def test_failed_tests_above_policy_block_the_release(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.vendor.tests.failed = 3
    rid = h.create()
    release = h.run(rid, cycles=4)
    assert release.state.value == "blocked"
    status, detail = h.steps(rid)["evaluate"]
    assert status == "failed"
    assert "3 failed test(s)" in detail
    assert h.run(rid, cycles=2).state.value == "blocked"  # nothing runs while blocked
    assert not any(j["purpose"] == "deploy" for j in h.vendor.jobs_started)


def test_missing_backout_plan_is_a_blocker(tmp_path: Path) -> None:
    h = Harness(tmp_path, service={"jobs": {"deploy": "d"}})
    rid = h.create()
    assert h.run(rid, cycles=3).state.value == "blocked"
    assert "no back-out plan" in h.steps(rid)["evaluate"][1]


def test_backout_policy_can_be_relaxed(tmp_path: Path) -> None:
    h = Harness(tmp_path, service={"jobs": {"deploy": "d"}}, policy={"require_backout_plan": False})
    rid = h.create()
    assert h.run(rid, cycles=3).state.value != "blocked"


def test_failed_build_blocks(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.vendor.job_results["build"] = "failed"
    rid = h.create()
    assert h.run(rid, cycles=3).state.value == "blocked"
    assert h.steps(rid)["build"][0] == "failed"


def test_a_retry_after_a_failed_build_builds_again(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.vendor.job_results["build"] = "failed"
    rid = h.create()
    assert h.run(rid, cycles=3).state.value == "blocked"
    h.vendor.job_results["build"] = "succeeded"  # the fix was pushed
    h.commands.retry(rid)
    h.run(rid, cycles=4)
    assert h.steps(rid)["build"][0] == "done", h.steps(rid)["build"]
    builds = [k for k in h.vendor.records if k.startswith(f"job/{rid}:build:")]
    assert builds == [f"job/{rid}:build:", f"job/{rid}:build:#2"]  # the failed one, a new one


def test_rejected_change_blocks_with_the_comment(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.vendor.approval = "rejected"
    rid = h.create()
    assert h.run(rid, cycles=3).state.value == "blocked"
    assert "rejected by cab" in h.steps(rid)["evaluate"][1]


def test_failed_smoke_test_rolls_back_to_previous_version(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    first = h.create(version="1.0.0")
    h.run(first, minutes=31, cycles=8)
    assert h.release(first).state.value == "closed"
    h.vendor.job_results["smoke_test"] = "failed"
    rid = h.create(version="1.1.0")
    release = h.run(rid, cycles=12)
    assert release.state.value == "closed", h.steps(rid)
    assert release.failure_reason.lower().startswith("smoke test failed")
    rollback = next(j for j in h.vendor.jobs_started if j["purpose"] == "rollback")
    assert rollback["ROLLBACK_TO"] == "1.0.0"
    assert rollback["RELEASE_ID"] == rid
    assert h.vendor.created["backlog_return"] == 1
    states = [m.split(":")[0] for m in h.events(rid, "state")]
    assert states[-5:] == [
        "implementing -> verifying",
        "verifying -> failed",
        "failed -> rolling_back",
        "rolling_back -> rolled_back",
        "rolled_back -> closed",
    ]
    assert any(k.startswith(f"notification/{rid}:Rolled back") for k in h.vendor.records)


def test_alert_during_watch_period_rolls_back(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid = h.create()
    release = h.run(rid, cycles=6)
    assert release.state.value == "verifying"
    assert release.deploy_started_at is not None
    h.vendor.signals = [
        Signal(
            source="alertmanager",
            key="old",
            summary="before the deployment",
            at=release.deploy_started_at - timedelta(minutes=5),
        ),
    ]
    assert h.run(rid).state.value == "verifying"  # a signal older than the deployment
    h.vendor.signals.append(
        Signal(source="alertmanager", key="fp1", summary="HighErrorRate", at=h.clock.now)
    )
    release = h.run(rid, cycles=6)
    assert release.state.value == "closed"
    assert release.failure_reason == "alertmanager: HighErrorRate"
    assert h.steps(rid)["detect"][0] == "failed"


def test_major_release_early_life_support(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"els_days": 7})
    rid = h.create(major=True)
    release = h.run(rid, minutes=31, cycles=8)
    assert release.state.value == "early_life_support"
    h.vendor.signals = [
        Signal(source="servicenow", key="INC1", summary="INC0010001 opened", at=h.clock.now)
    ]
    release = h.run(rid, minutes=6, cycles=2)
    assert release.state.value == "early_life_support"  # no auto rollback by default
    told = [k.split(":", 1)[1] for k in h.vendor.records if k.startswith("notification/")]
    assert told == [
        "Released: payments 1.0.0: release",
        "Early life support started: payments 1.0.0: release",
        "Incident during early life support: payments 1.0.0: release",
    ]
    started = next(e for e in events_of(h, rid) if e.message.startswith("succeeded -> early"))
    h.clock.now = started.at + timedelta(days=7, seconds=-1)  # a second before the end
    release = h.run(rid, minutes=0, cycles=1)
    assert release.state.value == "early_life_support"
    h.clock.now = started.at + timedelta(days=7)  # on time, to the second
    release = h.run(rid, minutes=0, cycles=1)
    assert release.state.value == "closed"
    assert h.steps(rid)["early_life_support"][0] == "done"
    ended = next(e for e in events_of(h, rid) if e.message.startswith("early_life_support ->"))
    assert ended.at == started.at + timedelta(days=7)
    summary = h.events(rid, "notified")[-1]
    assert summary.startswith("Early life support ended: payments 1.0.0: release")


def test_early_life_support_ended_early_by_a_person(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"els_days": 7})
    rid = h.create(major=True)
    assert h.run(rid, minutes=31, cycles=8).state.value == "early_life_support"
    h.commands.end_support(rid, note="stable for two days")
    release = h.run(rid, minutes=1)
    assert release.state.value == "closed"
    assert h.steps(rid)["early_life_support"] == (
        "done",
        "stakeholders notified: Early life support ended: payments 1.0.0: release",
    )
    assert h.events(rid, "support") == ["early life support ended early: stable for two days"]
    ended = h.vendor.notices[-1]
    assert (ended.kind, ended.text) == (
        "els_ended",
        "Early life support of payments 1.0.0: release ended early by cli: 0 incident(s).",
    )
    with pytest.raises(UsageError, match="not in early life support"):
        h.commands.end_support(rid)


def events_of(h: Harness, rid: str) -> list[Event]:
    with h.store.begin() as tx:
        return tx.events(rid)


def test_early_life_support_auto_rollback(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"els_auto_rollback": True})
    rid = h.create(major=True)
    assert h.run(rid, minutes=31, cycles=8).state.value == "early_life_support"
    h.vendor.signals = [Signal(source="alertmanager", key="a", summary="down", at=h.clock.now)]
    release = h.run(rid, minutes=6, cycles=6)
    assert release.state.value == "closed"
    assert release.failure_reason.startswith("during early life support")
    assert any(j["purpose"] == "rollback" for j in h.vendor.jobs_started)


def test_transient_failures_retry_with_backoff_then_need_a_human(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"retry_limit": 3, "give_up_after": "10m"})
    h.vendor.failures["change"] = [TransientError("503 from ServiceNow")] * 9
    rid = h.create()
    h.run(rid)
    status, detail = h.steps(rid)["change"]
    assert status == "waiting"
    assert "attempt 1" in detail
    h.run(rid, minutes=0.1)  # not yet due: backoff is 30 s, then 60 s, then 2 min ...
    assert "attempt 1" in h.steps(rid)["change"][1]
    h.run(rid, minutes=1)
    assert "attempt 2" in h.steps(rid)["change"][1]
    h.run(rid, minutes=2)
    assert "attempt 3" in h.steps(rid)["change"][1]  # the retry limit, but not 10 minutes yet
    assert h.release(rid).state.value == "planned"
    h.run(rid, minutes=4)
    assert "attempt 4" in h.steps(rid)["change"][1]
    release = h.run(rid, minutes=8)  # 15 minutes of failures: now it needs a human
    assert release.state.value == "blocked"
    assert h.steps(rid)["change"][1].startswith("gave up after 5 attempts in 15 min: 503")


def test_an_answer_resets_the_transient_clock(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"retry_limit": 2, "give_up_after": "5m"})
    h.vendor.failures["change"] = [TransientError("503")]
    rid = h.create()
    h.run(rid)
    assert "transient_since" in step_state(h, rid, 6)
    h.run(rid, minutes=1)
    assert h.steps(rid)["change"][0] == "done"
    assert "transient_since" not in step_state(h, rid, 6)


def step_state(h: Harness, rid: str, number: int) -> dict[str, Any]:
    with h.store.begin() as tx:
        return next(s.state for s in tx.steps(rid) if s.number == number)


def test_plugin_error_blocks_and_retry_resumes(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.vendor.failures["change"] = [ValueError("cmdb_ci payments-api not found")]
    rid = h.create()
    assert h.run(rid, cycles=2).state.value == "blocked"
    assert "cmdb_ci payments-api not found" in h.steps(rid)["change"][1]
    h.commands.retry(rid)
    release = h.run(rid, cycles=4)
    assert release.state.value in {"implementing", "verifying"}
    assert h.vendor.created["change"] == 1


def test_release_changed_is_redelivered_in_order(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid = h.create()
    h.vendor.failures["work_note"] = [RuntimeError("ServiceNow down")]
    h.run(rid, cycles=3)
    messages = h.events(rid)
    assert h.vendor.changes_seen == messages[: len(h.vendor.changes_seen)]
    assert len(h.vendor.changes_seen) == len(messages)


def test_deployment_waits_for_the_window(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        windows={
            "timezone": "Europe/Berlin",
            "maintenance": [
                {"name": "Weekly", "rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=22", "duration": "4h"}
            ],
        },
    )
    rid = h.create()
    release = h.run(rid, cycles=5)
    assert release.state.value == "scheduled"
    assert release.window_start == datetime(2026, 11, 28, 21, tzinfo=UTC)
    assert "waiting for the window" in h.steps(rid)["deploy"][1]
    h.clock.now = datetime(2026, 11, 28, 21, 0, 1, tzinfo=UTC)
    assert h.run(rid, minutes=0).state.value == "implementing"


def test_missed_window_blocks_and_retry_reschedules(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        windows={
            "timezone": "Europe/Berlin",
            "maintenance": [
                {"name": "Weekly", "rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=22", "duration": "4h"}
            ],
        },
    )
    rid = h.create()
    h.run(rid, cycles=5)
    h.clock.now = datetime(2026, 11, 29, 3, tzinfo=UTC)  # the daemon was down all night
    assert h.run(rid, minutes=0).state.value == "blocked"
    h.commands.retry(rid)
    release = h.run(rid, cycles=3)
    assert release.window_start == datetime(2026, 12, 5, 21, tzinfo=UTC)
    assert release.state.value == "scheduled"


WEEKLY = {
    "timezone": "Europe/Berlin",
    "maintenance": [
        {"name": "Weekly", "rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=22", "duration": "4h"}
    ],
}


@pytest.mark.parametrize("state", ["planned", "scheduled", "blocked"])
def test_cancel_is_allowed_before_deployment(tmp_path: Path, state: str) -> None:
    h = Harness(tmp_path, windows=WEEKLY)
    if state == "blocked":
        h.vendor.approval = "rejected"
    rid = h.create()
    if state != "planned":
        h.run(rid, cycles=4)
    assert h.release(rid).state.value == state
    h.commands.cancel(rid, "no longer needed")
    assert h.release(rid).state.value == "cancelled"


def test_signals_below_the_failure_severity_do_not_fail(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"verify_minutes": 30, "failure_severity": "critical"})
    rid = h.create()
    release = h.run(rid, cycles=6)
    assert release.state.value == "verifying"
    assert release.deploy_started_at is not None
    h.vendor.signals = [
        Signal(
            source="servicenow",
            key="INC9",
            summary="P3 incident",
            severity="warning",
            at=release.deploy_started_at.replace(microsecond=0),
        ),
    ]
    assert h.run(rid).state.value == "verifying"
    h.vendor.signals.append(
        Signal(
            source="servicenow",
            key="INC10",
            summary="P1 incident",
            severity="critical",
            at=release.deploy_started_at.replace(microsecond=0),
        )
    )
    assert h.run(rid).failure_reason == "servicenow: P1 incident"


def test_a_failing_rollback_waits_for_a_human_then_retry_finishes_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.vendor.job_results["smoke_test"] = "failed"
    h.vendor.failures["return_to_backlog"] = [ValueError("Jira refused the transition")]
    rid = h.create()
    release = h.run(rid, cycles=12)
    assert release.state.value == "rolling_back"
    steps = h.steps(rid)
    assert steps["rollback"][0] == "failed"
    assert "release retry" in steps["rollback"][1]
    assert steps["notify"][0] == "pending"  # nothing after the rollback runs
    h.commands.retry(rid)
    assert h.run(rid, cycles=4).state.value == "closed"
    assert h.vendor.created["backlog_return"] == 1


def test_whole_process_with_rollback_on_each_database(tmp_path: Path, database_url: str) -> None:
    """The same process code on SQLite and PostgreSQL."""
    h = Harness(tmp_path, database=database_url)
    ok = h.create(version="1.0.0")
    assert h.run(ok, minutes=31, cycles=8).state.value == "closed"
    h.vendor.job_results["smoke_test"] = "failed"
    failed = h.create(version="1.1.0")
    release = h.run(failed, cycles=12)
    assert release.state.value == "closed"
    assert release.failure_reason
    rollback = next(j for j in h.vendor.jobs_started if j["purpose"] == "rollback")
    assert rollback["ROLLBACK_TO"] == "1.0.0"
    with h.store.begin() as tx:
        assert len(tx.events(failed)) > 20
    h.store.close()


def test_a_release_leased_by_another_replica_is_left_alone(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid = h.create()
    with h.store.begin() as tx:
        assert tx.lease_release(rid, "other-replica", timedelta(minutes=5))
    assert h.process.advance(rid) is False
    assert h.steps(rid)["change"][0] == "pending"
    with h.store.begin() as tx:
        tx.drop_release_lease(rid, "other-replica")
    assert h.process.advance(rid) is True
    assert h.steps(rid)["change"][0] == "done"


def test_a_fresh_claim_is_the_lease_and_an_old_one_is_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)  # leases of 300 s (the default)
    rid = h.create()
    with h.store.begin() as tx:
        assert tx.claim_due(h.clock.now, h.process.owner, h.process.lease_ttl, 5) == [rid]
    leased = lease_calls(monkeypatch, "lease_release")
    assert h.process.advance(rid, claimed_at=time.monotonic()) is True
    assert leased == []  # the claim is the lease
    assert h.steps(rid)["change"][0] == "done"
    with h.store.begin() as tx:
        assert tx.lease_release(rid, "other-replica", timedelta(minutes=5))
        tx.wake(rid, h.clock.now)
    leased.clear()
    assert h.process.advance(rid, claimed_at=time.monotonic() - 151) is False  # past half
    assert leased == [rid]


class NoJobsPlugin(FakeVendorPlugin):
    """The fake vendor without a CI/CD system: every task is manual."""

    start_job = None  # type: ignore[assignment]
    job_status = None  # type: ignore[assignment]


def kinds(h: Harness, rid: str, kind: str) -> list[dict[str, Any]]:
    with h.store.begin() as tx:
        return [e.evidence for e in tx.events(rid) if e.kind == kind]


def test_the_events_plugins_write_for_people(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.vendor.approval = "pending"
    rid = h.create(type="emergency", reason="card payments fail")
    h.run(rid, cycles=3)
    h.run(rid, cycles=2)  # still waiting: the approval request is not repeated
    assert kinds(h, rid, "approval") == [{"status": "pending", "by": "", "comment": ""}]
    (findings,) = kinds(h, rid, "findings")
    assert findings == {
        "findings": [
            {
                "severity": "warning",
                "source": "policy",
                "message": "emergency change: card payments fail",
            }
        ]
    }
    (planned,) = kinds(h, rid, "tasks")
    assert [(t["key"], t["kind"], t["record"]["id"]) for t in planned["tasks"]] == [
        ("deploy", "automated", "TASK-deploy"),
        ("smoke-test", "automated", "TASK-smoke-test"),
    ]
    h.vendor.approval = "approved"
    h.run(rid, minutes=31, cycles=8)
    assert [a["status"] for a in kinds(h, rid, "approval")] == ["pending", "approved"]
    assert [(t["task"], t["status"]) for t in kinds(h, rid, "task")] == [
        ("deploy", "done"),
        ("smoke-test", "done"),
    ]
    assert h.release(rid).state.value == "closed"
    with h.store.begin() as tx:
        shown = release_json(tx, rid)["findings"]
    assert shown == findings["findings"]


def test_jobs_are_named_only_where_a_plugin_runs_them(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid = h.create()
    h.run(rid, cycles=3)
    assert h.release(rid).jobs == JOBS
    manual = Harness(tmp_path / "manual")
    manual.process.host.pm.unregister(name="fake")
    manual.process.host.register(NoJobsPlugin(manual.vendor), "fake", version="0", module="t")
    mid = manual.create()
    manual.run(mid, cycles=3)
    assert manual.release(mid).jobs == {}


def test_the_rollback_task_gets_its_record_and_is_closed(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.vendor.job_results["smoke_test"] = "failed"
    rid = h.create()
    release = h.run(rid, cycles=12)
    assert release.state.value == "closed"
    assert "task/" + f"{rid}:rollback" in h.vendor.records  # created through create_tasks
    assert h.vendor.calls["task_closed"] == 3  # deploy, smoke test and the rollback
    with h.store.begin() as tx:
        rollback = next(t for t in tx.tasks(rid) if t.key == "rollback")
    assert rollback.record is not None and rollback.record.id == "TASK-rollback"
    added = kinds(h, rid, "tasks")[-1]["tasks"]
    assert [t["key"] for t in added] == ["rollback"]


def test_task_done_closes_the_task_record_at_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, service={"jobs": {"rollback": "r"}})  # deploy and smoke are manual
    h.process.host.pm.unregister(name="fake")
    h.process.host.register(NoJobsPlugin(h.vendor), "fake", version="0", module="t")
    rid = h.create()
    h.run(rid, cycles=4)
    assert h.release(rid).state.value == "implementing"
    assert h.vendor.calls["task_closed"] == 0
    assert h.commands.task_done(rid, "deploy", note="rolled out by hand") == ""
    assert h.vendor.calls["task_closed"] == 1  # no cycle ran
    h.run(rid, cycles=2)
    assert h.vendor.calls["task_closed"] == 1  # and the cycle does not report it again
    (done,) = kinds(h, rid, "task")
    assert done == {
        "task": "deploy",
        "name": "Deploy",
        "status": "done",
        "note": "rolled out by hand",
    }


def test_a_person_s_rollback_skips_the_watch_instead_of_failing_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid = h.create()
    assert h.run(rid, cycles=6).state.value == "verifying"
    h.commands.rollback(rid, "error rate above 5%")
    steps = h.steps(rid)
    assert steps["detect"] == ("skipped", "skipped: rollback requested: error rate above 5%")


def test_service_levels_say_only_what_was_written(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid = h.create()
    h.run(rid, minutes=31, cycles=8)
    assert h.steps(rid)["service_levels"] == (
        "done",
        "service levels updated: service payments: version",
    )
    with h.store.begin() as tx:
        step = next(s for s in tx.steps(rid) if s.number == 17)
        step.status = "pending"
        tx.save_step(rid, step)
    with h.store.begin() as tx:
        release = tx.release(rid)
        assert release is not None
        ctx = StepContext(release=release, step=step, tasks=[], core={}, now=h.clock.now)
    again = steps_close.step_service_levels(h.process.env, ctx)
    assert again.detail == "service levels already current (fake)"


def test_a_cycle_reports_each_release_it_blocked(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.vendor.approval = "rejected"
    rid = h.create()
    failures = []
    for _ in range(4):
        h.clock.now += timedelta(minutes=1)
        failures += h.process.run_due().failures
    assert h.release(rid).state.value == "blocked"
    assert failures == [f"release {rid} is blocked: change rejected by cab"]  # once


def test_a_rollback_a_person_reports_failed_waits_for_them_without_looping(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, service={"jobs": {"rollback": "r"}})
    h.process.host.pm.unregister(name="fake")
    h.process.host.register(NoJobsPlugin(h.vendor), "fake", version="0", module="t")
    rid = h.create()
    h.run(rid, cycles=4)
    h.commands.task_done(rid, "deploy")
    h.run(rid)
    h.commands.task_done(rid, "smoke-test", failed=True, note="HTTP 500")
    assert h.run(rid).state.value == "rolling_back"
    h.commands.task_done(rid, "rollback", failed=True, note="database restore failed")
    closes = h.vendor.calls["task_closed"]
    release = h.run(rid, cycles=3)
    assert release.state.value == "rolling_back"
    status, detail = h.steps(rid)["rollback"]
    assert status == "failed"
    assert detail == (
        "the rollback failed (database restore failed): roll back by hand, then: "
        f"itsm-bridge release task-done {rid} rollback"
    )
    assert h.vendor.calls["task_closed"] <= closes + 1  # reported once, not in a loop
    h.commands.task_done(rid, "rollback", note="restored from last night's backup")
    assert h.run(rid, cycles=3).state.value == "closed"
    assert h.steps(rid)["rollback"][0] == "done"


class OrderWatcher:
    """Records, in order, the approval requests plugins hear and the approval reads."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def release_changed(self, release: Release, event: Event) -> None:
        if event.kind == "approval":
            self.seen.append(f"told: {event.evidence['status']}")

    @hookimpl
    def approval_status(self, release: Release) -> None:
        self.seen.append("read")


def test_approval_is_requested_before_it_is_read_also_after_a_retry(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    watcher = OrderWatcher()
    h.process.host.register(watcher, "watcher", version="0", module="t")
    h.vendor.approval = "rejected"
    rid = h.create()
    assert h.run(rid, cycles=4).state.value == "blocked"
    assert watcher.seen == ["told: pending", "read", "told: rejected"]
    watcher.seen.clear()
    h.vendor.approval = "approved"  # the approvers approve what is asked again
    h.commands.retry(rid)
    h.run(rid, cycles=2)
    assert watcher.seen[:3] == ["told: pending", "read", "told: approved"]


def test_a_cycle_reports_a_release_that_failed_and_rolls_back(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.vendor.job_results["smoke_test"] = "failed"
    rid = h.create()
    failures = []
    for _ in range(12):
        h.clock.now += timedelta(minutes=1)
        failures += h.process.run_due().failures
    assert h.release(rid).state.value == "closed"
    assert failures == [
        f"release {rid} failed (rolling_back): Smoke test failed: "
        "job smoke_test failed; tests: 10 passed, 0 failed"
    ]


def test_the_build_is_recorded_on_the_release_and_told_at_evaluation(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid = h.create()
    h.run(rid, cycles=6)
    build = h.release(rid).build
    assert build is not None
    assert (build.job, build.state.value, build.tests) == ("build", "succeeded", h.vendor.tests)
    (told,) = kinds(h, rid, "build")
    assert told["tests"] == {"passed": 10, "failed": 0, "skipped": 0}
    with h.store.begin() as tx:
        data = release_json(tx, rid)
    assert data["build"]["job"] == "build"
    assert "build: build succeeded, tests 10 passed / 0 failed / 0 skipped" in render_show(data)
    data["build"]["artifacts"] = ["https://ci/job/build/1/artifact/dist/payments-1.0.0.tar.gz"]
    assert "  artifact: https://ci/job/build/1/artifact/dist/payments-1.0.0.tar.gz" in (
        render_show(data)
    )


@pytest.mark.parametrize(
    ("policy", "result", "state"),
    [
        ({}, "unstable", "closed"),  # the deploy was UNSTABLE: a failure by default ...
        ({"unstable": "success"}, "unstable", "closed"),
        ({}, "aborted", "closed"),
    ],
)
def test_unstable_and_aborted_deployments_follow_the_policy(
    tmp_path: Path, policy: dict[str, Any], result: str, state: str
) -> None:
    h = Harness(tmp_path, policy={"verify_minutes": 0, **policy})
    h.vendor.job_results["deploy"] = result
    rid = h.create()
    release = h.run(rid, cycles=12)
    assert release.state.value == state
    failed = bool(release.failure_reason)
    assert failed == (policy.get("unstable") != "success")
    if result == "aborted":
        assert release.failure_reason.startswith("Deploy failed: job deploy aborted")
    elif failed:
        assert release.failure_reason == (
            "Deploy failed: job deploy unstable (policy.unstable: failure); "
            "tests: 10 passed, 0 failed"
        )


def test_the_newest_job_reference_is_kept_for_the_next_poll(tmp_path: Path) -> None:
    """A status may carry a better reference (the build number once the queue item became a
    build): the core stores it, so the next poll starts from it."""
    h = Harness(tmp_path)
    asked: list[str | None] = []
    original = FakeVendorPlugin.job_status

    class Numbering(FakeVendorPlugin):
        @hookimpl
        def job_status(self, job: JobRef) -> JobStatus:
            asked.append(job.queue_id)
            status = original(self, job)
            return status.model_copy(update={"job": job.model_copy(update={"queue_id": "7"})})

    h.process.host.pm.unregister(name="fake")
    h.process.host.register(Numbering(h.vendor), "fake", version="0", module="t")
    rid = h.create()
    h.run(rid, minutes=31, cycles=8)
    assert h.release(rid).state.value == "closed"
    # each job: the first poll has the reference start_job gave, the later ones the newer one
    assert asked[:2] == [None, "7"]
    assert asked.count(None) == 3  # build, deploy, smoke test: once each


def test_the_rollback_job_starts_before_plugins_are_told_of_the_failure(
    tmp_path: Path,
) -> None:
    """Step 13's failure and step 14's first pass (the rollback task) are told to plugins
    after step 14 started the rollback job, in the same advance, and in order; the rollback
    task's record is made once the job runs."""
    h = Harness(tmp_path)
    rid = h.create()
    assert h.run(rid, cycles=6).state.value == "verifying"
    effects: list[tuple[str, str]] = []
    effect = h.vendor.effect

    def logged(kind: str, key: str, value: Any = True, look: bool = True) -> Any:
        effects.append((kind, key))
        return effect(kind, key, value, look)

    h.vendor.effect = logged  # type: ignore[method-assign]
    h.vendor.signals = [Signal(source="alertmanager", key="fp1", summary="down", at=h.clock.now)]
    h.run(rid)  # the next poll
    kinds = [kind for kind, _ in effects]
    assert kinds[0] == "job"  # the rollback job first of all
    assert effects[0][1].endswith(":rollback:rollback")
    assert kinds[1:].count("task") == 1  # then its record, and the news, all of it
    assert kinds[1:].count("work_note") == len(kinds) - 2
    assert h.vendor.changes_seen[-9:] == [
        "step 13 detect: failed: alertmanager: down",
        "alertmanager: down",
        "verifying -> failed: alertmanager: down",
        "rollback task added",
        "step 14 rollback: running: rolling back: alertmanager: down",
        "failed -> rolling_back: rolling back: alertmanager: down",
        "step 14 rollback: running: task Roll back: job rollback started",
        "step 14 rollback: running: task Roll back recorded: TASK-rollback",
        "step 14 rollback: waiting: task Roll back: job rollback running",
    ]


def test_only_a_task_this_run_created_starts_without_a_look(tmp_path: Path) -> None:
    """The rollback task created by step 14 starts at once (`first_attempt=True`); its retry
    after a failed start, like the build of step 4, looks for an earlier job first."""
    h = Harness(tmp_path)
    rid = h.create()
    assert h.run(rid, cycles=6).state.value == "verifying"
    assert ("build", False) in h.vendor.first_attempts
    h.vendor.failures["job"] = [TransientError("Jenkins answered 503")]
    h.vendor.signals = [Signal(source="alertmanager", key="fp1", summary="down", at=h.clock.now)]
    h.run(rid)
    assert h.steps(rid)["rollback"][0] == "waiting"
    h.run(rid, minutes=1)
    rollbacks = [first for purpose, first in h.vendor.first_attempts if purpose == "rollback"]
    assert rollbacks == [True, False]
    assert not h.vendor.duplicates


def test_a_step_is_read_without_renewing_a_lease_renewed_less_than_half_its_time_ago(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path, server={"lease_seconds": 30})
    rid = h.create()
    renewals = lease_calls(monkeypatch, "renew_release_lease")
    with h.store.begin() as tx:
        assert tx.lease_release(rid, h.process.owner, timedelta(seconds=30))
    run = _Run(renewed_at=time.monotonic() - 14.0)
    assert h.process._run_next_step(rid, run) is not None
    assert renewals == [rid]  # the commit's fence only
    assert time.monotonic() - run.renewed_at < 1.0  # the commit renewed it
    run.renewed_at = time.monotonic() - 15.0  # half the lease: read under a renewal
    assert h.process._run_next_step(rid, run) is not None
    assert renewals == [rid] * 3


def test_a_manual_rollback_task_has_its_record_before_anyone_waits_for_it(tmp_path: Path) -> None:
    jobs = {k: v for k, v in JOBS.items() if k != "rollback"}  # a person rolls back
    h = Harness(tmp_path, service={"jobs": jobs}, policy={"require_backout_plan": False})
    h.vendor.job_results["smoke_test"] = "failed"
    rid = h.create()
    assert h.run(rid, cycles=12).state.value == "rolling_back"
    status, detail = h.steps(rid)["rollback"]
    assert status == "waiting" and f"task-done {rid} rollback" in detail
    with h.store.begin() as tx:
        rollback = next(t for t in tx.tasks(rid) if t.key == "rollback")
    assert rollback.kind == "manual" and rollback.record is not None
    assert rollback.record.id == "TASK-rollback"  # made with the task, in one pass
    assert not [m for m in h.events(rid, "step") if "recorded" in m]


class NoRollbackRecord:
    """A task system that makes no record of the rollback task (asked, it answers none)."""

    def __init__(self) -> None:
        self.asked = 0

    @hookimpl
    def create_tasks(self, release: Release, tasks: list[TaskSpec]) -> list[ExternalRecord]:
        self.asked += 1
        return []


def test_the_rollback_task_s_record_is_asked_for_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid = h.create()
    assert h.run(rid, cycles=6).state.value == "verifying"
    tasks = NoRollbackRecord()
    h.process.host.register(tasks, "no-records", version="0", module="t")
    h.vendor.signals = [Signal(source="alertmanager", key="fp1", summary="down", at=h.clock.now)]
    h.run(rid, cycles=4)
    assert tasks.asked == 1  # once the job ran, not on every pass after
    assert any("Roll back recorded: no record made" in m for m in h.events(rid, "step"))
