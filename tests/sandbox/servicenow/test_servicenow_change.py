"""The default change model over the Table API, nextstates, and the approver helpers."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from itsm_bridge_sandbox.servicenow import ServiceNowSandbox

CHANGES = "/api/now/table/change_request"


def _create(http: requests.Session, url: str, **fields: Any) -> dict[str, Any]:
    response = http.post(f"{url}{CHANGES}", json={"short_description": "deploy", **fields})
    assert response.status_code == 201
    return response.json()["result"]


def _patch(http: requests.Session, url: str, sys_id: str, **fields: Any) -> requests.Response:
    return http.patch(f"{url}{CHANGES}/{sys_id}", json=fields)


def test_new_change_defaults(http: requests.Session, url: str) -> None:
    chg = _create(http, url)
    assert (chg["state"], chg["type"], chg["approval"]) == ("-5", "normal", "not requested")


def test_normal_change_walk_new_to_closed(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _create(http, url)
    sid = chg["sys_id"]
    assess = _patch(http, url, sid, state="-4").json()["result"]
    assert (assess["state"], assess["approval"]) == ("-4", "requested")  # approval requested
    refused = _patch(http, url, sid, state="-3")  # the approvers' move, never the requester's
    assert refused.status_code == 403
    assert "only the approval of the technical approvers" in refused.json()["error"]["detail"]
    assert _patch(http, url, sid, state="-2").status_code == 403
    technical = sn.approve_change(chg["number"], comment="tech: fine", levels=1)
    assert (technical["state"], technical["approval"]) == ("-3", "requested")  # CAB's turn
    refused = _patch(http, url, sid, state="-2")
    assert refused.status_code == 403 and "the CAB" in refused.json()["error"]["detail"]
    approved = sn.approve_change(chg["number"], comment="CAB: go")
    assert (approved["approval"], approved["state"]) == ("approved", "-2")
    assert _patch(http, url, sid, state="-2").status_code == 200  # same state: no-op
    assert _patch(http, url, sid, state="-1").json()["result"]["state"] == "-1"
    assert _patch(http, url, sid, state="0").json()["result"]["state"] == "0"
    assert _patch(http, url, sid, state="4").status_code == 403  # Review cannot be canceled
    missing = _patch(http, url, sid, state="3")
    assert missing.status_code == 403
    assert missing.json()["error"]["message"] == "Operation Failed"
    assert "Close code, Close notes" in missing.json()["error"]["detail"]
    closed = _patch(
        http, url, sid, state="3", close_code="successful", close_notes="deployed 4.3"
    ).json()["result"]
    assert (closed["state"], closed["active"]) == ("3", "false")
    assert closed["closed_at"]
    comments = sn.journal(chg["number"], "comments")
    assert [(e["value"], e["sys_created_by"]) for e in comments] == [
        ("tech: fine", "tech.approver"),
        ("CAB: go", "cab.manager"),
    ]


def test_one_call_walks_every_approval_level(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _create(http, url)
    _patch(http, url, chg["sys_id"], state="-4")
    approved = sn.approve_change(chg["sys_id"], "ok")
    assert (approved["state"], approved["approval"]) == ("-2", "approved")
    assert [e["value"] for e in sn.journal(chg["number"], "comments")] == ["ok"]


def test_nothing_to_approve_before_the_requester_asks(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _create(http, url)
    with pytest.raises(ValueError, match="not waiting for an approval"):
        sn.approve_change(chg["number"])
    with pytest.raises(ValueError, match="must ask for approval first"):
        sn.reject_change(chg["number"], "no")
    assert sn.record("change_request", chg["number"])["state"] == "-5"


def test_skipping_a_state_is_refused_like_a_business_rule(http: requests.Session, url: str) -> None:
    chg = _create(http, url)
    response = http.put(f"{url}{CHANGES}/{chg['sys_id']}", json={"state": "-1"})
    assert response.status_code == 403
    body = response.json()
    assert body["status"] == "failure"
    assert body["error"]["message"] == "Operation Failed"
    detail = body["error"]["detail"]
    assert detail.startswith(
        "Operation against file 'change_request' was aborted by Business "
        f"Rule 'State model - Can change state?^{chg['sys_id']}'"
    )
    assert "New (-5)" in detail and "Implement (-1)" in detail
    assert http.get(f"{url}{CHANGES}/{chg['sys_id']}").json()["result"]["state"] == "-5"
    assert _create_status(http, url, state="-1") == 403


def _create_status(http: requests.Session, url: str, **fields: Any) -> int:
    return http.post(f"{url}{CHANGES}", json=fields).status_code


def test_cancel_from_any_open_state_but_not_after_close(http: requests.Session, url: str) -> None:
    chg = _create(http, url)
    _patch(http, url, chg["sys_id"], state="-4")
    assert _patch(http, url, chg["sys_id"], state="4").json()["result"]["state"] == "4"
    assert _patch(http, url, chg["sys_id"], state="-5").status_code == 403


def test_revert_to_new_resets_the_approval(http: requests.Session, url: str) -> None:
    chg = _create(http, url)
    _patch(http, url, chg["sys_id"], state="-4")
    reverted = _patch(http, url, chg["sys_id"], state="-5").json()["result"]
    assert (reverted["state"], reverted["approval"]) == ("-5", "not requested")


def test_standard_change_is_preapproved_and_goes_straight_to_scheduled(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _create(http, url, type="standard")
    assert chg["approval"] == "approved"
    assert _patch(http, url, chg["sys_id"], state="-4").status_code == 403
    assert _patch(http, url, chg["sys_id"], state="-2").json()["result"]["state"] == "-2"
    with pytest.raises(ValueError):
        sn.approve_change(chg["sys_id"])  # nothing to approve on a standard change
    unapproved = _create(http, url, type="standard", approval="not requested")
    assert _patch(http, url, unapproved["sys_id"], state="-2").status_code == 403


def test_emergency_change_skips_assess(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _create(http, url, type="emergency")
    assert _patch(http, url, chg["sys_id"], state="-4").status_code == 403
    assert _patch(http, url, chg["sys_id"], state="-3").json()["result"]["approval"] == (
        "requested"
    )
    assert _patch(http, url, chg["sys_id"], state="-2").status_code == 403  # the CAB's move
    approved = sn.approve_change(chg["sys_id"], levels=1)  # the CAB: one level only
    assert (approved["state"], approved["approval"]) == ("-2", "approved")
    for state in ("-1", "0"):
        assert _patch(http, url, chg["sys_id"], state=state).status_code == 200


def test_reject_sends_the_change_back_to_new(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _create(http, url)
    _patch(http, url, chg["sys_id"], state="-4")
    sn.approve_change(chg["number"], levels=1)
    rejected = sn.reject_change(chg["number"], "too risky before year end")
    assert (rejected["state"], rejected["approval"]) == ("-5", "rejected")
    journal = http.get(
        f"{url}/api/now/table/sys_journal_field",
        params={"sysparm_query": f"element_id={chg['sys_id']}^element=comments"},
    ).json()["result"]
    assert [(j["value"], j["sys_created_by"]) for j in journal] == [
        ("too risky before year end", "cab.manager")
    ]
    again = _patch(http, url, chg["sys_id"], state="-4").json()["result"]
    assert (again["state"], again["approval"]) == ("-4", "requested")  # asked again


NEXT = "/api/sn_chg_rest/change/{}/nextstates"


def test_nextstates_lists_the_requesters_moves_and_the_approvers_as_unavailable(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _create(http, url)
    new = http.get(url + NEXT.format(chg["sys_id"])).json()["result"]
    assert new["available_states"] == ["-5", "-4", "4"]  # the current state included
    assert new["state_label"] == {"-5": "New", "-4": "Assess", "4": "Canceled"}
    assert [[t["to_state"] for t in group] for group in new["state_transitions"]] == [
        ["-4"],
        ["4"],
    ]
    assert all(t["transition_available"] for g in new["state_transitions"] for t in g)
    _patch(http, url, chg["sys_id"], state="-4")
    assess = http.get(url + NEXT.format(chg["sys_id"])).json()["result"]
    assert assess["available_states"] == ["-4", "-5", "-3", "4"]
    [to_authorize] = assess["state_transitions"][1]
    assert to_authorize["from_state"] == "-4" and to_authorize["to_state"] == "-3"
    assert to_authorize["display_value"] == "Assess to Authorize"
    assert (to_authorize["transition_available"], to_authorize["automatic_transition"]) == (
        False,
        True,
    )
    [condition] = to_authorize["conditions"]
    assert condition["passed"] is False
    assert condition["condition"]["name"] == "Approved by the technical approvers"


def test_nextstates_unknown_change_and_instance_without_the_api(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    missing = http.get(url + NEXT.format("f" * 32))
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No Record found"
    chg = _create(http, url)
    sn.change_api = False
    for method, path in (("GET", NEXT), ("POST", "/api/sn_chg_rest/change/{}/conflict")):
        answer = http.request(method, url + path.format(chg["sys_id"]))
        assert answer.status_code == 400
        assert answer.json()["error"]["message"] == (
            "Requested URI does not represent any resource"
        )
    sn.reset()
    assert sn.change_api is True


def test_change_tasks_and_close_task(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _create(http, url)
    task = http.post(
        f"{url}/api/now/table/change_task",
        json={
            "change_request": chg["sys_id"],
            "short_description": "Stop database",
            "change_task_type": "implementation",
            "assignment_group": "Database Administration",
            "planned_start_date": "2026-12-05 21:00:00",
            "planned_end_date": "2026-12-05 21:30:00",
        },
    ).json()["result"]
    assert (task["number"], task["state"]) == ("CTASK0010001", "1")
    closed = sn.close_task(task["number"], notes="db stopped")
    assert (closed["state"], closed["close_code"], closed["active"]) == ("3", "successful", "false")
    shown = http.get(
        f"{url}/api/now/table/change_task/{task['sys_id']}",
        params={"sysparm_display_value": "true"},
    ).json()["result"]
    assert shown["state"] == "Closed"


def test_helpers_record_insert_open_incident(sn: ServiceNowSandbox) -> None:
    chg = sn.insert("change_request", short_description="raw", state="-1")
    incident = sn.open_incident(
        caused_by=chg["number"], cmdb_ci="payments-api", short_description="errors after deploy"
    )
    assert incident["caused_by"] == chg["sys_id"]
    assert incident["cmdb_ci"] == sn.record("cmdb_ci", "payments-api")["sys_id"]
    assert sn.record("incident", incident["number"])["short_description"] == ("errors after deploy")
    with pytest.raises(KeyError):
        sn.record("incident", "INC0000000")
