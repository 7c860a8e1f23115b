"""The Change Management conflict API: blackout, maintenance window, CI already scheduled.

Response shapes as documented in "Change Management API" (ServiceNowDocs,
markdown/api-reference/rest-apis/change-management-api.md, releases xanadu and australia).
"""

from __future__ import annotations

from datetime import UTC, datetime
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
    """POST a check, then GET until it finished: the first GET reports it running."""
    started = http.post(url + CONFLICT.format(sys_id))
    assert started.status_code == 200
    worker = started.json()["result"]  # the sys_id of the checking process, a plain string
    assert isinstance(worker, str) and len(worker) == 32
    running = http.get(url + CONFLICT.format(sys_id)).json()["result"]
    assert (running["job_status"], running["conflicts"]) == ("1", [])
    response = http.get(url + CONFLICT.format(sys_id))
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["job_status"] == "2" and result["last_run"] == running["last_run"]
    return result


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


def test_every_run_is_reported_running_first_and_starts_later_than_the_last(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _change(sn, "2026-11-24 10:00:00", "2026-11-24 11:00:00")
    first = _check(http, url, chg["sys_id"])
    second = _check(http, url, chg["sys_id"])  # within the same second, most likely
    assert second["last_run"] > first["last_run"]
    again = http.get(url + CONFLICT.format(chg["sys_id"])).json()["result"]
    assert again == second  # the last completed run, as often as it is read


def test_runs_in_the_same_second_are_told_apart(seed: dict[str, Any]) -> None:
    frozen = datetime(2026, 11, 20, 9, tzinfo=UTC)
    sn = ServiceNowSandbox(seed, now=lambda: frozen)  # not started: no HTTP needed
    chg = sn.store.get(
        "change_request", _change(sn, "2026-11-24 10:00:00", "2026-11-24 11:00:00")["sys_id"]
    )
    assert chg is not None
    starts = []
    for _ in range(3):
        sn.conflicts.start(sn.store, chg)
        starts.append(sn.conflicts.result(sn.store, chg, "http://x")["result"]["last_run"])
    assert starts == ["2026-11-20 09:00:00", "2026-11-20 09:00:01", "2026-11-20 09:00:02"]


def test_a_change_without_dates_or_ci_cannot_be_checked(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    no_dates = sn.insert("change_request", short_description="x", cmdb_ci="payments-api")
    no_ci = sn.insert(
        "change_request", short_description="y", start_date="2026-11-24 10:00:00",
        end_date="2026-11-24 11:00:00",
    )  # fmt: skip
    for chg, why in ((no_dates, "planned start and end dates"), (no_ci, "configuration item")):
        refused = http.post(url + CONFLICT.format(chg["sys_id"]))
        assert refused.status_code == 400
        assert why in refused.json()["error"]["detail"]
        status = http.get(url + CONFLICT.format(chg["sys_id"])).json()["result"]["status"]
        assert status == "Not Run"


def test_cancel_a_running_check(http: requests.Session, url: str, sn: ServiceNowSandbox) -> None:
    chg = _change(sn, "2026-11-24 10:00:00", "2026-11-24 11:00:00")
    _check(http, url, chg["sys_id"])
    http.post(url + CONFLICT.format(chg["sys_id"]))
    assert http.delete(url + CONFLICT.format(chg["sys_id"])).status_code == 200
    after = http.get(url + CONFLICT.format(chg["sys_id"])).json()["result"]
    assert (after["status"], after["conflicts"]) == ("Not Run", [])
    assert sn.record("change_request", chg["number"])["conflict_status"] == "Not Run"
    assert http.get(f"{url}/api/now/table/conflict").headers["X-Total-Count"] == "0"


def test_cancel_answers_200_without_a_body(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    chg = _change(sn, "2026-11-24 10:00:00", "2026-11-24 11:00:00")
    cancelled = http.delete(url + CONFLICT.format(chg["sys_id"]))
    assert cancelled.status_code == 200 and cancelled.content == b""
