"""Change tasks (steps 9, 11): unit tests at the HTTP boundary, then against the sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from pydantic import SecretStr

from itsm_bridge.errors import NeedsHuman, TransientError
from itsm_bridge.models import ExternalRecord, Release, Task, TaskSpec, TaskStatus
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin, Settings, change_tasks
from itsm_bridge_servicenow.client import ServiceNowClient

URL = "https://acme.service-now.com"
TASKS = f"{URL}/api/now/table/change_task"
GROUPS = f"{URL}/api/now/table/sys_user_group"
CHG = "c" * 32

SPECS = [
    TaskSpec(key="stop-db", name="Stop database", group="Database Administration", order=50),
    TaskSpec(key="deploy", name="Deploy", kind="automated", purpose="deploy", order=100),
    TaskSpec(
        key="smoke-test", name="Smoke test", kind="automated", purpose="smoke_test", order=200
    ),
]


@pytest.fixture
def client() -> ServiceNowClient:
    # close codes as configured (no sys_choice request; test_choices.py covers the lookup)
    codes = {"change_task.close_code": {"successful": "successful", "unsuccessful": "unsuccessful"}}
    return ServiceNowClient(URL, "svc", SecretStr("pw"), attempts=2, sleep=lambda s: None,
                            choices=codes)  # fmt: skip


@pytest.fixture
def config() -> Settings:
    return Settings(
        url=URL, user="svc", password=SecretStr("pw"), assignment_group="Change Management"
    )


def with_change(release: Release, sys_id: str = CHG) -> Release:
    record = ExternalRecord(
        system="servicenow", kind="change_request", id=sys_id, number="CHG0030001"
    )
    return release.model_copy(update={"records": [record]})


def params(call: responses.Call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def task(status: TaskStatus = TaskStatus.PENDING, sys_id: str = "t" * 32, **kw: object) -> Task:
    record = ExternalRecord(
        system="servicenow", kind="change_task", id=sys_id, number="CTASK0010001", key="stop-db"
    )
    return Task(key="stop-db", name="Stop database", status=status, record=record, **kw)


# -- unit: find_or_create -------------------------------------------------------------------
@responses.activate
def test_no_servicenow_change_means_another_plugin_owns_tasks(
    client: ServiceNowClient, config: Settings, make_release: Callable[..., Release]
) -> None:
    assert change_tasks.find_or_create(client, config, make_release(), SPECS) is None
    assert not responses.calls


@responses.activate
def test_one_query_then_only_the_missing_tasks_are_created(
    client: ServiceNowClient, config: Settings, make_release: Callable[..., Release]
) -> None:
    release = with_change(make_release())
    existing = {
        "sys_id": "d" * 32,
        "number": "CTASK0010002",
        "correlation_id": f"{release.id}:deploy",
    }
    responses.get(TASKS, json={"result": [existing]})
    responses.get(GROUPS, json={"result": [{"sys_id": "g1" * 16, "name": "x"}]})
    responses.post(
        TASKS, json={"result": {"sys_id": "a" * 32, "number": "CTASK0010003"}}, status=201
    )
    responses.post(
        TASKS, json={"result": {"sys_id": "b" * 32, "number": "CTASK0010004"}}, status=201
    )

    records = change_tasks.find_or_create(client, config, release, SPECS)

    assert records is not None
    assert [(r.key, r.number) for r in records] == [
        ("stop-db", "CTASK0010003"),
        ("deploy", "CTASK0010002"),
        ("smoke-test", "CTASK0010004"),
    ]
    assert records[0].url == f"{URL}/nav_to.do?uri=change_task.do?sys_id={'a' * 32}"
    lookup = params(responses.calls[0])
    assert lookup["sysparm_query"] == [
        f"change_request={CHG}^correlation_idSTARTSWITH{release.id}:^ORDERBYsys_created_on"
    ]
    assert lookup["sysparm_exclude_reference_link"][0].lower() == "true"
    assert set(lookup["sysparm_fields"][0].split(",")) == {"sys_id", "number", "correlation_id"}
    posts = [c for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 2
    stop, smoke = (json.loads(c.request.body) for c in posts)
    assert stop == {
        "change_request": CHG,
        "short_description": "Stop database",
        "description": stop["description"],
        "change_task_type": "implementation",
        "correlation_id": f"{release.id}:stop-db",
        "correlation_display": "itsm-bridge",
        "order": 50,
        "assignment_group": "g1" * 16,
        "planned_start_date": "2026-12-05 21:00:00",
        "planned_end_date": "2026-12-05 23:00:00",
    }
    assert "close this task" in stop["description"]
    assert smoke["change_task_type"] == "testing"
    group_queries = [
        params(c)["sysparm_query"][0] for c in responses.calls if c.request.url.startswith(GROUPS)
    ]
    # one lookup per group name: the DBA group, then the default group (cached for smoke)
    assert group_queries == ["name=Database Administration", "name=Change Management"]


@responses.activate
def test_a_failed_create_is_not_retried_here(
    client: ServiceNowClient, config: Settings, make_release: Callable[..., Release]
) -> None:
    responses.get(TASKS, json={"result": []})
    responses.get(GROUPS, json={"result": [{"sys_id": "g" * 32, "name": "x"}]})
    responses.post(TASKS, json={"error": {"message": "boom", "detail": ""}}, status=503)
    with pytest.raises(TransientError):
        change_tasks.find_or_create(client, config, with_change(make_release()), SPECS[1:2])
    assert sum(c.request.method == "POST" for c in responses.calls) == 1


@responses.activate
def test_an_unknown_group_needs_a_human(
    client: ServiceNowClient, config: Settings, make_release: Callable[..., Release]
) -> None:
    responses.get(TASKS, json={"result": []})
    responses.get(GROUPS, json={"result": []})
    with pytest.raises(NeedsHuman, match="Database Administration"):
        change_tasks.find_or_create(client, config, with_change(make_release()), SPECS[:1])
    assert not [c for c in responses.calls if c.request.method == "POST"]


# -- unit: the rollback task (step 14) ------------------------------------------------------------
ROLLBACK = TaskSpec(
    key="rollback", name="Roll back", kind="automated", purpose="rollback",
    job="payments/rollback", order=900,
)  # fmt: skip
MANUAL_ROLLBACK = ROLLBACK.model_copy(update={"kind": "manual", "job": None})


def posted() -> list[dict[str, object]]:
    return [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]


@responses.activate
def test_the_rollback_alone_is_created_from_now_to_the_end_of_the_window(
    client: ServiceNowClient, config: Settings, make_release: Callable[..., Release]
) -> None:
    release = with_change(make_release(failure_reason="HighErrorRate on payments"))
    step9 = {"sys_id": "d" * 32, "number": "CTASK0010002", "correlation_id": f"{release.id}:deploy"}
    responses.get(TASKS, json={"result": [step9]})
    responses.get(GROUPS, json={"result": [{"sys_id": "g" * 32, "name": "Change Management"}]})
    responses.post(
        TASKS, json={"result": {"sys_id": "r" * 32, "number": "CTASK0010009"}}, status=201
    )
    now = datetime(2026, 12, 5, 22, 15, tzinfo=UTC)  # the window is 21:00-23:00

    records = change_tasks.find_or_create(client, config, release, [ROLLBACK], now=now)

    assert records is not None
    assert [(r.key, r.number) for r in records] == [("rollback", "CTASK0010009")]
    [body] = posted()
    assert body["correlation_id"] == f"{release.id}:rollback"
    assert body["change_task_type"] == "implementation"
    assert body["assignment_group"] == "g" * 32
    assert (body["planned_start_date"], body["planned_end_date"]) == (
        "2026-12-05 22:15:00",
        "2026-12-05 23:00:00",
    )
    text = str(body["description"])
    assert "job payments/rollback" in text and "HighErrorRate on payments" in text
    assert "by hand" not in text and "after the change window" not in text


@responses.activate
def test_a_manual_rollback_after_the_window_is_planned_for_the_release_duration(
    client: ServiceNowClient, config: Settings, make_release: Callable[..., Release]
) -> None:
    release = with_change(make_release(duration="PT45M"))
    responses.get(TASKS, json={"result": []})
    responses.get(GROUPS, json={"result": [{"sys_id": "g" * 32, "name": "Change Management"}]})
    responses.post(TASKS, json={"result": {"sys_id": "r" * 32}}, status=201)
    now = datetime(2026, 12, 8, 10, tzinfo=UTC)  # three days after the window ended

    change_tasks.find_or_create(client, config, release, [MANUAL_ROLLBACK], now=now)

    [body] = posted()
    assert (body["planned_start_date"], body["planned_end_date"]) == (
        "2026-12-08 10:00:00",
        "2026-12-08 10:45:00",
    )
    text = str(body["description"])
    assert "Roll back by hand to the last good version, then close this task" in text
    assert "Planned after the change window, which ended 2026-12-05 23:00:00 UTC." in text
    assert "job" not in text
    assert body["change_task_type"] == "implementation"


def failed_rollback_job() -> Task:
    record = ExternalRecord(
        system="servicenow", kind="change_task", id="r" * 32, number="CTASK9", key="rollback"
    )
    return Task(
        **ROLLBACK.model_dump(),
        status=TaskStatus.FAILED,
        record=record,
        note="payments/rollback #7 FAILURE",
    )


@responses.activate
def test_a_failed_rollback_job_leaves_its_task_open_for_a_person(
    client: ServiceNowClient, make_release: Callable[..., Release]
) -> None:
    release = make_release(failure_reason="HighErrorRate")
    automated = {"sys_id": "r" * 32, "state": "1", "description": "... with job payments/rb"}
    responses.get(TASKS, json={"result": [automated]})
    responses.patch(f"{TASKS}/{'r' * 32}", json={"result": {"sys_id": "r" * 32}})
    handed_over = {**automated, "description": "Roll back by hand to the last good version, "
                   "then close this task: close code Successful, or Unsuccessful with close "
                   "notes if the rollback failed; itsm-bridge follows its state."}  # fmt: skip
    responses.get(TASKS, json={"result": [handed_over]})

    change_tasks.close(client, release, failed_rollback_job())
    change_tasks.close(client, release, failed_rollback_job())  # reported twice: one write

    bodies = [json.loads(c.request.body) for c in responses.calls if c.request.method == "PATCH"]
    assert len(bodies) == 1
    [body] = bodies
    assert set(body) == {"description", "work_notes"}  # no state: it stays open
    assert "Roll back by hand" in body["description"]
    assert body["work_notes"].startswith("The rollback job failed: payments/rollback #7 FAILURE.")


# -- unit: status and close -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "code", "expected"),
    [
        ("3", "successful", TaskStatus.DONE),
        ("3", "successful_issues", TaskStatus.DONE),
        ("3", "unsuccessful", TaskStatus.FAILED),
        ("4", "", TaskStatus.FAILED),
        ("2", "", TaskStatus.PENDING),
        ("1", "", TaskStatus.PENDING),
    ],
)
@responses.activate
def test_status_follows_state_and_close_code(
    client: ServiceNowClient, state: str, code: str, expected: TaskStatus
) -> None:
    row = {
        "sys_id": "t" * 32,
        "number": "CTASK0010001",
        "state": state,
        "close_code": code,
        "close_notes": "db stopped" if state == "3" else "",
    }
    responses.get(TASKS, json={"result": [row]})
    updated = change_tasks.status(client, task())
    assert updated is not None and updated.status == expected
    if state == "3":
        assert updated.note == "db stopped"
    assert params(responses.calls[0])["sysparm_query"] == [f"sys_id={'t' * 32}"]


def test_status_of_a_task_without_a_servicenow_record_is_not_ours(
    client: ServiceNowClient,
) -> None:
    assert change_tasks.status(client, Task(key="x", name="X")) is None
    jira = ExternalRecord(system="jira", kind="issue", id="1")
    assert change_tasks.status(client, Task(key="x", name="X", record=jira)) is None


@responses.activate
def test_close_patches_once_with_the_close_code_and_notes(
    client: ServiceNowClient, make_release: Callable[..., Release]
) -> None:
    responses.get(TASKS, json={"result": [{"sys_id": "t" * 32, "state": "1"}]})
    responses.patch(f"{TASKS}/{'t' * 32}", json={"result": {"sys_id": "t" * 32}})
    change_tasks.close(client, make_release(), task(TaskStatus.FAILED, note="exit 2"))
    body = json.loads(responses.calls[1].request.body)
    assert body == {"state": "3", "close_code": "unsuccessful", "close_notes": "exit 2"}


@responses.activate
def test_close_leaves_a_closed_task_alone(
    client: ServiceNowClient, make_release: Callable[..., Release]
) -> None:
    responses.get(TASKS, json={"result": [{"sys_id": "t" * 32, "state": "3"}]})
    change_tasks.close(client, make_release(), task(TaskStatus.DONE))
    change_tasks.close(client, make_release(), task(TaskStatus.PENDING))
    assert [c.request.method for c in responses.calls] == ["GET"]


# -- integration: the sandbox over real HTTP ----------------------------------------------------
def sandbox_release(snow: ServiceNowSandbox, make_release: Callable[..., Release]) -> Release:
    change = snow.insert(
        "change_request",
        short_description="payments 1.4.0",
        start_date="2026-12-05 21:00:00",
        end_date="2026-12-05 23:00:00",
    )
    return with_change(make_release(), change["sys_id"])


def tasks_of(snow: ServiceNowSandbox, release: Release) -> list[dict[str, str]]:
    return [
        row
        for row in snow.store.rows_of("change_task")
        if row.get("correlation_id", "").startswith(f"{release.id}:")
    ]


@pytest.mark.integration
def test_a_lost_create_answer_leaves_exactly_one_task_per_key(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = sandbox_release(snow, make_release)
    snow.fail_next("POST", "/api/now/table/change_task", 500, fail_after_write=True)
    with pytest.raises(TransientError):
        plugin.create_tasks(release, SPECS)
    records = plugin.create_tasks(release, SPECS)
    again = plugin.create_tasks(release, SPECS)

    assert records == again and records is not None and len(records) == 3
    rows = tasks_of(snow, release)
    assert sorted(r["correlation_id"] for r in rows) == sorted(
        f"{release.id}:{spec.key}" for spec in SPECS
    )
    stop = snow.record("change_task", records[0].id)
    dba = snow.record("sys_user_group", "Database Administration")
    assert stop["assignment_group"] == dba["sys_id"]
    assert stop["change_request"] == release.records[0].id
    assert stop["planned_start_date"] == "2026-12-05 21:00:00"
    assert len(snow.requests_to("POST", "/api/now/table/change_task")) == 3


@pytest.mark.integration
def test_a_manual_task_is_done_when_a_person_closes_its_record(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = sandbox_release(snow, make_release)
    records = plugin.create_tasks(release, SPECS)
    assert records is not None
    manual = Task(**SPECS[0].model_dump(), record=records[0])
    assert plugin.task_status(release, manual) == manual  # still open

    snow.close_task(records[0].number or "", close_code="successful", notes="DB stopped 21:05")
    done = plugin.task_status(release, manual)
    assert done is not None and done.status == TaskStatus.DONE and done.note == "DB stopped 21:05"


@pytest.mark.integration
def test_an_unsuccessful_close_fails_the_manual_task(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = sandbox_release(snow, make_release)
    records = plugin.create_tasks(release, SPECS[:1])
    assert records is not None
    snow.close_task(records[0].id, close_code="unsuccessful", notes="replica lag")
    failed = plugin.task_status(release, Task(**SPECS[0].model_dump(), record=records[0]))
    assert failed is not None and failed.status == TaskStatus.FAILED


@pytest.mark.integration
def test_close_of_a_finished_automated_task(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = sandbox_release(snow, make_release)
    records = plugin.create_tasks(release, SPECS[1:2])
    assert records is not None
    deploy = Task(
        **SPECS[1].model_dump(),
        record=records[0],
        status=TaskStatus.DONE,
        note="payments/deploy #12 SUCCESS",
    )
    plugin.task_finished(release, deploy)
    plugin.task_finished(release, deploy)  # reported twice: no second write

    row = snow.record("change_task", records[0].id)
    assert (row["state"], row["close_code"], row["close_notes"]) == (
        "3",
        "successful",
        "payments/deploy #12 SUCCESS",
    )
    assert row["active"] == "false"
    assert len(snow.requests_to("PATCH", "/api/now/table/change_task")) == 1


@pytest.mark.integration
def test_the_rollback_task_from_a_failed_job_to_a_person_closing_it(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = sandbox_release(snow, make_release)
    plugin.create_tasks(release, SPECS)
    [record] = plugin.create_tasks(release, [ROLLBACK]) or []
    assert len(snow.requests_to("POST", "/api/now/table/change_task")) == 4
    row = snow.record("change_task", record.id)
    assert (row["correlation_id"], row["change_task_type"]) == (
        f"{release.id}:rollback",
        "implementation",
    )

    failed = Task(**ROLLBACK.model_dump(), record=record, status=TaskStatus.FAILED, note="#7")
    plugin.task_finished(release, failed)
    row = snow.record("change_task", record.id)
    assert (row["state"], row["active"]) == ("1", "true")
    assert "Roll back by hand" in row["description"]

    manual = Task(**MANUAL_ROLLBACK.model_dump(), record=record)  # as the core hands it over
    assert plugin.task_status(release, manual) == manual
    snow.close_task(record.id, notes="rolled back to 1.3.9 by hand")
    done = plugin.task_status(release, manual)
    assert done is not None and done.status == TaskStatus.DONE
