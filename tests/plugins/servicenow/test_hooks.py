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
    Event,
    Impact,
    Release,
    ReleaseState,
    Task,
    TaskSpec,
    TaskStatus,
    WorkItem,
)
from itsm_bridge.plugins import PluginHost, load_plugins
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox

pytestmark = pytest.mark.integration
START = datetime(2026, 12, 5, 21, tzinfo=UTC)


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


def with_change(host: PluginHost) -> Release:
    plain = release()
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


def test_hook_evaluate_change(host: PluginHost) -> None:
    findings = [
        f for result in host.hook.evaluate_change(release=with_change(host)) for f in result
    ]
    assert all(f.source for f in findings)
    assert not [f for f in findings if f.severity == "blocker"]  # rollback job = back-out plan


def test_hook_release_changed(host: PluginHost, snow: ServiceNowSandbox) -> None:
    staged = with_change(host)
    event = Event(
        at=START,
        actor="itsm-bridge",
        kind="step",
        message="step 7 evaluate: waiting",
        evidence={"step": 7, "status": "waiting"},
    )
    host.hook.release_changed(release=staged, event=event)
    change = snow.record("change_request", staged.records[0].id)
    assert change["state"] == "-3"  # Authorize: approval requested
    assert any("step 7 evaluate" in j["value"] for j in snow.journal(change["sys_id"]))


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
    host.hook.update_service_levels(release=release(state=ReleaseState.SUCCEEDED))
    patches = snow.requests_to("PATCH", "/api/now/table/")
    assert len(patches) == 1
    assert patches[0].json() == {"version": "2.0.0"}
    host.hook.update_service_levels(release=release(state=ReleaseState.SUCCEEDED))
    assert len(snow.requests_to("PATCH", "/api/now/table/")) == 1  # nothing changed


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
