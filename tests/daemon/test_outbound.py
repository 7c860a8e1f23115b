"""Outbound calls for the daemon: every answer and network fault of the three vendor clients
reported to `http.set_observer` (the `itsm_bridge_outbound_requests_total` series), and each
client safe to share across the worker's threads (a session per thread)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import requests
import responses
from pydantic import SecretStr

from itsm_bridge import http
from itsm_bridge.daemon.metrics import Metrics
from itsm_bridge.errors import NeedsHuman
from itsm_bridge.http import HTTPTransientError
from itsm_bridge_jenkins.client import JenkinsClient
from itsm_bridge_jira import Settings as JiraSettings
from itsm_bridge_jira.client import JiraClient
from itsm_bridge_servicenow.client import ServiceNowClient

T = TypeVar("T")
SNOW = "https://acme.service-now.com"
JENKINS = "https://ci.example.com"
JIRA = "https://acme.atlassian.net"
SERVER_INFO = {"baseUrl": JIRA, "versionNumbers": [1001, 0, 0], "deploymentType": "Cloud"}


@pytest.fixture
def seen() -> Iterator[list[tuple[str, str]]]:
    calls: list[tuple[str, str]] = []
    http.set_observer(lambda plugin, status: calls.append((plugin, status)))
    yield calls
    http.set_observer(None)


def in_thread(fn: Callable[[], T]) -> T:
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join(10)
    return result[0]


# -- the observer ------------------------------------------------------------------------------
@responses.activate
def test_an_instrumented_session_reports_answers_and_network_faults(
    seen: list[tuple[str, str]],
) -> None:
    session = http.instrument(requests.Session(), "acme")
    responses.get("https://x.test/ok", status=200)
    responses.get("https://x.test/gone", status=404)
    responses.get("https://x.test/down", body=requests.ConnectionError("refused"))
    responses.get("https://x.test/moved", status=302, headers={"Location": "https://x.test/down"})
    session.get("https://x.test/ok")
    session.get("https://x.test/gone")
    with pytest.raises(requests.ConnectionError):
        session.get("https://x.test/down")
    with pytest.raises(requests.ConnectionError):  # the fault behind a redirect: once
        session.get("https://x.test/moved")
    assert seen == [("acme", "200"), ("acme", "404"), ("acme", "error"), ("acme", "302"),
                    ("acme", "error")]  # fmt: skip


@responses.activate
def test_a_failing_observer_never_fails_the_call_and_none_restores_the_no_op() -> None:
    def broken(plugin: str, status: str) -> None:
        raise RuntimeError("metrics are down")

    session = http.instrument(requests.Session(), "acme")
    responses.get("https://x.test/ok", status=200)
    http.set_observer(broken)
    try:
        assert session.get("https://x.test/ok").status_code == 200
    finally:
        http.set_observer(None)
    assert session.get("https://x.test/ok").status_code == 200


@responses.activate
def test_the_observer_feeds_the_outbound_metric() -> None:
    metrics = Metrics()
    http.set_observer(metrics.outbound)
    try:
        session = http.instrument(requests.Session(), "jenkins")
        responses.get("https://x.test/ok", status=201)
        session.get("https://x.test/ok")
    finally:
        http.set_observer(None)
    body = metrics.render()[0].decode()
    assert 'itsm_bridge_outbound_requests_total{plugin="jenkins",status="201"} 1.0' in body


# -- Jenkins -----------------------------------------------------------------------------------
@responses.activate
def test_jenkins_reports_every_attempt_and_has_a_session_and_crumb_per_thread(
    seen: list[tuple[str, str]],
) -> None:
    client = JenkinsClient(JENKINS, "bridge", SecretStr("tok"), attempts=2, sleep=lambda s: None)
    url = f"{JENKINS}/job/a/api/json"
    responses.get(url, status=503)
    responses.get(url, json={"name": "a"})
    assert client.get_json(url, "GET job a") == {"name": "a"}
    responses.get(f"{JENKINS}/down", body=requests.ConnectionError("refused"))
    with pytest.raises(HTTPTransientError):
        client.get_json(f"{JENKINS}/down", "GET down")
    assert seen == [("jenkins", "503"), ("jenkins", "200"), ("jenkins", "error"),
                    ("jenkins", "error")]  # fmt: skip

    assert client.session is client.session
    other = in_thread(lambda: client.session)
    assert other is not client.session
    assert other.auth == client.session.auth == ("bridge", "tok")
    assert other.headers["Accept"] == "application/json"
    client.crumb = {"Jenkins-Crumb": "main"}
    assert in_thread(lambda: client.crumb) is None
    assert client.crumb == {"Jenkins-Crumb": "main"}


# -- ServiceNow --------------------------------------------------------------------------------
@responses.activate
def test_servicenow_reports_pysnow_reads_and_creates_and_has_a_session_per_thread(
    seen: list[tuple[str, str]],
) -> None:
    client = ServiceNowClient(SNOW, "svc", SecretStr("pw"), attempts=1, sleep=lambda s: None)
    table = f"{SNOW}/api/now/table/change_request"
    responses.get(table, json={"result": [{"sys_id": "abc"}]})
    responses.post(table, status=201, json={"result": {"sys_id": "new"}})
    assert client.get("change_request", "abc", ["sys_id"]) == {"sys_id": "abc"}
    assert client.create("change_request", {"short_description": "x"})["sys_id"] == "new"
    assert seen == [("servicenow", "200"), ("servicenow", "201")]

    assert client.session is client.session
    assert client._pysnow.session is client.session
    other = in_thread(lambda: (client.session, client._pysnow))
    assert other[0] is not client.session and other[1] is not client._pysnow
    assert other[1].session is other[0]
    assert other[0].auth == ("svc", "pw")
    seen.clear()
    assert in_thread(lambda: client.get("change_request", "abc", ["sys_id"])) is not None
    assert seen == [("servicenow", "200")]


# -- Jira --------------------------------------------------------------------------------------
def jira_client() -> JiraClient:
    config = JiraSettings.model_validate(
        {"url": JIRA, "user": "bridge@acme.com", "token": "tok", "project": "PAY"}
    )
    return JiraClient(config, sleep=lambda s: None)


@responses.activate
def test_jira_reports_server_info_and_calls_and_connects_once_per_thread(
    seen: list[tuple[str, str]],
) -> None:
    responses.get(f"{JIRA}/rest/api/2/serverInfo", json=SERVER_INFO)
    responses.get(f"{JIRA}/rest/api/2/project/PAY", json={"id": "10000"})
    client = jira_client()
    assert client.project_id() == "10000"
    assert seen == [("jira", "200"), ("jira", "200")]  # serverInfo, then the project
    assert client.jira is client.jira
    other = in_thread(lambda: client.jira)
    assert other is not client.jira
    assert seen.count(("jira", "200")) == 3  # the other thread read serverInfo for itself


@responses.activate
def test_jira_reports_a_server_info_that_fails(seen: list[tuple[str, str]]) -> None:
    responses.get(f"{JIRA}/rest/api/2/serverInfo", status=401, body="Unauthorized")
    with pytest.raises(NeedsHuman):
        _ = jira_client().jira
    assert ("jira", "401") in seen and ("jira", "200") not in seen
    seen.clear()
    responses.replace(
        responses.GET, f"{JIRA}/rest/api/2/serverInfo", body=requests.ConnectionError("down")
    )
    with pytest.raises(HTTPTransientError):
        _ = jira_client().jira
    assert seen and set(seen) == {("jira", "error")}


def test_a_jira_factory_without_a_session_is_left_alone() -> None:
    class Fake:
        pass

    config = JiraSettings.model_validate({"url": JIRA, "user": "u", "token": "t", "project": "PAY"})
    client = JiraClient(config, factory=lambda **kw: Fake())  # type: ignore[arg-type,return-value]
    assert isinstance(client.open(server_info=False), Fake)
