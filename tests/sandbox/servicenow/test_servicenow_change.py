"""The default change model over the Table API, and the CAB helpers."""

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
    assert _patch(http, url, sid, state="-4").json()["result"]["state"] == "-4"
    authorize = _patch(http, url, sid, state="-3").json()["result"]
    assert authorize["approval"] == "requested"
    refused = _patch(http, url, sid, state="-2")
    assert refused.status_code == 403  # not approved yet
    assert "approved" in refused.json()["error"]["detail"]
    approved = sn.approve_change(chg["number"], comment="CAB: go")
    assert (approved["approval"], approved["state"]) == ("approved", "-2")
    assert _patch(http, url, sid, state="-2").status_code == 200  # same state: no-op
    assert _patch(http, url, sid, state="-1").json()["result"]["state"] == "-1"
    assert _patch(http, url, sid, state="0").json()["result"]["state"] == "0"
    missing = _patch(http, url, sid, state="3")
    assert missing.status_code == 403
    assert missing.json()["error"]["message"] == "Operation Failed"
    assert "Close code, Close notes" in missing.json()["error"]["detail"]
    closed = _patch(
        http, url, sid, state="3", close_code="successful", close_notes="deployed 4.3"
    ).json()["result"]
    assert (closed["state"], closed["active"]) == ("3", "false")
    assert closed["closed_at"]
    assert [e["value"] for e in sn.journal(chg["number"], "comments")] == ["CAB: go"]


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


def test_standard_change_is_preapproved_and_goes_straight_to_scheduled(
    http: requests.Session, url: str
) -> None:
    chg = _create(http, url, type="standard")
    assert chg["approval"] == "approved"
    assert _patch(http, url, chg["sys_id"], state="-4").status_code == 403
    assert _patch(http, url, chg["sys_id"], state="-2").json()["result"]["state"] == "-2"


def test_emergency_change_skips_assess(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _create(http, url, type="emergency")
    assert _patch(http, url, chg["sys_id"], state="-4").status_code == 403
    assert _patch(http, url, chg["sys_id"], state="-3").json()["result"]["approval"] == (
        "requested"
    )
    sn.approve_change(chg["sys_id"])
    for state in ("-1", "0"):
        assert _patch(http, url, chg["sys_id"], state=state).status_code == 200


def test_reject_sends_the_change_back_to_new(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _create(http, url)
    _patch(http, url, chg["sys_id"], state="-4")
    _patch(http, url, chg["sys_id"], state="-3")
    rejected = sn.reject_change(chg["number"], "too risky before year end")
    assert (rejected["state"], rejected["approval"]) == ("-5", "rejected")
    journal = http.get(
        f"{url}/api/now/table/sys_journal_field",
        params={"sysparm_query": f"element_id={chg['sys_id']}^element=comments"},
    ).json()["result"]
    assert [j["value"] for j in journal] == ["too risky before year end"]
    again = _patch(http, url, chg["sys_id"], state="-4").json()["result"]
    assert again["approval"] == "not requested"


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
