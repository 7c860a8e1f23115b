"""Every hook of the ServiceNow plugin called the way the core calls it: through pluggy, with
the plugin loaded from its entry point and configured from the bridge settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from itsm_bridge.errors import WebhookRejected
from itsm_bridge.models import (
    BacklogItem,
    BuildInfo,
    Event,
    Impact,
    JobState,
    Release,
    ReleaseState,
    Task,
    TaskSpec,
    TaskStatus,
    TestSummary,
    WorkItem,
)
from itsm_bridge.plugins import PluginHost, load_plugins
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import change_review

pytestmark = pytest.mark.integration
START = datetime(2026, 12, 5, 21, tzinfo=UTC)
FREEZE = datetime(2026, 12, 19, 21, tzinfo=UTC)  # a Saturday inside the year-end freeze


@pytest.fixture
def host(snow: ServiceNowSandbox) -> PluginHost:
    return load_plugins(
        settings_from_mapping(
            {
                "plugins": {
                    "enabled": ["servicenow"],
                    "servicenow": {
                        "url": snow.url,
                        "user": "sandbox",
                        "password": "sandbox",
                        "assignment_group": "Change Management",
                        "webhook_token": "hook-secret",
                        "service_levels": {"fields": {"version": "{version}"}},
                    },
                },
                "services": {
                    "payments": {"ci": "payments-api", "jobs": {"rollback": "payments/rb"}}
                },
            }
        )
    )


def release(**fields: Any) -> Release:
    base = {
        "id": "rel-20261128-hooks001",
        "service": "payments",
        "version": "2.0.0",
        "name": "Hooks",
        "window_start": START,
        "window_end": START + timedelta(hours=1),
    }
    return Release.model_validate({**base, **fields})


def with_change(host: PluginHost, **fields: Any) -> Release:
    plain = release(**fields)
    impact = _first(host.hook.identify_impact(release=plain))
    staged = plain.model_copy(update={"impact": impact})
    change = host.hook.create_change(release=staged, notes=None)
    return staged.model_copy(update={"records": [change]})


def _first(results: list[Any]) -> Any:
    (value,) = [r for r in results if r is not None]
    return value


def test_hook_identify_impact(host: PluginHost, snow: ServiceNowSandbox) -> None:
    impact = _first(host.hook.identify_impact(release=release()))
    assert isinstance(impact, Impact)
    names = {ci.name for ci in impact.cis} | {s.name for s in impact.services}
    assert {"payments-api", "payments-db", "payments"} <= names


def test_hook_create_change(host: PluginHost, snow: ServiceNowSandbox) -> None:
    ref = host.hook.create_change(release=release(), notes=None)
    assert ref.system == "servicenow"
    assert snow.record("change_request", ref.id)["correlation_id"] == release().id


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The conflict check's polling sleeps, recorded instead of slept."""
    sleeps: list[float] = []
    poll = change_review.ConflictPoll(sleep=sleeps.append)
    monkeypatch.setattr(change_review, "DEFAULT_POLL", poll)
    return sleeps


def test_hook_evaluate_change(
    host: PluginHost, snow: ServiceNowSandbox, no_sleep: list[float]
) -> None:
    clean = with_change(host)  # Saturday 22:00 Berlin: inside the weekly maintenance window
    assert [f for result in host.hook.evaluate_change(release=clean) for f in result] == []
    frozen = with_change(
        host,
        id="rel-20261128-hooks002",
        window_start=FREEZE,
        window_end=FREEZE + timedelta(hours=1),
    )
    number = frozen.records[0].number
    findings = [f for result in host.hook.evaluate_change(release=frozen) for f in result]
    assert [(f.severity, f.source, f.message) for f in findings] == [
        (
            "blocker",
            "servicenow",
            f"change {number} conflict: Blackout on payments-api (through payments) "
            "with schedule Year-end freeze",
        )
    ]
    evidence = findings[0].evidence
    assert (evidence["type"], evidence["ci"], evidence["schedule"]) == (
        "blackout",
        "payments-api",
        "Year-end freeze",
    )
    assert no_sleep == [0.5, 0.5]  # each check was seen running once, then finished
    assert len(snow.requests_to("POST", "/api/sn_chg_rest/change/")) == 2


def test_evaluation_puts_the_build_s_test_results_in_the_test_plan(
    host: PluginHost, snow: ServiceNowSandbox, no_sleep: list[float]
) -> None:
    built = with_change(host).model_copy(
        update={
            "build": BuildInfo(
                system="jenkins",
                job="payments/build",
                state=JobState.UNSTABLE,
                number=42,
                tests=TestSummary(passed=118, failed=2, skipped=3),
            )
        }
    )
    change = built.records[0]
    snow.clear_log()
    host.hook.evaluate_change(release=built)
    host.hook.evaluate_change(release=built)  # again (a retry): nothing more is written
    plan_patches = [r.json() for r in snow.requests_to("PATCH", "/api/now/table/change_request/")]
    assert len(plan_patches) == 1
    plan = snow.record("change_request", change.id)["test_plan"]
    assert "Build payments/build #42 (unstable): tests 118 passed, 2 failed, 3 skipped." in plan


def test_hook_release_changed(host: PluginHost, snow: ServiceNowSandbox) -> None:
    staged = with_change(host)
    sys_id = staged.records[0].id
    asked = Event(
        at=START,
        actor="itsm-bridge",
        kind="approval",
        message="approval of the change requested",
        evidence={"status": "pending"},
    )
    host.hook.release_changed(release=staged, event=asked)
    change = snow.record("change_request", sys_id)
    assert (change["state"], change["approval"]) == ("-4", "requested")  # Assess: asked
    [note] = snow.journal(sys_id, "work_notes")
    assert "approval of the change requested" in note["value"]
    host.hook.release_changed(release=staged, event=asked)  # redelivered: nothing more
    assert len(snow.journal(sys_id, "work_notes")) == 1
    chatter = asked.model_copy(
        update={"kind": "step", "message": "step 11: waiting", "evidence": {"step": 11,
                "status": "waiting"}}
    )  # fmt: skip
    calls = len(snow.requests)
    host.hook.release_changed(release=staged, event=chatter)
    assert len(snow.requests) == calls  # progress chatter: not a single call


SPECS = [
    TaskSpec(key="stop-db", name="Stop database", group="Database Administration"),
    TaskSpec(key="deploy", name="Deploy", kind="automated", purpose="deploy"),
]


def test_hook_create_tasks(host: PluginHost, snow: ServiceNowSandbox) -> None:
    staged = with_change(host)
    records = host.hook.create_tasks(release=staged, tasks=SPECS)
    assert [r.key for r in records] == ["stop-db", "deploy"]
    assert snow.record("change_task", records[0].id)["correlation_id"] == f"{staged.id}:stop-db"
    assert host.hook.create_tasks(release=staged, tasks=SPECS) == records


def test_hook_task_status(host: PluginHost, snow: ServiceNowSandbox) -> None:
    staged = with_change(host)
    records = host.hook.create_tasks(release=staged, tasks=SPECS)
    manual = Task(**SPECS[0].model_dump(), record=records[0])
    assert host.hook.task_status(release=staged, task=manual).status == TaskStatus.PENDING
    snow.close_task(records[0].id, notes="stopped")
    assert host.hook.task_status(release=staged, task=manual).status == TaskStatus.DONE


def test_hook_create_tasks_with_only_the_rollback(
    host: PluginHost, snow: ServiceNowSandbox
) -> None:
    staged = with_change(host)
    host.hook.create_tasks(release=staged, tasks=SPECS)  # step 9
    rollback = TaskSpec(key="rollback", name="Roll back", purpose="rollback", order=900)
    [record] = host.hook.create_tasks(release=staged, tasks=[rollback])  # step 14
    assert record.key == "rollback" and record.number.startswith("CTASK")
    row = snow.record("change_task", record.id)
    assert row["change_request"] == staged.records[0].id
    assert "Roll back by hand" in row["description"]
    assert len(snow.requests_to("POST", "/api/now/table/change_task")) == 3
    assert host.hook.create_tasks(release=staged, tasks=[rollback]) == [record]
    assert len(snow.requests_to("POST", "/api/now/table/change_task")) == 3


def test_hook_task_finished(host: PluginHost, snow: ServiceNowSandbox) -> None:
    staged = with_change(host)
    records = host.hook.create_tasks(release=staged, tasks=SPECS)
    deployed = Task(**SPECS[1].model_dump(), record=records[1], status=TaskStatus.DONE)
    host.hook.task_finished(release=staged, task=deployed)
    assert snow.record("change_task", records[1].id)["state"] == "3"


def test_hook_detect_failure(host: PluginHost, snow: ServiceNowSandbox) -> None:
    staged = with_change(host)
    since = datetime.now(UTC) - timedelta(minutes=1)
    snow.open_incident(
        short_description="Refunds fail", caused_by=staged.records[0].id, priority="1"
    )
    signals = [s for r in host.hook.detect_failure(release=staged, since=since) for s in r]
    assert [s.severity for s in signals] == ["critical"]
    assert signals[0].summary.endswith("Refunds fail")


def demand_item(host: PluginHost, snow: ServiceNowSandbox) -> tuple[dict[str, Any], WorkItem]:
    demand = snow.insert("dmn_demand", short_description="Instant refunds", state="8")
    items = [i for r in host.hook.collect_work_items(since=None) for i in r]
    return demand, next(i for i in items if i.source_id == demand["sys_id"])


def test_hook_collect_work_items(host: PluginHost, snow: ServiceNowSandbox) -> None:
    _, item = demand_item(host, snow)
    assert item.source_kind == "demand"
    assert item.title == "Instant refunds"
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert [i for r in host.hook.collect_work_items(since=later) for i in r] == []


def test_hook_work_item_added(host: PluginHost, snow: ServiceNowSandbox) -> None:
    demand, item = demand_item(host, snow)
    backlog = BacklogItem(system="jira", key="PAY-42", summary="Instant refunds")
    host.hook.work_item_added(item=item, backlog_item=backlog)
    host.hook.work_item_added(item=item, backlog_item=backlog)
    notes = [j for j in snow.journal(demand["sys_id"]) if "PAY-42" in j["value"]]
    assert len(notes) == 1


def test_hook_update_service_levels(host: PluginHost, snow: ServiceNowSandbox) -> None:
    written = host.hook.update_service_levels(release=release(state=ReleaseState.SUCCEEDED))
    assert written == [["cmdb_ci_service payments: version"]]  # one list per plugin
    patches = snow.requests_to("PATCH", "/api/now/table/")
    assert len(patches) == 1
    assert patches[0].json() == {"version": "2.0.0"}
    again = host.hook.update_service_levels(release=release(state=ReleaseState.SUCCEEDED))
    assert again == [[]]  # nothing changed: nothing claimed
    assert len(snow.requests_to("PATCH", "/api/now/table/")) == 1


def test_hook_register_webhooks(host: PluginHost) -> None:
    handlers: dict[str, Any] = {}
    host.hook.register_webhooks(register=lambda name, handler: handlers.setdefault(name, handler))
    handler = handlers["servicenow"]
    record = {
        "sys_class_name": "change_task",
        "sys_id": "a" * 32,
        "sys_mod_count": "2",
        "state": "3",
    }
    (event,) = handler({"Authorization": "Bearer hook-secret"}, json.dumps(record).encode())
    assert event["kind"] == "change_task"
    with pytest.raises(WebhookRejected) as rejected:
        handler({"Authorization": "Bearer wrong"}, json.dumps(record).encode())
    assert rejected.value.status == 401


def test_a_rolled_back_release_sets_no_service_level(
    host: PluginHost, snow: ServiceNowSandbox
) -> None:
    rolled_back = release(state=ReleaseState.ROLLED_BACK).model_copy(
        update={"failure_reason": "smoke test failed"}
    )
    assert host.hook.update_service_levels(release=rolled_back) == [[]]
    assert snow.requests_to(None, "/api/now/table/cmdb_ci_service") == []
