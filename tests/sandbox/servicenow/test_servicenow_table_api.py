"""Table API conformance over raw HTTP: status codes, headers, bodies, rendering options."""

from __future__ import annotations

import re

import requests

from itsm_bridge_sandbox.servicenow import ServiceNowSandbox

TABLE = "/api/now/table"


def test_unauthenticated_request_gets_servicenow_401(url: str) -> None:
    response = requests.get(f"{url}{TABLE}/incident")
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "message": "User Not Authenticated",
            "detail": "Required to provide Auth information",
        },
        "status": "failure",
    }
    wrong = requests.get(f"{url}{TABLE}/incident", auth=("sandbox", "nope"))
    assert wrong.status_code == 401


def test_create_returns_201_with_strings_number_and_sys_fields(
    http: requests.Session, url: str
) -> None:
    response = http.post(
        f"{url}{TABLE}/incident",
        json={"short_description": "disk full", "impact": 2, "active": True},
    )
    assert response.status_code == 201
    record = response.json()["result"]
    assert re.fullmatch(r"[0-9a-f]{32}", record["sys_id"])
    assert response.headers["Location"] == f"{url}{TABLE}/incident/{record['sys_id']}"
    assert record["number"] == "INC0010001"
    assert record["impact"] == "2" and record["active"] == "true"
    assert all(isinstance(v, str) for v in record.values() if not isinstance(v, dict))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", record["sys_created_on"])
    assert record["sys_created_by"] == "sandbox" and record["sys_mod_count"] == "0"
    assert record["sys_class_name"] == "incident"
    second = http.post(f"{url}{TABLE}/incident", json={}).json()["result"]
    assert second["number"] == "INC0010002"


def test_number_prefixes_per_table(http: requests.Session, url: str) -> None:
    expected = {
        "change_request": "CHG0030001",
        "change_task": "CTASK0010001",
        "problem": "PRB0040001",
        "dmn_demand": "DMND0001001",
    }
    for table, number in expected.items():
        assert http.post(f"{url}{TABLE}/{table}", json={}).json()["result"]["number"] == number


def test_unknown_fields_are_ignored(http: requests.Session, url: str) -> None:
    record = http.post(
        f"{url}{TABLE}/incident", json={"short_description": "x", "u_no_such_field": "y"}
    ).json()["result"]
    assert "u_no_such_field" not in record
    patched = http.patch(f"{url}{TABLE}/incident/{record['sys_id']}", json={"u_no_such_field": "y"})
    assert patched.status_code == 200 and "u_no_such_field" not in patched.json()["result"]


def test_get_patch_put_delete(http: requests.Session, url: str) -> None:
    sys_id = http.post(f"{url}{TABLE}/problem", json={"short_description": "a"}).json()["result"][
        "sys_id"
    ]
    item = f"{url}{TABLE}/problem/{sys_id}"
    assert http.get(item).json()["result"]["short_description"] == "a"
    patched = http.patch(item, json={"short_description": "b"}).json()["result"]
    assert patched["short_description"] == "b" and patched["sys_mod_count"] == "1"
    put = http.put(item, json={"description": "c"}).json()["result"]
    assert put["short_description"] == "b" and put["description"] == "c"
    deleted = http.delete(item)
    assert deleted.status_code == 204 and deleted.content == b""
    assert http.get(item).status_code == 404


def test_v2_path_is_served(http: requests.Session, url: str) -> None:
    response = http.get(f"{url}/api/now/v2/table/sys_user_group")
    assert response.status_code == 200
    assert {g["name"] for g in response.json()["result"]} >= {"Change Management", "Payments Team"}


def test_unknown_sys_id_is_404_with_real_body(http: requests.Session, url: str) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = http.request(method, f"{url}{TABLE}/incident/{'0' * 32}", json={})
        assert response.status_code == 404
        assert response.json() == {
            "error": {
                "message": "No Record found",
                "detail": "Record doesn't exist or ACL restricts the record retrieval",
            },
            "status": "failure",
        }


def test_unknown_table_is_400_invalid_table(http: requests.Session, url: str) -> None:
    response = http.get(f"{url}{TABLE}/incidentx")
    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": "Invalid table incidentx", "detail": None},
        "status": "failure",
    }


def test_invalid_json_is_400(http: requests.Session, url: str) -> None:
    response = http.post(
        f"{url}{TABLE}/incident", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Exception while reading request"
    assert response.json()["status"] == "failure"


def test_list_headers_total_count_and_link(http: requests.Session, url: str) -> None:
    for n in range(5):
        http.post(f"{url}{TABLE}/incident", json={"short_description": f"i{n}"})
    response = http.get(
        f"{url}{TABLE}/incident",
        params={"sysparm_limit": "2", "sysparm_offset": "2", "sysparm_query": "ORDERBYnumber"},
    )
    assert response.headers["X-Total-Count"] == "5"
    assert [r["number"] for r in response.json()["result"]] == ["INC0010003", "INC0010004"]
    links = dict(
        (rel, target)
        for target, rel in re.findall(r'<([^>]+)>;rel="(\w+)"', response.headers["Link"])
    )
    assert list(links) == ["first", "prev", "next", "last"]
    assert response.headers["Link"].count(",<") == 3  # comma separated, no spaces
    assert links["first"].endswith("sysparm_limit=2&sysparm_offset=0")
    assert links["prev"].endswith("sysparm_offset=0")
    assert links["next"].endswith("sysparm_offset=4")
    assert links["last"].endswith("sysparm_offset=4")
    assert "sysparm_query=ORDERBYnumber" in links["next"]
    assert links["next"].startswith(f"{url}{TABLE}/incident?")
    last = http.get(links["last"])
    assert [r["number"] for r in last.json()["result"]] == ["INC0010005"]
    assert 'rel="next"' not in last.headers["Link"]
    first = http.get(links["first"])
    # Real instances announce a "prev" page even on the first one, with a negative offset.
    assert re.search(r'sysparm_offset=-2>;rel="prev"', first.headers["Link"])
    quiet = http.get(
        f"{url}{TABLE}/incident",
        params={"sysparm_limit": "2", "sysparm_suppress_pagination_header": "true"},
    )
    assert "Link" not in quiet.headers and quiet.headers["X-Total-Count"] == "5"


def test_the_limit_applies_before_acls_so_pages_run_short(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    rows = [sn.insert("incident", short_description=f"i{n}") for n in range(5)]
    sn.store.hide(rows[0]["sys_id"])
    sn.store.hide(rows[1]["sys_id"])
    params = {"sysparm_limit": "2", "sysparm_query": "ORDERBYnumber"}
    first = http.get(f"{url}{TABLE}/incident", params=params)
    assert first.json()["result"] == []  # both rows of the page are hidden
    assert first.headers["X-Total-Count"] == "5"  # counted before the ACLs
    assert 'sysparm_offset=2>;rel="next"' in first.headers["Link"]
    second = http.get(f"{url}{TABLE}/incident", params={**params, "sysparm_offset": "2"})
    assert [r["number"] for r in second.json()["result"]] == [rows[2]["number"], rows[3]["number"]]
    sn.reset()
    assert not sn.store.hidden


def test_the_choice_lists_are_served_from_sys_choice(http: requests.Session, url: str) -> None:
    rows = http.get(
        f"{url}{TABLE}/sys_choice",
        params={
            "sysparm_query": "name=dmn_demand^element=state^language=en^inactive=false"
            "^ORDERBYsequence",
            "sysparm_fields": "value,label",
        },
    ).json()["result"]
    assert {"value": "8", "label": "Approved"} in rows
    close_codes = http.get(
        f"{url}{TABLE}/sys_choice",
        params={"sysparm_query": "name=change_task^element=close_code", "sysparm_fields": "value"},
    ).json()["result"]
    assert [r["value"] for r in close_codes] == ["successful", "successful_issues", "unsuccessful"]


def test_a_seeds_choice_list_replaces_the_base_one() -> None:
    seed = {"records": {"sys_choice": [
        {"name": "dmn_demand", "element": "state", "value": "1", "label": "Draft"},
        {"name": "dmn_demand", "element": "state", "value": "11", "label": "Approved"},
    ]}}  # fmt: skip
    sandbox = ServiceNowSandbox(seed)  # not started: the store is enough
    rows = sandbox.store.rows_of("sys_choice")
    demand = sorted((r["value"], r["label"]) for r in rows if r["name"] == "dmn_demand")
    assert demand == [("1", "Draft"), ("11", "Approved")]
    assert any(r["name"] == "problem" and r["label"] == "Fix in Progress" for r in rows)


def test_sysparm_fields_limits_the_fields(http: requests.Session, url: str) -> None:
    response = http.get(
        f"{url}{TABLE}/cmdb_ci",
        params={"sysparm_fields": "name,sys_class_name", "sysparm_query": "name=payments-api"},
    )
    assert response.json()["result"] == [{"name": "payments-api", "sys_class_name": "cmdb_ci_appl"}]


def test_parent_table_query_returns_child_rows(http: requests.Session, url: str) -> None:
    rows = http.get(
        f"{url}{TABLE}/cmdb_ci", params={"sysparm_fields": "name,sys_class_name"}
    ).json()["result"]
    classes = {r["name"]: r["sys_class_name"] for r in rows}
    assert classes["payments"] == "cmdb_ci_service"
    assert classes["payments-db"] == "cmdb_ci_db_instance"
    assert classes["pay-app-01"] == "cmdb_ci_linux_server"
    only_appl = http.get(f"{url}{TABLE}/cmdb_ci_appl", params={"sysparm_fields": "name"}).json()[
        "result"
    ]
    assert {r["name"] for r in only_appl} == {"payments-api", "payments-db"}


def test_reference_rendering(http: requests.Session, url: str, sn: ServiceNowSandbox) -> None:
    group = sn.record("sys_user_group", "Change Management")
    created = http.post(
        f"{url}{TABLE}/change_request",
        json={
            "assignment_group": "Change Management",  # by display value
            "cmdb_ci": sn.record("cmdb_ci", "payments-api")["sys_id"],
        },
    ).json()["result"]
    assert created["assignment_group"] == {
        "link": f"{url}{TABLE}/sys_user_group/{group['sys_id']}",
        "value": group["sys_id"],
    }
    assert created["parent"] == ""  # an empty reference is an empty string
    item = f"{url}{TABLE}/change_request/{created['sys_id']}"
    plain = http.get(item, params={"sysparm_exclude_reference_link": "true"}).json()["result"]
    assert plain["assignment_group"] == group["sys_id"]
    shown = http.get(
        item, params={"sysparm_display_value": "true", "sysparm_exclude_reference_link": "true"}
    ).json()["result"]
    assert shown["assignment_group"] == "Change Management"
    assert shown["state"] == "New" and shown["cmdb_ci"] == "payments-api"
    both = http.get(item, params={"sysparm_display_value": "all"}).json()["result"]
    assert both["state"] == {"display_value": "New", "value": "-5"}
    assert both["assignment_group"]["display_value"] == "Change Management"
    assert both["assignment_group"]["value"] == group["sys_id"]
    assert both["assignment_group"]["link"].endswith(f"/sys_user_group/{group['sys_id']}")


def test_dot_walked_query_and_field(http: requests.Session, url: str) -> None:
    chg = http.post(f"{url}{TABLE}/change_request", json={"short_description": "c"}).json()[
        "result"
    ]
    http.post(f"{url}{TABLE}/change_task", json={"change_request": chg["sys_id"]})
    http.post(f"{url}{TABLE}/change_task", json={})
    rows = http.get(
        f"{url}{TABLE}/change_task",
        params={
            "sysparm_query": f"change_request.number={chg['number']}",
            "sysparm_fields": "number,change_request.number",
        },
    ).json()["result"]
    assert rows == [{"number": "CTASK0010001", "change_request.number": chg["number"]}]


def test_journal_fields_go_to_sys_journal_field(http: requests.Session, url: str) -> None:
    chg = http.post(
        f"{url}{TABLE}/change_request", json={"work_notes": "created by bridge"}
    ).json()["result"]
    assert chg["work_notes"] == ""
    http.patch(
        f"{url}{TABLE}/change_request/{chg['sys_id']}",
        json={"comments": "visible note", "work_notes": "second"},
    )
    assert (
        http.get(f"{url}{TABLE}/change_request/{chg['sys_id']}").json()["result"]["comments"] == ""
    )
    entries = http.get(
        f"{url}{TABLE}/sys_journal_field",
        params={"sysparm_query": f"element_id={chg['sys_id']}^ORDERBYsys_created_on"},
    ).json()["result"]
    assert [(e["element"], e["value"]) for e in entries] == [
        ("work_notes", "created by bridge"),
        ("comments", "visible note"),
        ("work_notes", "second"),
    ]
    assert {e["name"] for e in entries} == {"change_request"}
    assert all(e["sys_created_by"] == "sandbox" and e["sys_created_on"] for e in entries)
