"""The Change Management conflict API: blackout, maintenance window, CI already scheduled.

Response shapes as documented in "Change Management API" (ServiceNowDocs,
markdown/api-reference/rest-apis/change-management-api.md, releases xanadu and australia).
"""

from __future__ import annotations

from typing import Any

import requests

from itsm_bridge_sandbox.servicenow import ServiceNowSandbox

CONFLICT = "/api/sn_chg_rest/change/{}/conflict"


def _change(sn: ServiceNowSandbox, start: str, end: str, **fields: Any) -> dict[str, str]:
    return sn.insert(
        "change_request",
        short_description="deploy payments",
        cmdb_ci=fields.pop("cmdb_ci", "payments-api"),
        start_date=start,
        end_date=end,
        **fields,
    )


def _check(http: requests.Session, url: str, sys_id: str) -> dict[str, Any]:
    started = http.post(url + CONFLICT.format(sys_id))
    assert started.status_code == 200
    worker = started.json()["result"]  # the sys_id of the checking process, a plain string
    assert isinstance(worker, str) and len(worker) == 32
    response = http.get(url + CONFLICT.format(sys_id))
    assert response.status_code == 200
    return response.json()["result"]


def _types(result: dict[str, Any]) -> list[str]:
    return sorted(c["type"]["value"] for c in result["conflicts"])


def test_inside_maintenance_window_no_conflict(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    # Saturday 2026-11-21 22:30-23:30 Europe/Berlin (CET, UTC+1) = 21:30-22:30 UTC.
    chg = _change(sn, "2026-11-21 21:30:00", "2026-11-21 22:30:00")
    result = _check(http, url, chg["sys_id"])
    assert result["conflicts"] == []
    assert result["status"] == "Conflict"  # documented: "Conflict" even when none was found
    assert result["job_status"] == "2" and result["record_count"] == "1"
    record = sn.record("change_request", chg["number"])
    assert record["conflict_status"] == "No Conflict"
    assert result["last_run"] == record["conflict_last_run"] != ""


def test_outside_maintenance_window(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _change(sn, "2026-11-24 10:00:00", "2026-11-24 11:00:00")  # a Tuesday
    result = _check(http, url, chg["sys_id"])
    assert _types(result) == ["not_in_maintenance_window"]
    conflict = result["conflicts"][0]
    assert conflict["type"] == {
        "display_value": "Not In Maintenance Window",
        "value": "not_in_maintenance_window",
    }
    assert conflict["configuration_item"]["display_value"] == "payments-api"
    assert conflict["schedule"]["display_value"] == "Payments weekly maintenance"
    assert conflict["change"] == {"display_value": chg["number"], "value": chg["sys_id"]}
    assert set(conflict) >= {"sys_id", "conflicting_change", "last_checked"}
    assert sn.record("change_request", chg["number"])["conflict_status"] == "Conflict"


def test_window_overrunning_the_span_is_a_conflict(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _change(sn, "2026-11-21 21:30:00", "2026-11-22 03:00:00")  # ends after 02:00 CET
    assert _types(_check(http, url, chg["sys_id"])) == ["not_in_maintenance_window"]


def test_blackout_through_the_business_service(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    # Saturday 2026-12-19 inside the maintenance window but inside the year-end freeze.
    chg = _change(sn, "2026-12-19 21:30:00", "2026-12-19 22:30:00")
    result = _check(http, url, chg["sys_id"])
    assert _types(result) == ["blackout"]
    conflict = result["conflicts"][0]
    assert conflict["schedule"]["display_value"] == "Year-end freeze"
    assert conflict["configuration_item"]["display_value"] == "payments-api"
    assert conflict["related_configuration_item"]["display_value"] == "payments"


def test_ci_already_scheduled_and_table_rows(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    first = _change(sn, "2026-11-21 21:30:00", "2026-11-21 22:30:00", state="-2")
    second = _change(sn, "2026-11-21 22:00:00", "2026-11-21 22:45:00")
    result = _check(http, url, second["sys_id"])
    assert _types(result) == ["ci_already_scheduled"]
    assert result["conflicts"][0]["conflicting_change"]["value"] == first["sys_id"]
    assert result["conflicts"][0]["type"]["display_value"] == "CI Already Scheduled"
    rows = http.get(
        f"{url}/api/now/table/conflict", params={"sysparm_query": f"change={second['sys_id']}"}
    ).json()["result"]
    assert len(rows) == 1
    _check(http, url, second["sys_id"])  # a re-run replaces, not appends
    assert http.get(f"{url}/api/now/table/conflict").headers["X-Total-Count"] == "1"


def test_before_any_check_and_unknown_change(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _change(sn, "2026-11-24 10:00:00", "2026-11-24 11:00:00")
    before = http.get(url + CONFLICT.format(chg["sys_id"])).json()["result"]
    assert before == {
        "status": "Not Run",
        "last_run": "",
        "record_count": "0",
        "job_status": "",
        "conflicts": [],
    }
    for method in ("GET", "POST", "DELETE"):
        missing = http.request(method, url + CONFLICT.format("f" * 32))
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "No Record found"


def test_cancel_answers_200_without_a_body(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _change(sn, "2026-11-24 10:00:00", "2026-11-24 11:00:00")
    cancelled = http.delete(url + CONFLICT.format(chg["sys_id"]))
    assert cancelled.status_code == 200 and cancelled.content == b""
