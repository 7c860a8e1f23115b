"""`ServiceNowClient.create_many` over the Batch API, and `link_impact` on top of it.

Unit tests mock HTTP with `responses` in the documented shapes ("Batch API", ServiceNowDocs
`markdown/api-reference/rest-apis/batch-api.md`): request `{"batch_request_id",
"rest_requests": [{"id", "method", "url" (relative), "headers": [{"name", "value"}], "body"
(Base64), "exclude_response_headers"}]}`, answer `{"batch_request_id", "serviced_requests":
[{"id", "body" (Base64), "status_code", "status_text", "headers", "execution_time"}],
"unserviced_requests": [<ids>]}`. An instance without the Batch API answers 400 "Requested
URI does not represent any resource" (gflewis/sndml3 issue #61). Integration tests run
against the ServiceNow sandbox.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from pydantic import SecretStr

from itsm_bridge.http import HTTPNeedsHuman, HTTPRequestError, HTTPTransientError
from itsm_bridge.models import ConfigurationItem, Impact
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin
from itsm_bridge_servicenow.client import ServiceNowClient
from itsm_bridge_servicenow.cmdb import link_impact

BASE = "https://acme.service-now.com"
BATCH = f"{BASE}/api/now/v1/batch"
TASK_CI = f"{BASE}/api/now/table/task_ci"
SECRET = "hunter2-Sup3rSecret"
NO_RESOURCE = {
    "error": {"message": "Requested URI does not represent any resource", "detail": None},
    "status": "failure",
}


def sn_error(message: str, detail: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


def b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def item(id_: str, status: int, body: Any, text: str = "") -> dict[str, Any]:
    """A serviced item as the instance answers it (headers excluded)."""
    return {"id": id_, "body": b64(body), "status_code": status, "status_text": text,
            "headers": [], "execution_time": 3}  # fmt: skip


def sent(call: responses.Call) -> dict[str, Any]:
    return dict(json.loads(call.request.body or b""))


class FakeBatch:
    """Answers each batch by creating every item (sys_id = "new-<n>"), unless `answer` says
    otherwise for an item index (a status and a body)."""

    def __init__(self, answer: dict[int, tuple[int, Any]] | None = None) -> None:
        self.answer = answer or {}
        self.created = 0
        self.batches: list[dict[str, Any]] = []

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        batch = json.loads(request.body or b"")
        self.batches.append(batch)
        items = []
        for entry in batch["rest_requests"]:
            status, body = self.answer.get(int(entry["id"]), (201, None))
            if body is None:
                payload = json.loads(base64.b64decode(entry["body"]))
                body = {"result": {"sys_id": f"new-{self.created}", **payload}}
                self.created += 1
            items.append(item(entry["id"], status, body))
        answer = {"batch_request_id": batch["batch_request_id"], "serviced_requests": items,
                  "unserviced_requests": []}  # fmt: skip
        return 200, {"Content-Type": "application/json"}, json.dumps(answer)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> ServiceNowClient:
    return ServiceNowClient(BASE, "svc_bridge", SecretStr(SECRET), attempts=3, batch_size=100,
                            sleep=sleeps.append)  # fmt: skip


# -- unit ----------------------------------------------------------------------------------
@responses.activate
def test_request_shape_relative_urls_and_base64_bodies(client: ServiceNowClient) -> None:
    fake = FakeBatch()
    responses.add_callback(responses.POST, BATCH, callback=fake)
    payloads = [{"task": "chg", "ci_item": "a"}, {"task": "chg", "ci_item": "b"}]

    rows = client.create_many("task_ci", payloads, ("sys_id",))

    assert len(responses.calls) == 1
    call = responses.calls[0]
    assert call.request.url == BATCH
    assert call.request.headers["Content-Type"] == "application/json"
    body = sent(call)
    assert isinstance(body["batch_request_id"], str) and body["batch_request_id"]
    assert [r["id"] for r in body["rest_requests"]] == ["0", "1"]
    for request, payload in zip(body["rest_requests"], payloads, strict=True):
        assert request["method"] == "POST"
        parts = urlsplit(request["url"])
        assert not parts.scheme and not parts.netloc  # relative, as the Batch API wants
        assert parts.path == "/api/now/table/task_ci"
        assert parse_qs(parts.query) == {
            "sysparm_exclude_reference_link": ["true"],
            "sysparm_fields": ["sys_id"],
        }
        assert {"name": "Content-Type", "value": "application/json"} in request["headers"]
        assert {"name": "Accept", "value": "application/json"} in request["headers"]
        assert json.loads(base64.b64decode(request["body"], validate=True)) == payload
        assert request["exclude_response_headers"] is True
    assert rows == [{"sys_id": "new-0", **payloads[0]}, {"sys_id": "new-1", **payloads[1]}]
    assert client.batch_api is True


@responses.activate
def test_results_follow_the_payload_order_not_the_answer_order(client: ServiceNowClient) -> None:
    def backwards(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        batch = json.loads(request.body or b"")
        items = [item(r["id"], 201, {"result": {"sys_id": f"s{r['id']}"}}, "Created")
                 for r in reversed(batch["rest_requests"])]  # fmt: skip
        answer = {"batch_request_id": batch["batch_request_id"], "serviced_requests": items,
                  "unserviced_requests": []}  # fmt: skip
        return 200, {}, json.dumps(answer)

    responses.add_callback(responses.POST, BATCH, callback=backwards)
    rows = client.create_many("task_ci", [{"ci_item": str(n)} for n in range(3)])
    assert rows == [{"sys_id": "s0"}, {"sys_id": "s1"}, {"sys_id": "s2"}]


@responses.activate
def test_batches_are_bounded(sleeps: list[float]) -> None:
    client = ServiceNowClient(BASE, "svc", SecretStr("pw"), batch_size=100, sleep=sleeps.append)
    fake = FakeBatch()
    responses.add_callback(responses.POST, BATCH, callback=fake)
    rows = client.create_many("task_ci", [{"ci_item": str(n)} for n in range(250)], ("sys_id",))
    assert [len(b["rest_requests"]) for b in fake.batches] == [100, 100, 50]
    assert [r["ci_item"] for r in rows] == [str(n) for n in range(250)]
    assert len({b["batch_request_id"] for b in fake.batches}) == 3


@responses.activate
def test_nothing_to_create_sends_nothing(client: ServiceNowClient) -> None:
    assert client.create_many("task_ci", []) == []
    assert len(responses.calls) == 0


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (400, sn_error("Invalid table task_cj"), HTTPRequestError,
         r"POST task_ci \(batch item 1\): HTTP 400: Invalid table task_cj \(1 of 2 items failed, "
         r"1 created\)"),
        (403, sn_error("Operation Failed", "aborted by Business Rule 'No CIs'"), HTTPNeedsHuman,
         "aborted by Business Rule 'No CIs'.*refused by a business rule"),
        (403, sn_error("User Not Authorized", "ACL Exception Insert Failed"), HTTPNeedsHuman,
         "ACL Exception Insert Failed"),
        (429, sn_error("Rate limit exceeded"), HTTPTransientError, "HTTP 429: Rate limit"),
        (503, sn_error("Service Unavailable"), HTTPTransientError, "HTTP 503"),
    ],
)  # fmt: skip
@responses.activate
def test_a_failed_item_raises_servicenow_s_message(
    client: ServiceNowClient,
    sleeps: list[float],
    status: int,
    body: dict[str, Any],
    error: type[Exception],
    text: str,
) -> None:
    fake = FakeBatch({1: (status, body)})
    responses.add_callback(responses.POST, BATCH, callback=fake)
    with pytest.raises(error, match=text) as raised:
        client.create_many("task_ci", [{"ci_item": "a"}, {"ci_item": "b"}])
    assert getattr(raised.value, "status", None) == status
    assert len(responses.calls) == 1 and sleeps == []  # a batch of creates is never retried


@responses.activate
def test_a_refusal_outranks_a_transient_item(client: ServiceNowClient) -> None:
    fake = FakeBatch({0: (503, sn_error("Service Unavailable")),
                      2: (400, sn_error("Invalid reference"))})  # fmt: skip
    responses.add_callback(responses.POST, BATCH, callback=fake)
    with pytest.raises(HTTPRequestError, match=r"Invalid reference \(2 of 3 items failed"):
        client.create_many("task_ci", [{"ci_item": str(n)} for n in range(3)])


@responses.activate
def test_a_failed_batch_stops_the_later_ones(client: ServiceNowClient) -> None:
    fake = FakeBatch({5: (400, sn_error("Invalid reference"))})
    responses.add_callback(responses.POST, BATCH, callback=fake)
    with pytest.raises(HTTPRequestError):
        client.create_many("task_ci", [{"ci_item": str(n)} for n in range(150)])
    assert len(fake.batches) == 1


@responses.activate
def test_unserviced_items_are_transient(client: ServiceNowClient, sleeps: list[float]) -> None:
    answer = {
        "batch_request_id": "x",
        "serviced_requests": [item("0", 201, {"result": {"sys_id": "s0"}}, "Created")],
        "unserviced_requests": ["1", "2"],
    }
    responses.post(BATCH, json=answer)
    with pytest.raises(HTTPTransientError, match=r"2 items not serviced .*\(2 of 3 items failed, "
                       r"1 created\)"):  # fmt: skip
        client.create_many("task_ci", [{"ci_item": str(n)} for n in range(3)])
    assert len(responses.calls) == 1 and sleeps == []


@responses.activate
def test_an_item_missing_from_the_answer_counts_as_unserviced(client: ServiceNowClient) -> None:
    answer = {"batch_request_id": "x", "serviced_requests": [], "unserviced_requests": []}
    responses.post(BATCH, json=answer)
    with pytest.raises(HTTPTransientError, match="1 items not serviced"):
        client.create_many("task_ci", [{"ci_item": "a"}])


@responses.activate
def test_a_created_item_whose_body_is_not_json_is_an_error(client: ServiceNowClient) -> None:
    broken = {"id": "0", "body": base64.b64encode(b"<html>").decode(), "status_code": 201}
    responses.post(BATCH, json={"batch_request_id": "x", "serviced_requests": [broken],
                                "unserviced_requests": []})  # fmt: skip
    with pytest.raises(HTTPRequestError, match=r"batch item 0.*not JSON"):
        client.create_many("task_ci", [{"ci_item": "a"}])


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, sn_error("Internal Server Error"), HTTPTransientError),
        (429, sn_error("Rate limit exceeded"), HTTPTransientError),
        (401, sn_error("User Not Authenticated", "Required to provide Auth information"),
         HTTPNeedsHuman),
        (400, sn_error("Exception while reading request", "The payload is not valid JSON."),
         HTTPRequestError),
    ],
)  # fmt: skip
@responses.activate
def test_a_failed_batch_request_is_not_retried_and_not_a_fallback(
    client: ServiceNowClient,
    sleeps: list[float],
    status: int,
    body: dict[str, Any],
    error: type[Exception],
) -> None:
    responses.post(BATCH, status=status, json=body, headers={"Retry-After": "1"})
    with pytest.raises(error, match=rf"POST task_ci \(batch of 1\): HTTP {status}"):
        client.create_many("task_ci", [{"ci_item": "a"}])
    assert len(responses.calls) == 1 and sleeps == []
    assert client.batch_api is None  # still unknown: no fallback on these


@responses.activate
def test_network_error_is_transient_and_not_retried(
    client: ServiceNowClient, sleeps: list[float]
) -> None:
    responses.post(BATCH, body=requests.ConnectionError(f"reset; password {SECRET}"))
    with pytest.raises(HTTPTransientError, match="ConnectionError") as raised:
        client.create_many("task_ci", [{"ci_item": "a"}])
    assert SECRET not in str(raised.value)
    assert len(responses.calls) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("status", "body"),
    [(400, NO_RESOURCE), (404, sn_error("Not Found")), (404, "<html>Not Found</html>")],
)
@responses.activate
def test_without_a_batch_api_falls_back_to_single_posts_for_good(
    client: ServiceNowClient, status: int, body: Any
) -> None:
    if isinstance(body, dict):
        responses.post(BATCH, status=status, json=body)
    else:
        responses.post(BATCH, status=status, body=body)
    for n in range(3):
        responses.post(TASK_CI, status=201, json={"result": {"sys_id": f"s{n}"}})

    rows = client.create_many("task_ci", [{"ci_item": "a"}, {"ci_item": "b"}], ("sys_id",))
    assert rows == [{"sys_id": "s0"}, {"sys_id": "s1"}]
    assert client.batch_api is False
    again = client.create_many("task_ci", [{"ci_item": "c"}], ("sys_id",))

    assert again == [{"sys_id": "s2"}]
    urls = [urlsplit(str(c.request.url)).path for c in responses.calls]
    assert urls == ["/api/now/v1/batch"] + ["/api/now/table/task_ci"] * 3  # asked only once
    assert json.loads(responses.calls[1].request.body or b"") == {"ci_item": "a"}
    assert parse_qs(urlsplit(str(responses.calls[1].request.url)).query) == {
        "sysparm_exclude_reference_link": ["true"],
        "sysparm_fields": ["sys_id"],
    }


@responses.activate
def test_fallback_posts_are_not_retried_either(
    client: ServiceNowClient, sleeps: list[float]
) -> None:
    responses.post(BATCH, status=400, json=NO_RESOURCE)
    responses.post(TASK_CI, status=503, json=sn_error("Service Unavailable"))
    with pytest.raises(HTTPTransientError, match="POST task_ci: HTTP 503"):
        client.create_many("task_ci", [{"ci_item": "a"}, {"ci_item": "b"}])
    assert len(responses.calls) == 2 and sleeps == []


# -- integration: the sandbox over HTTP ---------------------------------------------------
def many_cis(snow: ServiceNowSandbox, count: int) -> Impact:
    """`count` CIs in the sandbox CMDB (one of them the payments service) as an Impact."""
    cis = [snow.insert("cmdb_ci_linux_server", name=f"batch-host-{n}") for n in range(count - 1)]
    service = snow.record("cmdb_ci_service", "payments")
    return Impact(
        cis=[ConfigurationItem(id=c["sys_id"], name=c["name"], system="servicenow") for c in cis],
        services=[ConfigurationItem(id=service["sys_id"], name="payments", system="servicenow")],
    )


def linked(snow: ServiceNowSandbox, change: str) -> tuple[list[str], list[str]]:
    cis = [r["ci_item"] for r in snow.store.rows_of("task_ci") if r["task"] == change]
    services = [
        r["cmdb_ci_service"] for r in snow.store.rows_of("task_cmdb_ci_service")
        if r["task"] == change
    ]  # fmt: skip
    return cis, services


@pytest.mark.integration
def test_link_impact_of_200_cis_takes_a_handful_of_requests(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin
) -> None:
    impact = many_cis(snow, 200)
    change = snow.insert("change_request", short_description="payments 1.4.0")["sys_id"]
    snow.clear_log()

    link_impact(plugin.client, change, impact)

    links = snow.requests
    assert len(links) <= 5, [(r.method, r.path) for r in links]
    assert [r.path for r in snow.requests_to("POST")] == ["/api/now/v1/batch"] * 3  # 100+99, 1
    cis, services = linked(snow, change)
    assert sorted(cis) == sorted(ci.id for ci in impact.cis)
    assert services == [impact.services[0].id]
    row = next(r for r in snow.store.rows_of("task_cmdb_ci_service") if r["task"] == change)
    assert row["manually_added"] == "true"

    snow.clear_log()
    link_impact(plugin.client, change, impact)  # a re-run only reads (199 rows: two pages)
    assert not snow.requests_to("POST") and len(snow.requests) == 3


@pytest.mark.integration
def test_fallback_with_the_batch_api_off(snow: ServiceNowSandbox, plugin: ServiceNowPlugin) -> None:
    snow.batch_api = False
    impact = many_cis(snow, 12)
    change = snow.insert("change_request", short_description="payments 1.4.0")["sys_id"]
    snow.clear_log()

    link_impact(plugin.client, change, impact)

    posts = [r.path for r in snow.requests_to("POST")]
    assert posts == ["/api/now/v1/batch"] + ["/api/now/table/task_ci"] * 11 + [
        "/api/now/table/task_cmdb_ci_service"
    ]
    assert snow.requests_to("POST", "/api/now/v1/batch")[0].status == 400
    assert plugin.client.batch_api is False
    cis, services = linked(snow, change)
    assert sorted(cis) == sorted(ci.id for ci in impact.cis) and len(services) == 1


@pytest.mark.integration
def test_a_lost_batch_answer_then_a_rerun_writes_no_duplicates(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin
) -> None:
    impact = many_cis(snow, 30)
    change = snow.insert("change_request", short_description="payments 1.4.0")["sys_id"]
    snow.fail_next("POST", "/api/now/v1/batch", 502, fail_after_write=True)
    with pytest.raises(HTTPTransientError, match="HTTP 502"):
        link_impact(plugin.client, change, impact)
    assert len(snow.requests_to("POST", "/api/now/v1/batch")) == 1  # not retried

    link_impact(plugin.client, change, impact)  # what the step's retry does

    cis, services = linked(snow, change)
    assert sorted(cis) == sorted(ci.id for ci in impact.cis)  # each CI once
    assert len(services) == 1


@pytest.mark.integration
def test_a_failed_item_in_the_sandbox_then_a_rerun_completes(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin
) -> None:
    impact = many_cis(snow, 10)
    change = snow.insert("change_request", short_description="payments 1.4.0")["sys_id"]
    snow.fail_next("POST", "/api/now/table/task_ci", 429)  # the first item of the batch
    with pytest.raises(HTTPTransientError, match=r"batch item 0\): HTTP 429.*8 created"):
        link_impact(plugin.client, change, impact)
    assert len(linked(snow, change)[0]) == 8

    link_impact(plugin.client, change, impact)

    cis, _ = linked(snow, change)
    assert sorted(cis) == sorted(ci.id for ci in impact.cis)


@pytest.mark.integration
def test_unserviced_items_in_the_sandbox_are_transient(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin
) -> None:
    snow.batch_item_limit = 4
    impact = many_cis(snow, 10)
    change = snow.insert("change_request", short_description="payments 1.4.0")["sys_id"]
    with pytest.raises(HTTPTransientError, match="5 items not serviced"):
        link_impact(plugin.client, change, impact)
    assert len(linked(snow, change)[0]) == 4
