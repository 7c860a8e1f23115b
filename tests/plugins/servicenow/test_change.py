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
from itsm_bridge.http import HTTPTransientError
from itsm_bridge.models import (
    ChangeRef,
    Event,
    ExternalRecord,
    Release,
    ReleaseNotes,
    ReleaseState,
)
from itsm_bridge.settings import BridgeSettings, settings_from_mapping
from itsm_bridge_servicenow import Settings, change, change_review, cmdb
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
    jobs = {"deploy": "payments/deploy", "smoke_test": "payments/smoke",
            "rollback": "payments/rollback"}  # fmt: skip  # the purposes a plugin runs
    ref = change.find_or_create(client, config, bridge, release(jobs=jobs), notes)
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
NEXT = f"{BASE}/api/sn_chg_rest/change/{CHG}/nextstates"
AT = datetime(2026, 12, 1, 9, tzinfo=UTC)


def current(state: str, approval: str = "not requested", kind: str = "normal") -> None:
    responses.get(f"{TABLE}/change_request", json={"result": [
        {"state": state, "approval": approval, "type": kind}]})  # fmt: skip


def journal_has(found: bool) -> None:
    rows = [{"sys_id": "j" * 32, "element": "work_notes", "value": "[itsm-bridge ..."}]
    responses.get(f"{TABLE}/sys_journal_field", json={"result": rows if found else []})


def next_states(*states: str, transitions: list[Any] | None = None) -> None:
    """The documented nextstates answer: the current state first, then the reachable ones."""
    responses.get(NEXT, json={"result": {"available_states": list(states),
        "state_label": {}, "state_transitions": transitions or []}})  # fmt: skip


def patch_bodies() -> list[dict[str, Any]]:
    patches = [c for c in responses.calls if c.request.method == "PATCH"]
    return [json.loads(c.request.body or b"") for c in patches]


def event(kind: str, message: str = "", minute: int = 0, **evidence: Any) -> Event:
    return Event(at=AT + timedelta(minutes=minute), actor="itsm-bridge", kind=kind,
                 message=message or kind, evidence=evidence)  # fmt: skip


PENDING = event("approval", "approval requested", status="pending")


def patched() -> None:
    responses.patch(f"{TABLE}/change_request/{CHG}", json={"result": {}})


@responses.activate
def test_approval_requested_moves_a_normal_change_to_assess_only(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-5")
    journal_has(False)
    next_states("-5", "-4", "4")
    patched()
    change.sync(client, config, with_change(release()), PENDING)
    [body] = patch_bodies()  # Assess and nothing further: Authorize belongs to the approvers
    assert body["state"] == "-4" and body["work_notes"].startswith("[itsm-bridge 2026-12-01")
    assert "approval requested" in body["work_notes"]
    marker_query = params(table_calls("GET", "sys_journal_field")[0])["sysparm_query"]
    assert marker_query.startswith(f"element_id={CHG}^elementINwork_notes^valueLIKE[itsm-bridge")
    assert len([c for c in responses.calls if c.request.url.startswith(NEXT)]) == 1


@responses.activate
def test_the_change_type_on_the_record_rules_not_the_release_type(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-5", kind="emergency")  # the release says normal
    journal_has(False)
    next_states("-5", "-3", "4")
    patched()
    change.sync(client, config, with_change(release()), PENDING)
    assert [b["state"] for b in patch_bodies()] == ["-3"]  # emergency: New -> Authorize


@responses.activate
def test_a_standard_change_is_scheduled_by_its_requester(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-5", "approved", kind="standard")
    journal_has(False)
    next_states("-5", "-2", "4")
    patched()
    change.sync(client, config, with_change(release(type="standard")), PENDING)
    assert [b["state"] for b in patch_bodies()] == ["-2"]


@responses.activate
@pytest.mark.parametrize("state", [ReleaseState.SCHEDULED, ReleaseState.IMPLEMENTING])
def test_the_bridge_never_writes_authorize_or_scheduled_on_a_normal_change(
    client: ServiceNowClient, config: Settings, state: ReleaseState
) -> None:
    for waiting in ("-4", "-3"):
        responses.reset()
        current(waiting, "requested")
        journal_has(False)
        patched()
        moved = event("state", f"-> {state.value}", to=state.value)
        change.sync(client, config, with_change(release(), state=state), moved)
        assert [set(body) for body in patch_bodies()] == [{"work_notes"}]


@responses.activate
def test_redelivery_writes_no_second_note_and_does_not_ask_again(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-5", "rejected")  # the approvers rejected after the first delivery
    journal_has(True)
    change.sync(client, config, with_change(release()), PENDING)
    assert patch_bodies() == []
    assert not [c for c in responses.calls if c.request.url.startswith(NEXT)]


@responses.activate
def test_a_retry_asks_again_after_a_rejection_only(
    client: ServiceNowClient, config: Settings
) -> None:
    retry = event("retry", "blocked steps will run again", minute=5)
    current("-5", "rejected")
    journal_has(False)
    next_states("-5", "-4", "4")
    patched()
    change.sync(client, config, with_change(release()), retry)
    assert [b["state"] for b in patch_bodies()] == ["-4"]
    responses.reset()
    current("-5", "not requested")  # blocked by a finding, never asked: the retry asks nothing
    journal_has(False)
    patched()
    change.sync(client, config, with_change(release()), retry)
    assert [set(b) for b in patch_bodies()] == [{"work_notes"}]


@responses.activate
def test_implementing_moves_a_scheduled_change_to_implement(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-2", "approved")
    journal_has(False)
    next_states("-2", "-1", "4")
    patched()
    rel = with_change(release(), state=ReleaseState.IMPLEMENTING)
    change.sync(client, config, rel, event("state", "-> implementing", to="implementing"))
    [body] = patch_bodies()
    assert body["state"] == "-1" and "-> implementing" in body["work_notes"]


@responses.activate
def test_sync_closes_with_close_code_notes_and_the_note_count(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-1", "approved")
    responses.get(f"{TABLE}/sys_journal_field", json={"result": []})  # this note: not yet
    responses.get(f"{TABLE}/sys_journal_field", json={"result": [{"value": "[itsm-bridge"}] * 11})
    next_states("-1", "0", "4")
    next_states("0", "3")
    patched()
    rel = with_change(release(), state=ReleaseState.CLOSED, failure_reason="smoke test failed")
    change.sync(client, config, rel, event("state", "-> closed", to="closed"))
    review, closed = patch_bodies()
    assert review["state"] == "0" and review["work_notes"].endswith(
        "work notes written by itsm-bridge on this change: 12"
    )
    assert (closed["state"], closed["close_code"]) == ("3", "unsuccessful")
    assert "smoke test failed" in closed["close_notes"] and "work_notes" not in closed


@responses.activate
def test_a_move_nextstates_does_not_offer_is_not_made_and_the_note_says_why(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-1", "approved")
    journal_has(False)
    next_states("-1", "0", "4", transitions=[[{"to_state": "0", "transition_available": False,
        "automatic_transition": True, "conditions": [{"passed": False, "condition": {
            "name": "No active Change Tasks", "description": None}}]}]])  # fmt: skip
    patched()
    rel = with_change(release(), state=ReleaseState.SUCCEEDED)
    change.sync(client, config, rel, event("state", "-> succeeded", to="succeeded"))
    [body] = patch_bodies()
    assert set(body) == {"work_notes"}
    assert "could not move the change to Review" in body["work_notes"]
    assert "No active Change Tasks" in body["work_notes"]


@responses.activate
def test_without_the_nextstates_endpoint_the_built_in_model_is_used_and_remembered(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-2", "approved")
    journal_has(False)
    responses.get(NEXT, status=400, json={"error": {
        "message": "Requested URI does not represent any resource", "detail": None},
        "status": "failure"})  # fmt: skip
    patched()
    rel = with_change(release(), state=ReleaseState.IMPLEMENTING)
    change.sync(client, config, rel, event("state", "-> implementing", to="implementing"))
    change.sync(client, config, rel, event("task", "Deploy done", minute=1, task="deploy"))
    assert [b.get("state") for b in patch_bodies()] == ["-1", "-1"]  # the mock stays at -2
    assert len([c for c in responses.calls if c.request.url.startswith(NEXT)]) == 1


@responses.activate
def test_sync_refused_move_becomes_a_work_note_once(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-5")
    journal_has(False)
    next_states("-5", "-4", "4")
    refusal = {"error": {"message": "Operation Failed", "detail": "Operation against file "
               "'change_request' was aborted by Business Rule 'State model - Can change "
               "state?^x'."}, "status": "failure"}  # fmt: skip
    responses.patch(f"{TABLE}/change_request/{CHG}", status=403, json=refusal)
    patched()
    change.sync(client, config, with_change(release()), PENDING)  # does not raise
    attempt, note = patch_bodies()
    assert attempt["state"] == "-4"
    assert set(note) == {"work_notes"}
    assert "could not move the change to Assess" in note["work_notes"]
    assert "Business Rule" in note["work_notes"]


@responses.activate
def test_progress_chatter_costs_no_call(client: ServiceNowClient, config: Settings) -> None:
    for status in ("running", "waiting", "done"):
        change.sync(client, config, with_change(release()), event("step", step=11, status=status))
    assert len(responses.calls) == 0


@responses.activate
def test_a_failed_step_is_noted(client: ServiceNowClient, config: Settings) -> None:
    current("-2", "approved")
    journal_has(False)
    patched()
    failed = event("step", "step 12 smoke test: failed", step=12, status="failed")
    change.sync(client, config, with_change(release()), failed)
    [body] = patch_bodies()
    assert "step 12 smoke test: failed" in body["work_notes"]
    assert "- status: failed" not in body["work_notes"]  # the message says it already


@responses.activate
def test_the_tasks_note_links_the_tasks_and_other_notes_do_not(
    client: ServiceNowClient, config: Settings
) -> None:
    current("-4", "requested")
    journal_has(False)
    patched()
    url = f"{BASE}/nav_to.do?uri=change_task.do?sys_id={'t' * 32}"
    tasks = [
        {"key": "stop-db", "name": "Stop database", "kind": "manual",
         "group": "Database Administration", "record": {"system": "servicenow",
         "kind": "change_task", "id": "t" * 32, "number": "CTASK0010001", "url": url}},
        {"key": "deploy", "name": "Deploy", "kind": "manual", "group": "", "record": None},
    ]  # fmt: skip
    task_ref = ExternalRecord(system="servicenow", kind="change_task", id="t" * 32, url=url)
    rel = with_change(release())
    rel = rel.model_copy(update={"records": [*rel.records, task_ref]})
    change.sync(client, config, rel, event("tasks", "2 tasks planned", tasks=tasks))
    found = [{"severity": "warning", "source": "policy", "message": "emergency change"}]
    change.sync(client, config, rel, event("findings", "1 finding", minute=1, findings=found))
    tasks_note, findings_note = (b["work_notes"] for b in patch_bodies())
    assert "- Stop database (manual, Database Administration): CTASK0010001 " + url in tasks_note
    assert "- Deploy (manual)" in tasks_note
    assert url not in findings_note
    assert "- warning (policy): emergency change" in findings_note


@responses.activate
def test_sync_without_a_change_does_nothing(client: ServiceNowClient, config: Settings) -> None:
    change.sync(client, config, release(), PENDING)
    assert len(responses.calls) == 0


# -- approval -----------------------------------------------------------------------------
def approval_row(approval: str, state: str) -> None:
    row = {"approval": approval, "state": state, "sys_updated_on": "2026-12-02 10:00:00"}
    responses.get(f"{TABLE}/change_request", json={"result": [row]})


@responses.activate
def test_approval_names_the_approver_once_the_change_is_scheduled(
    client: ServiceNowClient,
) -> None:
    approval_row("approved", "-2")
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
@pytest.mark.parametrize(
    ("approval", "state"),
    [("approved", "-5"), ("approved", "-4"), ("approved", "-3"), ("requested", "-3"),
     ("not requested", "-5")],
)  # fmt: skip
def test_approved_is_not_authorized_before_scheduled(
    client: ServiceNowClient, approval: str, state: str
) -> None:
    approval_row(approval, state)  # e.g. a standard change (pre-approved) still in New
    decision = change.approval(client, with_change(release()))
    assert decision is not None and decision.status == "pending"
    assert len(responses.calls) == 1


@responses.activate
def test_rejection_comment_falls_back_to_the_change_journal(client: ServiceNowClient) -> None:
    approval_row("rejected", "-5")
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
def test_a_change_canceled_in_servicenow_is_a_rejection(client: ServiceNowClient) -> None:
    approval_row("requested", "4")
    decision = change.approval(client, with_change(release()))
    assert decision is not None and decision.status == "rejected"
    assert "canceled in ServiceNow" in decision.comment
    assert change.approval(client, release()) is None


# -- findings -----------------------------------------------------------------------------
CONFLICT = f"{BASE}/api/sn_chg_rest/change/{CHG}/conflict"
BEFORE = {"status": "Conflict", "last_run": "2026-12-01 08:00:00", "record_count": "1",
          "job_status": "2", "conflicts": []}  # fmt: skip


def change_dates(
    start: str = "2026-12-05 21:00:00",
    end: str = "2026-12-05 23:00:00",
    backout: str = "run payments/rollback",
    ci: str = CI,
) -> None:
    row = {"backout_plan": backout, "start_date": start, "end_date": end, "cmdb_ci": ci}
    responses.get(f"{TABLE}/change_request", json={"result": [row]})


def check_answers(*results: dict[str, Any]) -> None:
    """POST, then the GETs in order: the one before the POST, then each poll."""
    responses.post(CONFLICT, json={"result": "c0b5afe4b710230096c3e4f6ee11a93f"})
    for result in results:
        responses.get(CONFLICT, json={"result": result})


def run(last_run: str = "2026-12-01 12:58:05", job: str = "2", conflicts: Any = ()) -> Any:
    return {"status": "Conflict", "last_run": last_run, "record_count": "1",
            "job_status": job, "conflicts": list(conflicts)}  # fmt: skip


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def poll(self) -> change_review.ConflictPoll:
        return change_review.ConflictPoll(
            delays=(1.0, 2.0, 4.0), deadline_seconds=10.0, sleep=self.sleep, clock=lambda: self.now
        )


def conflict_calls(method: str) -> int:
    return len([c for c in responses.calls if c.request.method == method
                and c.request.url.startswith(CONFLICT)])  # fmt: skip


@responses.activate
def test_the_check_is_polled_until_a_run_after_the_post_has_finished(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    clock = FakeTime()
    blackout = {"type": {"display_value": "Blackout", "value": "blackout"},
                "configuration_item": {"display_value": "payments-api", "value": CI}}  # fmt: skip
    stale = run("2026-12-01 08:00:00", conflicts=[])  # the previous run, still reported
    check_answers(BEFORE, stale, run(job="1"), run(conflicts=[blackout]))
    found = change.findings(client, config, bridge, with_change(release()), clock.poll())
    assert [f.evidence["type"] for f in found] == ["blackout"]
    assert (conflict_calls("POST"), conflict_calls("GET")) == (1, 4)
    assert clock.sleeps == [1.0, 2.0]


@responses.activate
def test_conflicts_are_read_from_the_array_not_the_status(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    check_answers(BEFORE, run())
    assert change.findings(client, config, bridge, with_change(release()), FakeTime().poll()) == []


@responses.activate
def test_each_conflict_is_a_blocker_with_evidence(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    check_answers(BEFORE, run(conflicts=[{
        "change": {"display_value": "CHG0030001", "value": CHG},
        "type": {"display_value": "Blackout", "value": "blackout"},
        "configuration_item": {"display_value": "payments-api", "value": CI},
        "related_configuration_item": {"display_value": "payments", "value": "s" * 32},
        "schedule": {"display_value": "Year-end freeze", "value": "y" * 32},
        "conflicting_change": {"display_value": "", "value": ""},
    }]))  # fmt: skip
    [finding] = change.findings(client, config, bridge, with_change(release()), FakeTime().poll())
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
def test_a_check_that_does_not_finish_by_the_deadline_is_transient(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    clock = FakeTime()
    check_answers(BEFORE, run(job="1"))  # running, as often as it is asked
    with pytest.raises(TransientError, match="has not finished"):
        change.findings(client, config, bridge, with_change(release()), clock.poll())
    assert clock.sleeps == [1.0, 2.0, 4.0] and clock.now <= 10.0
    assert conflict_calls("GET") == 5  # before, then 4 polls
    responses.reset()
    change_dates()
    check_answers(BEFORE, BEFORE)  # only ever the run from before the POST: never trusted
    with pytest.raises(TransientError):
        change.findings(client, config, bridge, with_change(release()), FakeTime().poll())


@responses.activate
def test_a_check_that_failed_is_reported_as_not_run(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    check_answers(BEFORE, run(job="3"))
    [finding] = change.findings(client, config, bridge, with_change(release()), FakeTime().poll())
    assert finding.severity == "warning"
    assert finding.message == "conflict check not run: the check failed (job_status 3)"


@responses.activate
def test_instance_without_the_change_api_gets_an_info_finding(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    responses.get(CONFLICT, status=400, json={"error": {
        "message": "Requested URI does not represent any resource", "detail": None},
        "status": "failure"})  # fmt: skip
    [finding] = change.findings(client, config, bridge, with_change(release()))
    assert finding.severity == "info"
    assert finding.message.startswith("conflict check not run: this instance has no Change")
    assert conflict_calls("POST") == 0


@responses.activate
def test_a_missing_record_is_not_a_missing_api(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    responses.get(CONFLICT, status=404, json={"error": {"message": "No Record found",
        "detail": "Record doesn't exist or ACL restricts the record retrieval"},
        "status": "failure"})  # fmt: skip
    with pytest.raises(NeedsHuman, match="not found by the Change Management API"):
        change.findings(client, config, bridge, with_change(release()))


@responses.activate
def test_a_missing_role_is_a_finding_not_a_crash(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    responses.get(CONFLICT, json={"result": BEFORE})
    responses.post(CONFLICT, status=403, json={"error": {"message": "User Not Authorized",
        "detail": "requires a role of change.conflict.role"}, "status": "failure"})  # fmt: skip
    [finding] = change.findings(client, config, bridge, with_change(release()))
    assert finding.severity == "warning"
    assert finding.message.startswith("conflict check not run: the integration user may not")
    assert "change.conflict.role" in finding.message


@responses.activate
def test_other_refusals_are_findings_with_the_instance_message(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings
) -> None:
    change_dates()
    responses.get(CONFLICT, json={"result": BEFORE})
    refusal = {"message": "Request was unable to start", "detail": None}
    responses.post(CONFLICT, status=400, json={"error": refusal, "status": "failure"})
    [finding] = change.findings(client, config, bridge, with_change(release()))
    assert "conflict check not run: the instance refused it" in finding.message
    assert "unable to start" in finding.message


@responses.activate
@pytest.mark.parametrize(
    ("fields", "why"),
    [({"start": ""}, "no planned start date"), ({"start": "", "end": ""},
      "no planned start and end date"), ({"ci": ""}, "no configuration item")],
)  # fmt: skip
def test_a_change_that_cannot_be_checked_says_so(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings,
    fields: dict[str, str], why: str,
) -> None:  # fmt: skip
    change_dates(**fields)
    rel = with_change(release(window_start=None, window_end=None))
    [finding] = change.findings(client, config, bridge, rel)
    expected = f"conflict check not run: the change has {why}"
    assert (finding.severity, finding.message) == ("warning", expected)
    assert conflict_calls("POST") == conflict_calls("GET") == 0


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
