"""Batch API conformance over raw HTTP (`POST /api/now/v1/batch`).

Shapes from "Batch API", ServiceNowDocs `markdown/api-reference/rest-apis/batch-api.md`
(request `batch_request_id`, `rest_requests[{id, method, url, headers, body,
exclude_response_headers}]`; answer `batch_request_id`, `serviced_requests[{id, body,
status_code, status_text, headers, execution_time}]`, `unserviced_requests`); the answer of an
instance without it from gflewis/sndml3 issue #61 (400 "Requested URI does not represent any
resource").
"""

from __future__ import annotations

import base64
import json
from typing import Any

import requests

from itsm_bridge_sandbox.servicenow import ServiceNowSandbox

BATCH = "/api/now/v1/batch"
JSON = [
    {"name": "Content-Type", "value": "application/json"},
    {"name": "Accept", "value": "application/json"},
]
NO_RESOURCE = {
    "error": {"message": "Requested URI does not represent any resource", "detail": None},
    "status": "failure",
}


def b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def decoded(item: dict[str, Any]) -> Any:
    raw = base64.b64decode(item["body"], validate=True)
    return json.loads(raw) if raw else None


def post(id_: str, table: str, payload: Any, query: str = "", **extra: Any) -> dict[str, Any]:
    url = f"/api/now/table/{table}" + (f"?{query}" if query else "")
    return {"id": id_, "method": "POST", "url": url, "headers": JSON, "body": b64(payload),
            **extra}  # fmt: skip


def test_documented_shapes_for_get_post_and_delete(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    doomed = sn.insert("incident", short_description="to delete")["sys_id"]
    batch = {
        "batch_request_id": "1",
        "rest_requests": [
            {"id": "11", "method": "GET", "headers": JSON, "exclude_response_headers": True,
             "url": "/api/now/table/cmdb_ci_service?sysparm_fields=name&sysparm_limit=1"},
            post("12", "incident", {"short_description": "batched"},
                 "sysparm_fields=sys_id,short_description"),
            {"id": "13", "method": "DELETE", "url": f"/api/now/table/incident/{doomed}",
             "headers": JSON, "exclude_response_headers": "true"},
        ],
    }  # fmt: skip
    response = http.post(f"{url}{BATCH}", json=batch)

    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"batch_request_id", "serviced_requests", "unserviced_requests"}
    assert answer["batch_request_id"] == "1" and answer["unserviced_requests"] == []
    got, created, deleted = answer["serviced_requests"]
    assert [i["id"] for i in (got, created, deleted)] == ["11", "12", "13"]
    for item in (got, created, deleted):
        assert set(item) == {"id", "body", "status_code", "status_text", "headers",
                             "execution_time"}  # fmt: skip
        assert isinstance(item["execution_time"], int)
    assert (got["status_code"], got["status_text"], got["headers"]) == (200, "OK", [])
    assert decoded(got) == {"result": [{"name": "payments"}]}
    assert (created["status_code"], created["status_text"]) == (201, "Created")
    record = decoded(created)["result"]
    assert record["short_description"] == "batched" and set(record) == {
        "sys_id",
        "short_description",
    }
    headers = {h["name"]: h["value"] for h in created["headers"]}  # not excluded: present
    assert headers["Location"] == f"{url}/api/now/table/incident/{record['sys_id']}"
    assert headers["Content-Type"].startswith("application/json")
    assert sn.record("incident", record["sys_id"])["sys_created_by"] == "sandbox"
    assert (deleted["status_code"], deleted["body"], deleted["headers"]) == (204, "", [])
    assert not any(r["sys_id"] == doomed for r in sn.store.rows_of("incident"))


def test_one_logged_request_and_items_run_with_the_batch_credentials(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    sn.clear_log()
    sneaky = [*JSON, {"name": "Authorization", "value": "Basic bm9ib2R5Om5vcGU="}]
    batch = {"batch_request_id": "b", "rest_requests": [
        post("1", "incident", {"short_description": "x"}, headers=sneaky)]}  # fmt: skip
    answer = http.post(f"{url}{BATCH}", json=batch).json()
    assert answer["serviced_requests"][0]["status_code"] == 201
    assert [(r.method, r.path) for r in sn.requests] == [("POST", BATCH)]


def test_unauthenticated_batch_is_401(url: str) -> None:
    batch = {"batch_request_id": "b", "rest_requests": [post("1", "incident", {})]}
    response = requests.post(f"{url}{BATCH}", json=batch)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "User Not Authenticated"


def test_failed_items_are_serviced_with_their_own_status(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    batch = {
        "batch_request_id": 7,
        "rest_requests": [
            post("bad-table", "task_cj", {"task": "x"}),
            {"id": "bad-url", "method": "GET", "url": "/api/now/nothing/here", "headers": JSON},
            {"id": "absolute", "method": "GET", "headers": JSON,
             "url": f"{url}/api/now/table/incident"},
            {"id": "bad-body", "method": "POST", "url": "/api/now/table/incident",
             "headers": JSON, "body": "%%% not base64 %%%"},
            {"id": "missing", "method": "GET", "url": "/api/now/table/incident/nope"},
            post("fine", "incident", {"short_description": "still created"}),
        ],
    }  # fmt: skip
    answer = http.post(f"{url}{BATCH}", json=batch).json()
    assert answer["batch_request_id"] == "7"
    items = {i["id"]: i for i in answer["serviced_requests"]}
    assert items["bad-table"]["status_code"] == 400
    assert decoded(items["bad-table"]) == {
        "error": {"message": "Invalid table task_cj", "detail": None},
        "status": "failure",
    }
    assert items["bad-url"]["status_code"] == 400 and decoded(items["bad-url"]) == NO_RESOURCE
    assert items["absolute"]["status_code"] == 400
    assert items["bad-body"]["status_code"] == 400
    assert items["missing"]["status_code"] == 404
    assert decoded(items["missing"])["error"]["message"] == "No Record found"
    assert items["fine"]["status_code"] == 201
    assert items["bad-table"]["status_text"] == "Bad Request"


def test_items_past_a_processing_limit_are_unserviced_and_not_run(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    sn.batch_item_limit = 2
    items = [post(str(n), "incident", {"short_description": f"limit {n}"}) for n in range(4)]
    batch = {"batch_request_id": "lim", "rest_requests": items}
    answer = http.post(f"{url}{BATCH}", json=batch).json()
    assert [i["id"] for i in answer["serviced_requests"]] == ["0", "1"]
    assert answer["unserviced_requests"] == ["2", "3"]
    made = [r for r in sn.store.rows_of("incident") if r["short_description"].startswith("limit")]
    assert len(made) == 2

    sn.batch_item_limit = None
    sn.batch_timeout = -1.0  # the 30-second quota already spent
    answer = http.post(f"{url}{BATCH}", json=batch).json()
    assert answer["serviced_requests"] == [] and answer["unserviced_requests"] == list("0123")


def test_faults_apply_to_the_batch_and_to_its_items(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    batch = {"batch_request_id": "f", "rest_requests": [
        post("1", "task_ci", {"task": "t"}), post("2", "task_ci", {"task": "t"})]}  # fmt: skip
    sn.fail_next("POST", "/api/now/table/task_ci", 429)
    answer = http.post(f"{url}{BATCH}", json=batch).json()
    assert [i["status_code"] for i in answer["serviced_requests"]] == [429, 201]
    sn.fail_next("POST", BATCH, 503)
    assert http.post(f"{url}{BATCH}", json=batch).status_code == 503


def test_malformed_batches_are_400(http: requests.Session, url: str) -> None:
    for body in (b"{not json", b'{"batch_request_id": "x"}',
                 b'{"rest_requests": [{"id": "1", "method": "GET"}]}'):  # fmt: skip
        response = http.post(
            f"{url}{BATCH}", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["error"]["message"] == "Exception while reading request"


def test_only_v1_exists_and_only_post(http: requests.Session, url: str) -> None:
    batch = {"batch_request_id": "v", "rest_requests": []}
    for path in ("/api/now/batch", "/api/now/v2/batch"):
        response = http.post(f"{url}{path}", json=batch)
        assert (response.status_code, response.json()) == (400, NO_RESOURCE)
    assert http.get(f"{url}{BATCH}").status_code == 405
    empty = http.post(f"{url}{BATCH}", json=batch).json()
    assert empty == {"batch_request_id": "v", "serviced_requests": [], "unserviced_requests": []}


def test_batch_api_off_answers_like_an_instance_without_it(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    sn.batch_api = False
    batch = {"batch_request_id": "off", "rest_requests": [post("1", "incident", {})]}
    response = http.post(f"{url}{BATCH}", json=batch)
    assert (response.status_code, response.json()) == (400, NO_RESOURCE)
    assert not [r for r in sn.store.rows_of("incident") if r.get("sys_created_by") == "sandbox"]
    sn.reset()
    assert sn.batch_api is True
    assert http.post(f"{url}{BATCH}", json=batch).status_code == 200


def test_constructor_switch() -> None:
    off = ServiceNowSandbox(batch_api=False)
    assert off.batch_api is False
    off.batch_api = True
    off.reset()
    assert off.batch_api is False
