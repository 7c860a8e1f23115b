"""The Jenkins client: URLs, timeouts, retries that honour Retry-After, Jenkins' error pages,
crumbs once per session, and never the token in an error."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses
from pydantic import SecretStr, ValidationError

from itsm_bridge.errors import ConfigError
from itsm_bridge.http import HTTPNeedsHuman, HTTPRequestError, HTTPTransientError
from itsm_bridge.plugins import load_plugins
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge_jenkins import Settings
from itsm_bridge_jenkins.client import (
    JenkinsClient,
    check_jenkins_url,
    jenkins_message,
    job_from_url,
    job_path,
    queue_id_from,
)

URL = "https://ci.example.com"
TOKEN = "11aa22bb33cc44dd-api-token"
JOB = URL + "/job/payments/job/build/"
CRUMB = URL + "/crumbIssuer/api/json"
NO_CRUMB_PAGE = (
    "<html><head><title>Error 403 No valid crumb was included in the request</title></head>"
    "<body><h2>HTTP ERROR 403 No valid crumb was included in the request</h2></body></html>"
)


def make_client(**kwargs: Any) -> tuple[JenkinsClient, list[float]]:
    slept: list[float] = []
    client = JenkinsClient(URL, "bridge", SecretStr(TOKEN), sleep=slept.append, **kwargs)
    return client, slept


# -- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://bridge:secret@ci.example.com", "must not carry credentials"),
        ("https://", "has no host"),
        ("ci.example.com", "must be the Jenkins root URL"),
        ("https://ci.example.com/?a=1", "must not carry a query"),
        ("https://ci.example.com:port", "invalid port"),
    ],
)
def test_a_url_with_credentials_or_without_host_is_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_jenkins_url(url)
    with pytest.raises(ValidationError):
        Settings(url=url, user="bridge", token=SecretStr("t"))


def test_a_bad_url_is_a_config_error_naming_the_key() -> None:
    settings = settings_from_mapping(
        {
            "plugins": {
                "enabled": ["jenkins"],
                "jenkins": {"url": "https://u:p@ci.example.com", "user": "u", "token": "p"},
            }
        }
    )
    with pytest.raises(ConfigError) as caught:
        load_plugins(settings)
    assert "plugins.jenkins.url" in str(caught.value)
    assert "credentials" in str(caught.value)


def test_unknown_keys_and_limits_are_config_errors() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Settings.model_validate({"url": URL, "user": "u", "token": "t", "pasword": "x"})
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        Settings.model_validate({"url": URL, "user": "u", "token": "t", "max_builds": 500})


def test_urls_of_jobs_in_folders() -> None:
    assert check_jenkins_url("https://ci.example.com/jenkins/ ") == "https://ci.example.com/jenkins"
    assert job_path("payments/build") == "/job/payments/job/build/"
    assert job_path("/team a/deploy #2") == "/job/team%20a/job/deploy%20%232/"
    assert job_from_url("https://ci/jenkins/job/payments/job/build/7/") == "payments/build"
    assert job_from_url("job/team%20a/job/deploy/") == "team a/deploy"
    assert job_from_url("https://ci/queue/item/4/") is None
    assert queue_id_from("https://ci.example.com/queue/item/17/") == 17
    assert queue_id_from("https://ci.example.com/job/payments/job/build/") is None
    assert queue_id_from(None) is None


# -- reads ---------------------------------------------------------------------------------
@responses.activate
def test_reads_use_tree_and_a_timeout() -> None:
    client, _ = make_client(timeout=12)
    responses.get(JOB + "api/json", json={"fullName": "payments/build"})
    assert client.get_json(JOB + "api/json", "GET", tree="fullName") == {
        "fullName": "payments/build"
    }
    call = responses.calls[0]
    assert parse_qs(call.request.url.split("?", 1)[1]) == {"tree": ["fullName"]}
    assert call.request.req_kwargs["timeout"] == (5.0, 12)
    assert call.request.headers["Authorization"].startswith("Basic ")


@responses.activate
def test_a_transient_answer_is_retried_after_what_the_server_asked() -> None:
    client, slept = make_client()
    responses.get(JOB + "api/json", status=503, headers={"Retry-After": "7"})
    responses.get(JOB + "api/json", json={"ok": True})
    assert client.get_json(JOB + "api/json", "GET job") == {"ok": True}
    assert len(responses.calls) == 2
    assert slept == [7.0]


@responses.activate
def test_retries_stop_after_the_configured_attempts() -> None:
    client, slept = make_client(attempts=3)
    responses.get(JOB + "api/json", status=502, body="<h2>HTTP ERROR 502 Bad Gateway</h2>")
    with pytest.raises(HTTPTransientError, match="GET job: HTTP 502: Bad Gateway"):
        client.get_json(JOB + "api/json", "GET job")
    assert len(responses.calls) == 3
    assert len(slept) == 2


@responses.activate
def test_a_network_fault_is_transient() -> None:
    client, _ = make_client(attempts=2)
    responses.get(JOB + "api/json", body=requests.ConnectionError("refused"))
    with pytest.raises(HTTPTransientError, match="ConnectionError"):
        client.get_json(JOB + "api/json", "GET job")
    assert len(responses.calls) == 2


@responses.activate
def test_bad_credentials_need_a_human_at_once_and_never_show_the_token() -> None:
    client, _ = make_client()
    page = f"<html><head><title>Error 401 Invalid password/token for user: {TOKEN}</title>"
    responses.get(JOB + "api/json", status=401, body=page)
    with pytest.raises(HTTPNeedsHuman) as caught:
        client.get_json(JOB + "api/json", "GET job")
    assert len(responses.calls) == 1
    assert TOKEN not in str(caught.value) and "***" in str(caught.value)


@responses.activate
def test_a_404_is_none_only_where_allowed() -> None:
    client, _ = make_client()
    responses.get(JOB + "api/json", status=404, body="<h1>Not Found</h1>")
    assert client.get_json(JOB + "api/json", "GET job", missing_ok=True) is None
    with pytest.raises(HTTPRequestError, match="GET job: HTTP 404: Not Found"):
        client.get_json(JOB + "api/json", "GET job")


@responses.activate
def test_a_login_page_is_not_json() -> None:
    client, _ = make_client()
    responses.get(JOB + "api/json", body="<html><title>Sign in [Jenkins]</title></html>")
    with pytest.raises(HTTPRequestError, match=r"not JSON .*Sign in"):
        client.get_json(JOB + "api/json", "GET job")


def test_jenkins_error_pages() -> None:
    def page(body: str) -> requests.Response:
        response = requests.Response()
        response._content = body.encode()
        return response

    assert jenkins_message(page("<h2>HTTP ERROR 409 payments/deploy is not buildable!</h2>")) == (
        "payments/deploy is not buildable!"
    )
    assert jenkins_message(page("<title>Error 500 Oops &amp; more</title>")) == "Oops & more"
    assert jenkins_message(page("<title>Jenkins</title><h1>Not Found</h1>")) == "Not Found"
    assert jenkins_message(page("plain text")) == "plain text"


# -- the trigger and crumbs ------------------------------------------------------------------
@responses.activate
def test_the_trigger_is_never_retried() -> None:
    client, _ = make_client()
    responses.post(JOB + "buildWithParameters", status=503)
    with pytest.raises(HTTPTransientError):
        client.post_form(JOB + "buildWithParameters", "POST build", {"RELEASE_ID": "r"})
    assert len(responses.calls) == 1
    responses.post(JOB + "buildWithParameters", body=requests.ReadTimeout("slow"))
    with pytest.raises(HTTPTransientError, match="ReadTimeout"):
        client.post_form(JOB + "buildWithParameters", "POST build", {"RELEASE_ID": "r"})
    assert len(responses.calls) == 2


@responses.activate
def test_a_crumb_is_fetched_once_per_session_when_jenkins_asks() -> None:
    client, _ = make_client()
    trigger = JOB + "buildWithParameters"
    responses.post(trigger, status=403, body=NO_CRUMB_PAGE)
    responses.get(
        CRUMB,
        json={"crumbRequestField": "Jenkins-Crumb", "crumb": "c1"},
        headers={"Set-Cookie": "JSESSIONID.abc=s1; Path=/"},
    )
    responses.post(trigger, status=201, headers={"Location": URL + "/queue/item/5/"})
    first = client.post_form(trigger, "POST build", {"RELEASE_ID": "r1"})
    assert first.headers["Location"].endswith("/queue/item/5/")
    responses.post(trigger, status=201, headers={"Location": URL + "/queue/item/6/"})
    client.post_form(trigger, "POST build", {"RELEASE_ID": "r2"})
    posts = [c for c in responses.calls if c.request.method == "POST"]
    crumbs = [c for c in responses.calls if c.request.url.startswith(CRUMB)]
    assert len(crumbs) == 1
    assert "Jenkins-Crumb" not in posts[0].request.headers
    assert [p.request.headers["Jenkins-Crumb"] for p in posts[1:]] == ["c1", "c1"]
    assert posts[2].request.headers["Cookie"] == "JSESSIONID.abc=s1"  # the web session
    assert parse_qs(posts[1].request.body) == {"RELEASE_ID": ["r1"]}  # the same POST again


@responses.activate
def test_a_crumb_refused_again_is_renewed_once_then_the_error_stands() -> None:
    client, _ = make_client()
    client.crumb = {"Jenkins-Crumb": "stale"}
    trigger = JOB + "buildWithParameters"
    responses.post(trigger, status=403, body=NO_CRUMB_PAGE)
    responses.get(CRUMB, json={"crumbRequestField": "Jenkins-Crumb", "crumb": "fresh"})
    with pytest.raises(HTTPNeedsHuman, match="use an API token"):
        client.post_form(trigger, "POST build", {"RELEASE_ID": "r"})
    posts = [
        c.request.headers["Jenkins-Crumb"] for c in responses.calls if c.request.method == "POST"
    ]
    assert posts == ["stale", "fresh"]


@responses.activate
def test_without_a_crumb_issuer_the_403_stands() -> None:
    client, _ = make_client()
    trigger = JOB + "buildWithParameters"
    responses.post(trigger, status=403, body=NO_CRUMB_PAGE)
    responses.get(CRUMB, status=404)
    with pytest.raises(HTTPNeedsHuman):
        client.post_form(trigger, "POST build", {"RELEASE_ID": "r"})
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1


@responses.activate
def test_a_plain_403_asks_for_no_crumb() -> None:
    client, _ = make_client()
    trigger = JOB + "buildWithParameters"
    responses.post(trigger, status=403, body="<h2>HTTP ERROR 403 bridge is missing Job/Build</h2>")
    with pytest.raises(HTTPNeedsHuman, match="missing Job/Build"):
        client.post_form(trigger, "POST build", {"RELEASE_ID": "r"})
    assert len(responses.calls) == 1
