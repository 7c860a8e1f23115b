"""Raw HTTP checks of the Jira sandbox: status codes, error bodies, headers, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from typing import Any

import pytest
import requests

from itsm_bridge_sandbox.jira import JiraSandbox
from itsm_bridge_sandbox.webapp import App, Request, Response, RunningServer

pytestmark = pytest.mark.integration
AUTH = ("sandbox", "sandbox")


def get(sb: JiraSandbox, path: str, **kw: Any) -> requests.Response:
    return requests.get(sb.url + path, auth=AUTH, timeout=5, **kw)


def post(sb: JiraSandbox, path: str, payload: Any, **kw: Any) -> requests.Response:
    return requests.post(sb.url + path, json=payload, auth=AUTH, timeout=5, **kw)


def test_old_search_is_gone_on_cloud(cloud_sandbox: JiraSandbox):
    for path in ("/rest/api/2/search", "/rest/api/3/search"):
        response = get(cloud_sandbox, path, params={"jql": "project = PAY"})
        assert response.status_code == 410
        message = response.json()["errorMessages"][0]
        assert message.startswith(
            "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API."
        )
    assert post(cloud_sandbox, "/rest/api/3/search", {"jql": "project = PAY"}).status_code == 410


def test_cloud_search_jql_shape(cloud_sandbox: JiraSandbox):
    first = post(
        cloud_sandbox,
        "/rest/api/3/search/jql",
        {"jql": "project = PAY ORDER BY key ASC", "maxResults": 5},
    ).json()
    assert set(first) == {"issues", "nextPageToken", "isLast"}
    assert first["isLast"] is False and "total" not in first
    assert first["issues"][0] == {"id": first["issues"][0]["id"]}  # only `id` by default
    second = get(
        cloud_sandbox,
        "/rest/api/3/search/jql",
        params={
            "jql": "project = PAY ORDER BY key ASC",
            "maxResults": 5,
            "nextPageToken": first["nextPageToken"],
            "fields": "summary",
        },
    ).json()
    assert second["isLast"] is True and "nextPageToken" not in second
    assert [i["key"] for i in second["issues"]] == ["PAY-6", "PAY-7", "PAY-8"]
    unbounded = get(cloud_sandbox, "/rest/api/3/search/jql", params={"jql": "order by key"})
    assert unbounded.status_code == 400
    assert "Unbounded JQL" in unbounded.json()["errorMessages"][0]


def test_server_has_no_v3_and_no_search_jql(server_sandbox: JiraSandbox):
    assert get(server_sandbox, "/rest/api/3/issue/PAY-1").status_code == 404
    assert get(server_sandbox, "/rest/api/2/search/jql", params={"jql": "x = 1"}).status_code == 404
    page = get(
        server_sandbox,
        "/rest/api/2/search",
        params={"jql": "project = PAY", "startAt": 6, "maxResults": 5},
    ).json()
    assert (page["startAt"], page["maxResults"], page["total"]) == (6, 5, 8)
    assert len(page["issues"]) == 2


def test_rate_limit_answers_429_with_retry_after(sandbox: JiraSandbox):
    sandbox.rate_limit(2, retry_after=7)
    for _ in range(2):
        response = get(sandbox, "/rest/api/2/myself")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert response.json()["errorMessages"]
    assert get(sandbox, "/rest/api/2/myself").status_code == 200


def test_fail_next_only_hits_matching_requests(sandbox: JiraSandbox):
    sandbox.fail_next("POST", "/rest/api/2/issue/PAY-1/comment", 503)
    assert get(sandbox, "/rest/api/2/issue/PAY-1").status_code == 200
    failed = post(sandbox, "/rest/api/2/issue/PAY-1/comment", {"body": "x"})
    assert failed.status_code == 503 and failed.json()["errorMessages"]
    assert post(sandbox, "/rest/api/2/issue/PAY-1/comment", {"body": "x"}).status_code == 201
    assert sandbox.comments("PAY-1") == ["x"]


def test_backlog_move_is_limited_to_50_issues(sandbox: JiraSandbox):
    keys = [sandbox.add_issue("PAY", f"bulk {n}", sprint="PAY Sprint 1") for n in range(51)]
    response = post(sandbox, "/rest/agile/1.0/backlog/issue", {"issues": keys})
    assert response.status_code == 400
    assert response.json()["errorMessages"]
    assert all(sandbox.sprint_of(k) == "PAY Sprint 1" for k in keys)  # nothing moved
    ok = post(sandbox, "/rest/agile/1.0/backlog/issue", {"issues": keys[:50]})
    assert ok.status_code == 204
    assert sandbox.sprint_of(keys[0]) is None and sandbox.sprint_of(keys[50]) == "PAY Sprint 1"
    too_many = post(sandbox, "/rest/agile/1.0/sprint/1/issue", {"issues": keys})
    assert too_many.status_code == 400


def test_error_bodies(sandbox: JiraSandbox):
    missing = get(sandbox, "/rest/api/2/issue/PAY-999")
    assert missing.status_code == 404
    assert missing.json() == {
        "errorMessages": ["Issue does not exist or you do not have permission to see it."],
        "errors": {},
    }
    invalid = post(sandbox, "/rest/api/2/issue", {"fields": {"project": {"key": "PAY"}}})
    assert invalid.status_code == 400
    assert invalid.json()["errorMessages"] == []
    assert set(invalid.json()["errors"]) == {"summary", "issuetype"}
    bad_jql = get(
        sandbox,
        "/rest/api/2/search/jql" if sandbox.cloud else "/rest/api/2/search",
        params={"jql": "projekt = PAY"},
    )
    assert bad_jql.status_code == 400
    assert bad_jql.json()["errorMessages"] == [
        "Field 'projekt' does not exist or you do not have permission to view it."
    ]
    transition = post(sandbox, "/rest/api/2/issue/PAY-4/transitions", {"transition": {"id": "41"}})
    assert transition.status_code == 400
    assert transition.json()["errorMessages"] == ["Transition id '41' is not valid for this issue."]


def test_unauthenticated_requests_get_401(sandbox: JiraSandbox):
    response = requests.get(
        sandbox.url + "/rest/api/2/myself", auth=("sandbox", "wrong"), timeout=5
    )
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    bearer = requests.get(
        sandbox.url + "/rest/api/2/myself", timeout=5, headers={"Authorization": "Bearer sandbox"}
    )
    assert bearer.status_code == (401 if sandbox.cloud else 200)  # Server PATs only
    assert sandbox.issue("PAY-1")["key"] == "PAY-1"


def test_v3_uses_adf_and_v2_plain_text(cloud_sandbox: JiraSandbox):
    doc = {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "paragraph",
                "content": [{"type": "text", "text": "Rolled back: smoke failed"}],
            }
        ],
    }
    created = post(cloud_sandbox, "/rest/api/3/issue/PAY-2/comment", {"body": doc})
    assert created.status_code == 201 and created.json()["body"] == doc
    v2 = get(cloud_sandbox, "/rest/api/2/issue/PAY-2/comment").json()["comments"][0]["body"]
    assert v2 == "Rolled back: smoke failed"
    created = post(
        cloud_sandbox,
        "/rest/api/3/issue",
        {
            "fields": {
                "project": {"key": "PAY"},
                "summary": "ADF",
                "issuetype": {"id": "10002"},
                "description": doc,
            }
        },
    )
    assert created.status_code == 201
    key = created.json()["key"]
    v3 = get(cloud_sandbox, f"/rest/api/3/issue/{key}", params={"fields": "description"}).json()
    assert v3["fields"] == {"description": doc}
    assert v3["self"].endswith("/rest/api/3/issue/" + v3["id"])
    v2 = get(cloud_sandbox, f"/rest/api/2/issue/{key}", params={"fields": "description"}).json()
    assert v2["fields"]["description"] == "Rolled back: smoke failed"
    fields = get(cloud_sandbox, "/rest/api/3/issue/PAY-2").json()["fields"]
    sprint_field = fields["customfield_10020"]
    assert sprint_field[0]["name"] == "PAY Sprint 1" and sprint_field[0]["state"] == "active"


def test_properties_put_get_delete(sandbox: JiraSandbox):
    url = "/rest/api/2/issue/PAY-1/properties/itsm-bridge"
    put = requests.put(sandbox.url + url, json={"source": "DMN1"}, auth=AUTH, timeout=5)
    assert put.status_code == 201
    again = requests.put(sandbox.url + url, json={"source": "DMN2"}, auth=AUTH, timeout=5)
    assert again.status_code == 200
    assert get(sandbox, url).json() == {"key": "itsm-bridge", "value": {"source": "DMN2"}}
    keys = get(sandbox, "/rest/api/2/issue/PAY-1/properties").json()["keys"]
    assert [k["key"] for k in keys] == ["itsm-bridge"]
    assert requests.delete(sandbox.url + url, auth=AUTH, timeout=5).status_code == 204
    assert get(sandbox, url).status_code == 404


class Receiver:
    """A tiny webhook receiver built on the project's own WSGI toolkit."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.event = threading.Event()
        app = App("receiver")

        @app.route("POST", "/hook")
        def hook(request: Request) -> Response:
            self.received.append((request.headers, request.body))
            self.event.set()
            return Response(202, {"ok": True})

        self.server = RunningServer(app)


@pytest.fixture(scope="module")
def receiver() -> Any:
    rx = Receiver()
    rx.server.start()
    yield rx
    rx.server.stop()


def test_webhooks_are_signed_and_carry_the_changelog(sandbox: JiraSandbox, receiver: Receiver):
    receiver.received.clear()
    secret = "s3cr3t"
    sandbox.register_webhook(
        receiver.server.url + "/hook",
        secret=secret,
        events=["jira:issue_updated", "jira:version_released"],
    )
    assert (
        post(
            sandbox, "/rest/api/2/issue/PAY-4/transitions", {"transition": {"id": "11"}}
        ).status_code
        == 204
    )
    version_id = sandbox.version("PAY", "1.0.0")["id"]  # type: ignore[index]
    requests.put(
        f"{sandbox.url}/rest/api/2/version/{version_id}",
        auth=AUTH,
        timeout=5,
        json={"released": True, "releaseDate": "2026-11-28"},
    ).raise_for_status()
    assert sandbox.wait_for_webhooks(5)
    deadline = time.time() + 5
    while len(receiver.received) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert len(receiver.received) == 2
    (headers, raw), (vheaders, vraw) = receiver.received
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["x-hub-signature"] == f"sha256={expected}"
    payload = json.loads(raw)
    assert payload["webhookEvent"] == "jira:issue_updated"
    assert payload["issue"]["key"] == "PAY-4"
    assert payload["issue"]["fields"]["status"]["name"] == "In Progress"
    assert {
        "field": "status",
        "fieldtype": "jira",
        "from": "10000",
        "fromString": "To Do",
        "to": "3",
        "toString": "In Progress",
    } in payload["changelog"]["items"]
    assert isinstance(payload["timestamp"], int) and payload["user"]
    version = json.loads(vraw)
    assert version["webhookEvent"] == "jira:version_released"
    assert version["version"]["released"] is True
    assert (
        vheaders["x-hub-signature"]
        == "sha256=" + hmac.new(secret.encode(), vraw, hashlib.sha256).hexdigest()
    )


def test_webhook_failures_are_logged_not_raised(sandbox: JiraSandbox):
    sandbox.register_webhook("http://127.0.0.1:9/unreachable")
    key = sandbox.add_issue("PAY", "nobody listens")
    assert sandbox.wait_for_webhooks(5)
    assert sandbox.issue(key)["key"] == key
    failures = [d for d in sandbox.webhooks.deliveries if d.error]
    assert failures and failures[0].event == "jira:issue_created"
