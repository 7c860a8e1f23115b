"""No open task on a closed change: the change tasks a release leaves open when it ends.

Unit tests count the requests at the HTTP boundary (`responses`); the sandbox tests count
the PATCHes in the sandbox's request log, through the plugin's `release_changed` hook.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from pydantic import SecretStr

from itsm_bridge.errors import NeedsHuman, TransientError
from itsm_bridge.models import Event, ExternalRecord, Release, ReleaseState, TaskSpec
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin, task_closure
from itsm_bridge_servicenow.client import ServiceNowClient

URL = "https://acme.service-now.com"
TASKS = f"{URL}/api/now/table/change_task"
CHOICES = f"{URL}/api/now/table/sys_choice"
CHG = "c" * 32
RID = "rel-20261128-0000abcd"
AT = datetime(2026, 12, 5, 22, tzinfo=UTC)
#: sys_choice of an instance whose close code values differ from the base system's.
CLOSE_CODES = [
    {"value": "ok", "label": "Successful", "sequence": "1"},
    {"value": "not_ok", "label": "Unsuccessful", "sequence": "3"},
]


@pytest.fixture
def client() -> ServiceNowClient:
    return ServiceNowClient(URL, "svc", SecretStr("pw"), attempts=2, sleep=lambda s: None)


def released(make_release: Callable[..., Release], **fields: Any) -> Release:
    change = ExternalRecord(system="servicenow", kind="change_request", id=CHG, number="CHG1")
    return make_release(records=[change], **fields)


def state(to: ReleaseState, frm: str = "implementing") -> Event:
    return Event(
        at=AT, actor="itsm-bridge", kind="state", message=f"{frm} -> {to.value}: why",
        evidence={"from": frm, "to": to.value},
    )  # fmt: skip


def row(key: str, number: str, state: str = "1") -> dict[str, str]:
    return {"sys_id": number.lower().ljust(32, "0"), "number": number, "state": state,
            "correlation_id": f"{RID}:{key}"}  # fmt: skip


def patches() -> list[tuple[str, dict[str, Any]]]:
    """(sys_id, body) of every PATCH sent."""
    return [
        (urlsplit(c.request.url).path.rsplit("/", 1)[1], json.loads(c.request.body))
        for c in responses.calls
        if c.request.method == "PATCH"
    ]


def calls_to(url: str) -> list[responses.Call]:
    return [c for c in responses.calls if c.request.url.split("?")[0] == url]


OPEN = [
    row("stop-db", "CTASK1", "-5"),
    row("deploy", "CTASK2", "2"),
    row("smoke-test", "CTASK3", "1"),
    row("rollback", "CTASK4", "1"),
]


def answer_patches() -> None:
    for r in OPEN:
        responses.patch(f"{TASKS}/{r['sys_id']}", json={"result": {"sys_id": r["sys_id"]}})


# -- unit ------------------------------------------------------------------------------------
@responses.activate
def test_a_cancelled_release_cancels_every_open_task_in_one_query_and_one_patch_each(
    client: ServiceNowClient, make_release: Callable[..., Release]
) -> None:
    release = released(make_release, failure_reason="")
    responses.get(TASKS, json={"result": OPEN[:3]})
    answer_patches()

    written = task_closure.close_open(client, release, state(ReleaseState.CANCELLED, "planned"))

    assert written == ["CTASK1", "CTASK2", "CTASK3"]
    [query] = calls_to(TASKS)
    asked = parse_qs(urlsplit(query.request.url).query)
    assert asked["sysparm_query"] == [
        f"change_request={CHG}^correlation_idSTARTSWITH{RID}:^active=true^ORDERBYorder"
    ]
    assert set(asked["sysparm_fields"][0].split(",")) == {"sys_id", "number", "correlation_id",
                                                          "state"}  # fmt: skip
    sent = patches()
    assert len(sent) == 3
    for _, body in sent:
        assert body["state"] == "4"  # Canceled: no close code needed, none asked for
        assert body["work_notes"].startswith(f"Canceled by itsm-bridge: release {RID} was canc")
        assert "close_code" not in body
    assert not calls_to(CHOICES)


@responses.activate
def test_a_failed_release_closes_what_will_not_run_and_keeps_the_rollback_open(
    client: ServiceNowClient, make_release: Callable[..., Release]
) -> None:
    release = released(make_release, failure_reason="HighErrorRate on payments")
    responses.get(TASKS, json={"result": OPEN})
    responses.get(CHOICES, json={"result": CLOSE_CODES})
    answer_patches()

    written = task_closure.close_open(client, release, state(ReleaseState.FAILED))

    assert written == ["CTASK1", "CTASK2", "CTASK3"]
    bodies = dict(patches())
    assert OPEN[3]["sys_id"] not in bodies  # the rollback is about to run
    stop, deploy, smoke = (bodies[r["sys_id"]] for r in OPEN[:3])
    for body in (stop, deploy, smoke):
        assert body["state"] == "3" and body["close_code"] == "not_ok"
        assert "HighErrorRate on payments" in body["close_notes"]
        assert body["work_notes"] == f"Closed by itsm-bridge. {body['close_notes']}"
    assert stop["close_notes"].startswith("Skipped:")  # Pending: never started
    assert deploy["close_notes"].startswith("Incomplete:")  # In Progress
    assert smoke["close_notes"].startswith("Skipped:")  # Open
    assert len(calls_to(CHOICES)) == 1  # the close code read once, then cached


@responses.activate
def test_a_task_whose_active_flag_lags_behind_its_closed_state_is_left_alone(
    client: ServiceNowClient, make_release: Callable[..., Release]
) -> None:
    responses.get(TASKS, json={"result": [row("deploy", "CTASK2", "3"), row("x", "CTASK5", "4")]})
    event = state(ReleaseState.CANCELLED, "planned")
    assert task_closure.close_open(client, released(make_release), event) == []
    assert not patches()


@responses.activate
def test_redelivery_writes_nothing_more(
    client: ServiceNowClient, make_release: Callable[..., Release]
) -> None:
    release = released(make_release, failure_reason="boom")
    responses.get(TASKS, json={"result": OPEN[:2]})
    responses.get(TASKS, json={"result": []})  # what ServiceNow answers once they are closed
    responses.get(CHOICES, json={"result": CLOSE_CODES})
    answer_patches()
    event = state(ReleaseState.FAILED)
    task_closure.close_open(client, release, event)
    assert task_closure.close_open(client, release, event) == []
    assert len(patches()) == 2
    assert len(calls_to(TASKS)) == 2


@pytest.mark.parametrize(
    ("to", "failure", "codes"),
    [
        # closed after success: every task finished done, so whatever is open was done
        (ReleaseState.CLOSED, "", ["ok", "ok", "ok", "ok"]),
        # rolled back (and closed after it): the rollback finished, the rest never ran
        (ReleaseState.ROLLED_BACK, "boom", ["not_ok"] * 3 + ["ok"]),
        (ReleaseState.CLOSED, "boom", ["not_ok"] * 3 + ["ok"]),
    ],
)
@responses.activate
def test_nothing_stays_open_once_the_release_is_rolled_back_or_closed(
    client: ServiceNowClient,
    make_release: Callable[..., Release],
    to: ReleaseState,
    failure: str,
    codes: list[str],
) -> None:
    release = released(make_release, failure_reason=failure)
    responses.get(TASKS, json={"result": OPEN})
    responses.get(CHOICES, json={"result": CLOSE_CODES})
    answer_patches()
    task_closure.close_open(client, release, state(to, "rolling_back"))
    bodies = dict(patches())
    assert [bodies[r["sys_id"]]["close_code"] for r in OPEN] == codes
    assert all(body["state"] == "3" for body in bodies.values())
    if to == ReleaseState.CLOSED and not failure:
        assert bodies[OPEN[0]["sys_id"]]["close_notes"].startswith("Done: release")


@pytest.mark.parametrize(
    "event",
    [
        state(ReleaseState.IMPLEMENTING, "scheduled"),
        state(ReleaseState.ROLLING_BACK, "failed"),
        state(ReleaseState.BLOCKED, "planned"),
        Event(at=AT, actor="cli", kind="cancelled", message="cancelled: no",
              evidence={"to": "cancelled"}),
        Event(at=AT, actor="x", kind="step", message="step 11: done",
              evidence={"step": 11, "status": "done"}),
    ],
)  # fmt: skip
@responses.activate
def test_other_events_ask_nothing(
    client: ServiceNowClient, make_release: Callable[..., Release], event: Event
) -> None:
    assert task_closure.close_open(client, released(make_release), event) == []
    assert not responses.calls


def test_a_release_without_a_servicenow_change_is_left_alone(
    client: ServiceNowClient, make_release: Callable[..., Release]
) -> None:
    with responses.RequestsMock() as mock:  # any request would fail the test
        assert task_closure.close_open(client, make_release(), state(ReleaseState.CLOSED)) == []
        assert not mock.calls


@responses.activate
def test_a_refused_patch_does_not_stop_the_others_and_needs_a_human(
    client: ServiceNowClient, make_release: Callable[..., Release]
) -> None:
    release = released(make_release)
    responses.get(TASKS, json={"result": OPEN[:3]})
    refused = {"error": {"message": "Operation Failed", "detail": "Data policy"}}
    responses.patch(f"{TASKS}/{OPEN[0]['sys_id']}", status=403, json=refused)
    responses.patch(f"{TASKS}/{OPEN[1]['sys_id']}", json={"result": {}})
    responses.patch(f"{TASKS}/{OPEN[2]['sys_id']}", json={"result": {}})
    with pytest.raises(NeedsHuman, match=r"refused to end 1 open change task.*CTASK1"):
        task_closure.close_open(client, release, state(ReleaseState.CANCELLED, "planned"))
    assert len(patches()) == 3


@responses.activate
def test_a_transient_failure_propagates_for_redelivery(
    client: ServiceNowClient, make_release: Callable[..., Release]
) -> None:
    release = released(make_release)
    responses.get(TASKS, json={"result": OPEN[:1]})
    responses.patch(f"{TASKS}/{OPEN[0]['sys_id']}", status=503, json={"error": {"message": "x"}})
    with pytest.raises(TransientError):
        task_closure.close_open(client, release, state(ReleaseState.CANCELLED, "planned"))


# -- integration: the sandbox, through the plugin's release_changed ------------------------------
SPECS = [
    TaskSpec(key="stop-db", name="Stop database", group="Database Administration", order=50),
    TaskSpec(key="deploy", name="Deploy", order=100, purpose="deploy"),
    TaskSpec(key="smoke-test", name="Smoke test", order=200, purpose="smoke_test"),
]
ROLLBACK = TaskSpec(key="rollback", name="Roll back", order=900, purpose="rollback")
TASK_PATCHES = "/api/now/table/change_task/"
#: The close codes as configured values, so these tests do not depend on the sandbox's sys_choice.
CHOICE_VALUES = {
    "change_task.close_code": {"successful": "successful", "unsuccessful": "unsuccessful"}
}


def sandbox_release(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> Release:
    release = make_release()
    change = plugin.create_change(release, None)
    return release.model_copy(update={"records": [change]})


def open_tasks(snow: ServiceNowSandbox, release: Release) -> list[dict[str, str]]:
    return [
        r
        for r in snow.store.rows_of("change_task")
        if r.get("correlation_id", "").startswith(f"{release.id}:") and r.get("active") == "true"
    ]


@pytest.mark.integration
def test_a_rolled_back_release_leaves_no_open_task(
    snow: ServiceNowSandbox,
    make_plugin: Callable[..., ServiceNowPlugin],
    make_release: Callable[..., Release],
) -> None:
    plugin = make_plugin(choices=CHOICE_VALUES)
    release = sandbox_release(snow, plugin, make_release)
    records = plugin.create_tasks(release, SPECS)
    assert records is not None
    snow.close_task(records[0].id, notes="DB stopped")  # done before the failure
    failed = release.model_copy(
        update={"state": ReleaseState.FAILED, "failure_reason": "deploy failed: exit 2"}
    )
    snow.clear_log()

    plugin.release_changed(failed, state(ReleaseState.FAILED))
    plugin.release_changed(failed, state(ReleaseState.FAILED))  # redelivered

    assert len(snow.requests_to("PATCH", TASK_PATCHES)) == 2  # deploy and smoke test, once
    assert open_tasks(snow, release) == []
    deploy = snow.record("change_task", records[1].id)
    assert (deploy["state"], deploy["close_code"]) == ("3", "unsuccessful")
    assert deploy["close_notes"].startswith("Skipped:") and "exit 2" in deploy["close_notes"]
    assert snow.record("change_task", records[0].id)["close_notes"] == "DB stopped"  # untouched
    notes = snow.journal(records[1].id, "work_notes")
    assert [n["value"] for n in notes] == [f"Closed by itsm-bridge. {deploy['close_notes']}"]

    # the rollback starts: its task is created, and a late `failed` event leaves it open
    rolling = failed.model_copy(update={"state": ReleaseState.ROLLING_BACK})
    [rollback] = plugin.create_tasks(rolling, [ROLLBACK]) or []
    plugin.release_changed(rolling, state(ReleaseState.FAILED))
    assert [r["sys_id"] for r in open_tasks(snow, release)] == [rollback.id]
    assert len(snow.requests_to("PATCH", TASK_PATCHES)) == 2

    closed = rolling.model_copy(update={"state": ReleaseState.CLOSED})
    plugin.release_changed(closed, state(ReleaseState.CLOSED, "rolled_back"))
    assert open_tasks(snow, release) == []
    assert snow.record("change_task", rollback.id)["close_code"] == "successful"
    assert len(snow.requests_to("PATCH", TASK_PATCHES)) == 3


@pytest.mark.integration
def test_a_cancelled_release_cancels_its_tasks_before_the_change(
    snow: ServiceNowSandbox,
    make_plugin: Callable[..., ServiceNowPlugin],
    make_release: Callable[..., Release],
) -> None:
    plugin = make_plugin(choices=CHOICE_VALUES)
    release = sandbox_release(snow, plugin, make_release)
    records = plugin.create_tasks(release, SPECS)
    assert records is not None
    cancelled = release.model_copy(update={"state": ReleaseState.CANCELLED})
    snow.clear_log()

    plugin.release_changed(cancelled, state(ReleaseState.CANCELLED, "planned"))
    plugin.release_changed(cancelled, state(ReleaseState.CANCELLED, "planned"))

    assert open_tasks(snow, release) == []
    assert {snow.record("change_task", r.id)["state"] for r in records} == {"4"}
    writes = [r.path for r in snow.requests_to("PATCH", "/api/now/table/")]
    assert len([p for p in writes if p.startswith(TASK_PATCHES)]) == 3  # once each
    change_id = cancelled.records[0].id
    # the tasks first: once the change is canceled they are read-only
    task_writes = [i for i, path in enumerate(writes) if path.startswith(TASK_PATCHES)]
    assert max(task_writes) < writes.index(f"/api/now/table/change_request/{change_id}")
    assert snow.record("change_request", change_id)["state"] == "4"
