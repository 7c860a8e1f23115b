"""JiraClient protocol discipline, with HTTP mocked by `responses` and bodies shaped like
Atlassian's documentation: `serverInfo` ("Get Jira instance info"), the Cloud enhanced search
("Search for issues using JQL enhanced search": `issues`, `nextPageToken`, `isLast`), the Data
Center search (`startAt`, `maxResults`, `total`, `issues`), errors as `{"errorMessages",
"errors"}` ("Status codes"), 429 with `Retry-After` ("Rate limiting", Jira Cloud)."""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.http import HTTPNeedsHuman, HTTPRequestError, HTTPTransientError
from itsm_bridge_jira import Settings
from itsm_bridge_jira.client import JiraClient, jira_message

SITE = "https://acme.atlassian.net"
DC = "https://jira.acme.com/jira"
TOKEN = "ATATT3xFfGF0-very-secret-token"


def server_info(base: str, cloud: bool) -> dict[str, Any]:
    return {
        "baseUrl": base,
        "version": "1001.0.0-SNAPSHOT" if cloud else "9.12.15",
        "versionNumbers": [1001, 0, 0] if cloud else [9, 12, 15],
        "deploymentType": "Cloud" if cloud else "Server",
        "buildNumber": 100282,
        "buildDate": "2026-11-01T00:00:00.000+0000",
        "serverTime": "2026-11-28T10:30:00.000+0000",
        "scmInfo": "0" * 40,
        "serverTitle": "Jira",
    }


def issue(n: int) -> dict[str, Any]:
    return {
        "expand": "",
        "id": str(10000 + n),
        "self": f"{SITE}/rest/api/3/issue/{10000 + n}",
        "key": f"PAY-{n}",
        "fields": {"summary": f"issue {n}", "status": {"name": "To Do"}},
    }


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make(sleeps: list[float], base: str = SITE, cloud: bool = True, **overrides: Any) -> JiraClient:
    responses.get(f"{base}/rest/api/2/serverInfo", json=server_info(base, cloud))
    config = Settings.model_validate(
        {"url": base, "user": "bridge@acme.com", "token": TOKEN, "project": "PAY", **overrides}
    )
    return JiraClient(config, sleep=sleeps.append)


def bodies(url: str) -> list[dict[str, Any]]:
    return [json.loads(c.request.body) for c in responses.calls if c.request.url == url]


@responses.activate
def test_cloud_search_follows_next_page_token_with_an_explicit_field_list(
    sleeps: list[float],
) -> None:
    client = make(sleeps)
    url = f"{SITE}/rest/api/3/search/jql"
    responses.post(
        url, json={"issues": [issue(1), issue(2)], "nextPageToken": "CAEaAggD", "isLast": False}
    )
    responses.post(url, json={"issues": [issue(3)], "nextPageToken": "CAEaAggE", "isLast": False})
    responses.post(url, json={"issues": [issue(4)], "isLast": True})

    found = client.search("project = PAY", ["summary", "status"])

    assert [i["key"] for i in found] == ["PAY-1", "PAY-2", "PAY-3", "PAY-4"]
    sent = bodies(url)
    assert len(sent) == 3  # a short page (1 < 100) does not end the read: the token does
    assert [b.get("nextPageToken") for b in sent] == [None, "CAEaAggD", "CAEaAggE"]
    assert all(b["fields"] == ["summary", "status"] and b["maxResults"] == 100 for b in sent)
    assert not [c for c in responses.calls if c.request.url.endswith("/rest/api/2/search")]


@responses.activate
def test_data_center_search_pages_by_start_at_until_total(sleeps: list[float]) -> None:
    client = make(sleeps, base=DC, cloud=False)
    url = f"{DC}/rest/api/2/search"
    for start, size in ((0, 100), (100, 100), (200, 50)):
        responses.post(
            url,
            json={
                "expand": "schema,names",
                "startAt": start,
                "maxResults": 100,
                "total": 250,
                "issues": [issue(n) for n in range(start, start + size)],
            },
        )

    found = client.search("project = PAY", ["summary"])

    assert len(found) == 250
    assert [b["startAt"] for b in bodies(url)] == [0, 100, 200]
    assert all(b["fields"] == ["summary"] for b in bodies(url))


@responses.activate
def test_data_center_search_follows_a_capped_page(sleeps: list[float]) -> None:
    client = make(sleeps, base=DC, cloud=False)
    url = f"{DC}/rest/api/2/search"
    for start in (0, 40, 80):
        page = [issue(n) for n in range(start, min(start + 40, 100))]
        responses.post(url, json={"startAt": start, "maxResults": 40, "total": 100, "issues": page})

    assert len(client.search("project = PAY", ["summary"])) == 100
    assert [b["startAt"] for b in bodies(url)] == [0, 40, 80]


@responses.activate
def test_retry_after_beyond_the_librarys_60_seconds_is_honoured(sleeps: list[float]) -> None:
    client = make(sleeps)
    url = f"{SITE}/rest/api/2/project/PAY"
    responses.get(url, status=429, headers={"Retry-After": "120"},
                  json={"errorMessages": ["Rate limit exceeded."], "errors": {}})  # fmt: skip
    responses.get(url, json={"id": "10000", "key": "PAY"})

    assert client.project_id() == "10000"
    assert sleeps == [120.0]  # asked 120 s: waited 120 s, not min(60, ...) x jitter
    assert len([c for c in responses.calls if c.request.url == url]) == 2


@responses.activate
def test_retry_after_as_an_http_date_is_honoured(sleeps: list[float]) -> None:
    client = make(sleeps)
    url = f"{SITE}/rest/api/2/project/PAY"
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    responses.get(url, status=503, headers={"Retry-After": when})
    responses.get(url, json={"id": "10000", "key": "PAY"})

    assert client.project_id() == "10000"
    assert len(sleeps) == 1 and 80 <= sleeps[0] <= 90


@responses.activate
def test_a_longer_wait_than_configured_is_left_to_the_core(sleeps: list[float]) -> None:
    client = make(sleeps, max_retry_wait_seconds=300)
    url = f"{SITE}/rest/api/2/project/PAY"
    responses.get(url, status=429, headers={"Retry-After": "3600"},
                  json={"errorMessages": ["Rate limit exceeded."], "errors": {}})  # fmt: skip

    with pytest.raises(HTTPTransientError) as raised:
        client.project_id()

    assert raised.value.retry_after == 3600.0 and sleeps == []
    assert len([c for c in responses.calls if c.request.url == url]) == 1


@responses.activate
def test_the_library_never_retries_a_create_itself(
    sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    import jira.resilientsession

    monkeypatch.setattr(jira.resilientsession.time, "sleep", lambda s: None)
    client = make(sleeps)
    url = f"{SITE}/rest/api/2/issue"
    responses.post(url, status=503, headers={"Retry-After": "1"})
    responses.post(url, status=201, json={"id": "10001", "key": "PAY-1"})

    with pytest.raises(HTTPTransientError):
        client.call("POST", "issue", "create", body={"fields": {}}, retry=False)

    assert len([c for c in responses.calls if c.request.url == url]) == 1


@responses.activate
def test_reads_give_up_after_the_configured_attempts(sleeps: list[float]) -> None:
    client = make(sleeps, retries=3)
    url = f"{SITE}/rest/api/2/project/PAY"
    responses.get(url, status=502, body="<html>Bad gateway</html>")

    with pytest.raises(HTTPTransientError, match="HTTP 502"):
        client.project_id()

    assert len([c for c in responses.calls if c.request.url == url]) == 3 and len(sleeps) == 2


@responses.activate
def test_jiras_own_messages_are_shown(sleeps: list[float]) -> None:
    client = make(sleeps)
    responses.post(
        f"{SITE}/rest/api/2/version",
        status=400,
        json={
            "errorMessages": ["Could not create version."],
            "errors": {"releaseDate": "Please enter the date in the following format: yyyy-MM-dd"},
        },
    )

    with pytest.raises(HTTPRequestError) as raised:
        client.call("POST", "version", "create version 1.5.0", body={}, retry=False)

    assert str(raised.value) == (
        "create version 1.5.0: HTTP 400: Could not create version.; "
        "releaseDate: Please enter the date in the following format: yyyy-MM-dd"
    )


@responses.activate
def test_bad_credentials_need_a_human_and_never_show_the_token(sleeps: list[float]) -> None:
    responses.get(f"{SITE}/rest/api/2/serverInfo", json=server_info(SITE, True))
    client = make(sleeps)
    responses.get(f"{SITE}/rest/api/2/project/PAY", status=401,
                  body=f"Client must be authenticated (token {TOKEN} refused)")  # fmt: skip

    with pytest.raises(HTTPNeedsHuman) as raised:
        client.project_id()

    assert "Client must be authenticated" in str(raised.value) and TOKEN not in str(raised.value)
    assert "***" in str(raised.value)


@responses.activate
def test_the_deployment_comes_from_server_info_once(sleeps: list[float]) -> None:
    client = make(sleeps, base=DC, cloud=False)
    assert client.cloud is False and client.deployment == "Data Center"
    assert client.cloud is False
    calls = [c for c in responses.calls if c.request.url.endswith("/serverInfo")]
    assert len(calls) == 1
    assert make(sleeps, base=DC, cloud=False, deployment="cloud").cloud is True


@responses.activate
def test_bearer_auth_sends_the_personal_access_token(sleeps: list[float]) -> None:
    responses.get(f"{DC}/rest/api/2/serverInfo", json=server_info(DC, False))
    config = Settings.model_validate(
        {"url": DC, "token": TOKEN, "project": "PAY", "auth": "bearer"}
    )
    client = JiraClient(config, sleep=sleeps.append)

    assert client.cloud is False
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_jira_message_of_other_shapes() -> None:
    class Answer:
        def __init__(self, body: Any, text: str = "") -> None:
            self.body, self.text = body, text

        def json(self) -> Any:
            if self.body is None:
                raise ValueError
            return self.body

    assert jira_message(Answer({"message": "Service unavailable"})) == "Service unavailable"  # type: ignore[arg-type]
    assert (
        jira_message(Answer(None, "<html>  proxy\n error </html>")) == "<html> proxy error </html>"
    )  # type: ignore[arg-type]
    assert jira_message(None) == ""


@responses.activate
def test_a_site_that_is_not_jira_needs_a_human(sleeps: list[float]) -> None:
    responses.get(f"{SITE}/rest/api/2/serverInfo", body="<html>Welcome</html>")
    config = Settings.model_validate(
        {"url": SITE, "user": "bridge@acme.com", "token": TOKEN, "project": "PAY"}
    )
    with pytest.raises(NeedsHuman, match="does not answer as a Jira site"):
        JiraClient(config, sleep=sleeps.append).project_id()
