"""Unit tests of the change_request module: HTTP mocked with `responses`.

Bodies are shaped as in ServiceNow's documentation ("Table API"; "Change Management API",
ServiceNowDocs `markdown/api-reference/rest-apis/change-management-api.md`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from pydantic import SecretStr

from itsm_bridge.errors import NeedsHuman, TransientError
from itsm_bridge.http import HTTPRequestError, HTTPTransientError
from itsm_bridge.models import ChangeRef, Event, Release, ReleaseNotes, ReleaseState
from itsm_bridge.settings import BridgeSettings, settings_from_mapping
from itsm_bridge_servicenow import Settings, change, cmdb
from itsm_bridge_servicenow.client import ServiceNowClient

BASE = "https://acme.service-now.com"
TABLE = f"{BASE}/api/now/table"
CHG = "a" * 32
CI, GROUP = "c" * 32, "g" * 32


@pytest.fixture
def client() -> ServiceNowClient:
    return ServiceNowClient(BASE, "svc_bridge", SecretStr("s3cret"), sleep=lambda s: None)


@pytest.fixture
def config() -> Settings:
    return Settings.model_validate({"url": BASE, "user": "svc_bridge", "password": "s3cret",
                                    "assignment_group": "Change Management"})  # fmt: skip


@pytest.fixture
def bridge() -> BridgeSettings:
    return settings_from_mapping({"services": {"payments": {
        "ci": "payments-api",
        "jobs": {"deploy": "payments/deploy", "smoke_test": "payments/smoke",
                 "rollback": "payments/rollback"},
        "tasks": [
            {"name": "Start database", "group": "Database Administration", "after": "deploy"},
            {"name": "Stop database", "group": "Database Administration", "before": "deploy"},
            {"name": "Warm caches", "kind": "automated", "job": "payments/warm",
             "after": "smoke_test"},
        ],
    }}})  # fmt: skip


@pytest.fixture
def linked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        cmdb, "link_impact", lambda client, sys_id, impact: calls.append((sys_id, impact))
    )
    return calls


def release(**fields: Any) -> Release:
    start = datetime(2026, 12, 5, 21, tzinfo=UTC)
    base = {
        "id": "rel-1",
        "service": "payments",
        "version": "1.4.0",
        "name": "Faster refunds",
        "window_start": start,
        "window_end": start + timedelta(hours=2),
    }
    return Release.model_validate({**base, **fields})


def with_change(rel: Release, **fields: Any) -> Release:
    ref = ChangeRef(system="servicenow", id=CHG, number="CHG0030001")
    return rel.model_copy(update={"records": [ref], **fields})


def params(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(str(call.request.url)).query).items()}


def table_calls(method: str, table: str) -> list[Any]:
    return [
        c
        for c in responses.calls
        if c.request.method == method and urlsplit(str(c.request.url)).path.endswith(table)
    ]


def by_name(table: str, sys_id: str | None) -> None:
    rows = [{"sys_id": sys_id}] if sys_id else []
    responses.get(f"{TABLE}/{table}", json={"result": rows})


# -- find_or_create -------------------------------------------------------------------------
@responses.activate
def test_found_change_is_returned_without_a_create(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings, linked: list[Any]
) -> None:
    responses.get(
        f"{TABLE}/change_request",
        json={"result": [{"sys_id": CHG, "number": "CHG0030001", "state": "-4"}]},
    )
    ref = change.find_or_create(client, config, bridge, release(), None)
    assert (ref.id, ref.number, ref.state) == (CHG, "CHG0030001", "Assess")
    assert ref.url == f"{BASE}/nav_to.do?uri=change_request.do?sys_id={CHG}"
    query = params(responses.calls[0])
    assert query["sysparm_query"] == "correlation_id=rel-1^ORDERBYsys_created_on"
    assert query["sysparm_fields"] == "sys_id,number,state"
    assert query["sysparm_exclude_reference_link"] == "true"
    assert not table_calls("POST", "change_request")
    assert linked == [(CHG, None)]  # the found path links CIs too (repairs a crash)


@responses.activate
def test_create_sends_the_documented_fields(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings, linked: list[Any]
) -> None:
    responses.get(f"{TABLE}/change_request", json={"result": []})
    by_name("cmdb_ci", CI)
    by_name("sys_user_group", GROUP)
    responses.post(f"{TABLE}/change_request", status=201, json={"result": {
        "sys_id": CHG, "number": "CHG0030002", "state": "-5"}})  # fmt: skip
    notes = ReleaseNotes(title="t", markdown="## Payments 1.4.0\n" + "- item\n" * 900)
    ref = change.find_or_create(client, config, bridge, release(), notes)
    assert (ref.id, ref.number, ref.state) == (CHG, "CHG0030002", "New")
    [post] = table_calls("POST", "change_request")
    body = json.loads(post.request.body or b"")
    assert body["correlation_id"] == "rel-1" and body["correlation_display"] == "itsm-bridge"
    assert body["short_description"] == "payments 1.4.0: Faster refunds"
    assert (body["start_date"], body["end_date"]) == ("2026-12-05 21:00:00", "2026-12-05 23:00:00")
    assert (body["cmdb_ci"], body["assignment_group"]) == (CI, GROUP)
    assert (body["type"], body["risk"], body["impact"], body["category"]) == (
        "normal",
        "3",
        "2",
        "Software",
    )
    assert len(body["description"]) <= 4000 and body["description"].endswith("itsm-bridge]")
    assert body["description"].startswith("## Payments 1.4.0\n- item")
    assert body["implementation_plan"].splitlines() == [
        "1. Stop database (manual, Database Administration)",
        "2. Deploy (job payments/deploy)",
        "3. Start database (manual, Database Administration)",
        "4. Smoke test (job payments/smoke)",
        "5. Warm caches (job payments/warm)",
    ]
    assert "payments/rollback" in body["backout_plan"]
    assert "payments/smoke" in body["test_plan"]
    assert "justification" not in body
    assert params(post) == {
        "sysparm_exclude_reference_link": "true",
        "sysparm_fields": "sys_id,number,state",
    }
    ci_query = params(table_calls("GET", "cmdb_ci")[0])
    assert (ci_query["sysparm_query"], ci_query["sysparm_fields"]) == (
        "name=payments-api",
        "sys_id",
    )
    assert linked == [(CHG, None)]


@responses.activate
def test_emergency_change_carries_the_reason_and_no_rollback_means_no_backout(
    client: ServiceNowClient, bridge: BridgeSettings, linked: list[Any]
) -> None:
    config = Settings.model_validate({"url": BASE, "user": "u", "password": "p"})
    bridge.services["payments"].jobs.rollback = None
    bridge.services["payments"].ci = None
    responses.get(f"{TABLE}/change_request", json={"result": []})
    responses.post(f"{TABLE}/change_request", status=201, json={"result": {"sys_id": CHG}})
    change.find_or_create(client, config, bridge, release(type="emergency", reason="fraud"), None)
    body = json.loads(table_calls("POST", "change_request")[0].request.body or b"")
    assert body["type"] == "emergency" and body["justification"] == "Emergency change: fraud"
    assert "backout_plan" not in body and "cmdb_ci" not in body
    assert "assignment_group" not in body


@responses.activate
def test_lost_create_is_not_retried_and_the_next_call_finds_it(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings, linked: list[Any]
) -> None:
    responses.get(f"{TABLE}/change_request", json={"result": []})
    by_name("cmdb_ci", CI)
    by_name("sys_user_group", GROUP)
    responses.post(
        f"{TABLE}/change_request",
        status=503,
        json={"error": {"message": "Service Unavailable", "detail": None}, "status": "failure"},
    )
    with pytest.raises(HTTPTransientError):
        change.find_or_create(client, config, bridge, release(), None)
    assert len(table_calls("POST", "change_request")) == 1
    responses.replace(
        responses.GET,
        f"{TABLE}/change_request",
        json={"result": [{"sys_id": CHG, "number": "CHG0030003", "state": "-5"}]},
    )
    assert change.find_or_create(client, config, bridge, release(), None).id == CHG
    assert len(table_calls("POST", "change_request")) == 1


@responses.activate
def test_missing_assignment_group_needs_a_human(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings, linked: list[Any]
) -> None:
    responses.get(f"{TABLE}/change_request", json={"result": []})
    by_name("cmdb_ci", CI)
    by_name("sys_user_group", None)
    with pytest.raises(NeedsHuman, match="assignment_group names 'Change Management'"):
        change.find_or_create(client, config, bridge, release(), None)
    assert not table_calls("POST", "change_request")


@responses.activate
def test_standard_change_from_template_uses_the_change_management_api(
    client: ServiceNowClient, bridge: BridgeSettings, linked: list[Any]
) -> None:
    template = "e" * 32
    config = Settings.model_validate(
        {"url": BASE, "user": "u", "password": "p", "standard_template": "Deploy payments"}
    )
    responses.get(f"{TABLE}/change_request", json={"result": []})
    by_name("cmdb_ci", CI)
    by_name("std_change_record_producer", template)
    url = f"{BASE}/api/sn_chg_rest/change/standard/{template}"
    responses.post(url, json={"result": [{  # documented shape: {value, display_value} fields
        "sys_id": {"value": CHG, "display_value": CHG},
        "number": {"value": "CHG0030004", "display_value": "CHG0030004"},
        "state": {"value": "-5", "display_value": "New"},
        "__meta": {"ignoredFields": []}}]})  # fmt: skip
    ref = change.find_or_create(client, config, bridge, release(type="standard"), None)
    assert (ref.id, ref.number, ref.state) == (CHG, "CHG0030004", "New")
    body = json.loads(responses.calls[-1].request.body or b"")
    assert body["correlation_id"] == "rel-1" and body["cmdb_ci"] == CI
    assert not {"implementation_plan", "backout_plan", "test_plan", "description"} & set(body)
    assert not table_calls("POST", "change_request")


@responses.activate
def test_standard_change_create_is_not_retried(
    client: ServiceNowClient, bridge: BridgeSettings, linked: list[Any]
) -> None:
    template = "e" * 32
    config = Settings.model_validate(
        {"url": BASE, "user": "u", "password": "p", "standard_template": template}
    )
    bridge.services["payments"].ci = None
    responses.get(f"{TABLE}/change_request", json={"result": []})
    url = f"{BASE}/api/sn_chg_rest/change/standard/{template}"
    responses.post(url, status=503, json={"error": {"message": "busy"}, "status": "failure"})
    with pytest.raises(HTTPTransientError):
        change.find_or_create(client, config, bridge, release(type="standard"), None)
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1


# -- sync ---------------------------------------------------------------------------------
def current(state: str, approval: str = "not requested") -> None:
    responses.get(f"{TABLE}/change_request", json={"result": [
        {"state": state, "approval": approval, "type": "normal"}]})  # fmt: skip


def journal_has(found: bool) -> None:
    rows = [{"sys_id": "j" * 32, "element": "work_notes", "value": "[itsm-bridge ..."}]
    responses.get(f"{TABLE}/sys_journal_field", json={"result": rows if found else []})


def patch_bodies() -> list[dict[str, Any]]:
    patches = [c for c in responses.calls if c.request.method == "PATCH"]
    return [json.loads(c.request.body or b"") for c in patches]


EVENT = Event(
    at=datetime(2026, 12, 1, 9, tzinfo=UTC),
    actor="bridge",
    kind="step",
    message="step 7 evaluate: waiting",
    evidence={"step": 7, "status": "waiting"},
)


@responses.activate
def test_sync_requests_approval_one_step_at_a_time_with_the_note_on_the_first(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-5")
    journal_has(False)
    responses.patch(f"{TABLE}/change_request/{CHG}", json={"result": {"state": "-4"}})
    change.sync(client, config, with_change(release()), EVENT)
    first, second = patch_bodies()
    assert first["state"] == "-4" and first["work_notes"].startswith("[itsm-bridge 2026-12-01")
    assert "step 7 evaluate: waiting" in first["work_notes"]
    assert second == {"state": "-3"}
    marker_query = params(table_calls("GET", "sys_journal_field")[0])["sysparm_query"]
    assert marker_query.startswith(f"element_id={CHG}^elementINwork_notes^valueLIKE[itsm-bridge")


@responses.activate
def test_sync_redelivery_writes_no_second_note(client: ServiceNowClient, config: Settings) -> None:
    current("-3", "requested")
    journal_has(True)
    change.sync(client, config, with_change(release()), EVENT)
    assert patch_bodies() == []  # already in Authorize, note already there


@responses.activate
def test_sync_does_not_schedule_an_unapproved_change(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-3", "requested")
    journal_has(False)
    responses.patch(f"{TABLE}/change_request/{CHG}", json={"result": {}})
    event = EVENT.model_copy(update={"kind": "state", "evidence": {}})
    change.sync(client, config, with_change(release(), state=ReleaseState.SCHEDULED), event)
    assert [set(body) for body in patch_bodies()] == [{"work_notes"}]


@responses.activate
def test_sync_closes_with_close_code_and_notes(client: ServiceNowClient, config: Settings) -> None:
    current("-1", "approved")
    journal_has(False)
    responses.patch(f"{TABLE}/change_request/{CHG}", json={"result": {}})
    rel = with_change(release(), state=ReleaseState.CLOSED, failure_reason="smoke test failed")
    change.sync(client, config, rel, EVENT)
    review, closed = patch_bodies()
    assert review["state"] == "0" and "work_notes" in review
    assert (closed["state"], closed["close_code"]) == ("3", "unsuccessful")
    assert "smoke test failed" in closed["close_notes"]


@responses.activate
def test_sync_refused_move_becomes_a_work_note_once(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-5")
    journal_has(False)
    refusal = {"error": {"message": "Operation Failed", "detail": "Operation against file "
               "'change_request' was aborted by Business Rule 'State model - Can change "
               "state?^x'."}, "status": "failure"}  # fmt: skip
    responses.patch(f"{TABLE}/change_request/{CHG}", status=403, json=refusal)
    responses.patch(f"{TABLE}/change_request/{CHG}", json={"result": {}})
    change.sync(client, config, with_change(release()), EVENT)  # does not raise
    attempt, note = patch_bodies()
    assert attempt["state"] == "-4"
    assert (
        set(note) == {"work_notes"}
        and "could not move the change to Assess" in note["work_notes"]
        and "Business Rule" in note["work_notes"]
    )


@responses.activate
def test_sync_without_a_change_does_nothing(client: ServiceNowClient, config: Settings) -> None:
    change.sync(client, config, release(), EVENT)
    assert len(responses.calls) == 0


# -- approval -----------------------------------------------------------------------------
@responses.activate
def test_approval_names_the_approver(client: ServiceNowClient) -> None:
    responses.get(f"{TABLE}/change_request", json={"result": [
        {"approval": "approved", "sys_updated_on": "2026-12-02 10:00:00"}]})  # fmt: skip
    responses.get(f"{TABLE}/sysapproval_approver", json={"result": [
        {"sys_id": "p" * 32, "approver": "u" * 32, "approver.name": "Carla Cab",
         "approver.user_name": "carla", "sys_updated_on": "2026-12-02 09:58:00"}]})  # fmt: skip
    responses.get(f"{TABLE}/sys_journal_field", json={"result": []})
    decision = change.approval(client, with_change(release()))
    assert decision is not None
    assert (decision.status, decision.by) == ("approved", "Carla Cab")
    assert decision.at == datetime(2026, 12, 2, 9, 58, tzinfo=UTC)
    query = params(table_calls("GET", "sysapproval_approver")[0])["sysparm_query"]
    assert query == f"sysapproval={CHG}^state=approved^ORDERBYDESCsys_updated_on"


@responses.activate
def test_rejection_comment_falls_back_to_the_change_journal(client: ServiceNowClient) -> None:
    responses.get(f"{TABLE}/change_request", json={"result": [
        {"approval": "rejected", "sys_updated_on": "2026-12-02 10:00:00"}]})  # fmt: skip
    responses.get(f"{TABLE}/sysapproval_approver", status=400, json={
        "error": {"message": "Invalid table sysapproval_approver", "detail": None},
        "status": "failure"})  # fmt: skip
    responses.get(f"{TABLE}/sys_journal_field", json={"result": [
        {"element": "work_notes", "value": "[itsm-bridge 2026-12-01T09:00:00+00:00 step #1]"},
        {"element": "comments", "value": "Not during the peak"}]})  # fmt: skip
    decision = change.approval(client, with_change(release()))
    assert decision is not None
    assert (decision.status, decision.comment) == ("rejected", "Not during the peak")


@responses.activate
def test_approval_pending_and_none(client: ServiceNowClient) -> None:
    responses.get(f"{TABLE}/change_request", json={"result": [
        {"approval": "requested", "sys_updated_on": ""}]})  # fmt: skip
    decision = change.approval(client, with_change(release()))
    assert decision is not None and decision.status == "pending"
    assert change.approval(client, release()) is None


# -- findings -----------------------------------------------------------------------------
CONFLICT = f"{BASE}/api/sn_chg_rest/change/{CHG}/conflict"


def change_dates(
    start: str = "2026-12-05 21:00:00",
    end: str = "2026-12-05 23:00:00",
    backout: str = "run payments/rollback",
) -> None:
    responses.get(f"{TABLE}/change_request", json={"result": [
        {"backout_plan": backout, "start_date": start, "end_date": end}]})  # fmt: skip


@responses.activate
def test_conflicts_are_read_from_the_array_not_the_status(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    responses.post(CONFLICT, json={"result": "c0b5afe4b710230096c3e4f6ee11a93f"})
    responses.get(CONFLICT, json={"result": {"status": "Conflict", "last_run":
                  "2026-12-01 12:58:05", "record_count": "1", "job_status": "2",
                  "conflicts": []}})  # fmt: skip
    assert change.findings(client, config, bridge, with_change(release())) == []


@responses.activate
def test_each_conflict_is_a_blocker_with_evidence(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    responses.post(CONFLICT, json={"result": "c0b5afe4b710230096c3e4f6ee11a93f"})
    responses.get(CONFLICT, json={"result": {"status": "Conflict", "record_count": "1",
        "last_run": "2026-12-01 12:58:05", "job_status": "2", "conflicts": [{
            "change": {"display_value": "CHG0030001", "value": CHG},
            "type": {"display_value": "Blackout", "value": "blackout"},
            "configuration_item": {"display_value": "payments-api", "value": CI},
            "related_configuration_item": {"display_value": "payments", "value": "s" * 32},
            "schedule": {"display_value": "Year-end freeze", "value": "y" * 32},
            "conflicting_change": {"display_value": "", "value": ""},
        }]}})  # fmt: skip
    [finding] = change.findings(client, config, bridge, with_change(release()))
    assert finding.severity == "blocker"
    assert finding.evidence["type"] == "blackout"
    assert (finding.evidence["ci"], finding.evidence["schedule"]) == (
        "payments-api",
        "Year-end freeze",
    )
    assert "Blackout on payments-api (through payments) with schedule Year-end freeze" in (
        finding.message
    )


@responses.activate
def test_instance_without_the_change_api_gets_an_info_finding(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    responses.post(CONFLICT, status=400, json={"error": {
        "message": "Requested URI does not represent any resource", "detail": None},
        "status": "failure"})  # fmt: skip
    [finding] = change.findings(client, config, bridge, with_change(release()))
    assert finding.severity == "info" and "unavailable" in finding.message


@responses.activate
def test_other_conflict_api_errors_propagate(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    responses.post(CONFLICT, status=400, json={"error": {
        "message": "Change request has no planned start date", "detail": None},
        "status": "failure"})  # fmt: skip
    with pytest.raises(HTTPRequestError, match="no planned start date"):
        change.findings(client, config, bridge, with_change(release()))


@responses.activate
def test_check_not_finished_is_transient(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    responses.post(CONFLICT, json={"result": "c0b5afe4b710230096c3e4f6ee11a93f"})
    responses.get(CONFLICT, json={"result": {"status": "Not Run", "last_run": "",
                  "record_count": "0", "job_status": "", "conflicts": []}})  # fmt: skip
    with pytest.raises(TransientError, match="not finished"):
        change.findings(client, config, bridge, with_change(release()))


@responses.activate
def test_missing_backout_and_window_outside_the_dates(
    client: ServiceNowClient, bridge: BridgeSettings
) -> None:
    config = Settings.model_validate(
        {"url": BASE, "user": "u", "password": "p", "conflict_check": False}
    )
    change_dates(end="2026-12-05 22:00:00", backout="")
    found = change.findings(client, config, bridge, with_change(release()))
    assert [f.severity for f in found] == ["blocker", "blocker"]
    assert "no back-out plan" in found[0].message
    assert found[1].evidence["end_date"] == "2026-12-05T22:00:00+00:00"
    assert len(responses.calls) == 1  # no conflict check when disabled


@responses.activate
def test_window_inside_the_dates_passes(client: ServiceNowClient, bridge: BridgeSettings) -> None:
    config = Settings.model_validate(
        {"url": BASE, "user": "u", "password": "p", "conflict_check": False}
    )
    change_dates(start="2026-12-05 20:00:00")
    assert change.findings(client, config, bridge, with_change(release())) == []


@responses.activate
def test_sync_writes_the_note_when_the_journal_cannot_be_read() -> None:
    from itsm_bridge_servicenow.change_state import sync

    base = "https://acme.service-now.com/api/now/table"
    responses.get(
        f"{base}/change_request",
        json={"result": [{"state": "-1", "approval": "approved", "type": "normal"}]},
    )
    responses.get(
        f"{base}/sys_journal_field",
        status=403,
        json={"error": {"message": "User Not Authorized", "detail": "ACL"}, "status": "failure"},
    )
    patched = responses.patch(f"{base}/change_request/c1", json={"result": {"state": "-1"}})
    client = ServiceNowClient("https://acme.service-now.com", "u", SecretStr("p"))
    release = Release(
        id="r1",
        service="payments",
        version="1",
        state=ReleaseState.IMPLEMENTING,
        records=[ChangeRef(system="servicenow", id="c1", number="CHG1")],
    )
    event = Event(
        at=datetime(2026, 12, 5, 21, tzinfo=UTC),
        actor="itsm-bridge",
        kind="task",
        message="task Deploy done",
    )
    sync(client, None, release, event)
    assert patched.call_count == 1
    assert "task Deploy done" in json.loads(responses.calls[-1].request.body)["work_notes"]
