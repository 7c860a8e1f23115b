"""`check_connection` (`itsm-bridge check-config --connect`): Jenkins reached with the
credentials, then every configured job, each once, never the token in the answer."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import responses

from itsm_bridge_jenkins import JenkinsPlugin

URL = "https://ci.example.com"
TOKEN = "11aa22bb33cc44dd-api-token"
ROOT = URL + "/api/json"
JOBS = [
    "payments/build",
    "payments/deploy",
    "payments/smoke",
    "payments/rollback",
    "ops/warm-caches",
]


def job_api(job: str) -> str:
    return URL + "".join(f"/job/{n}" for n in job.split("/")) + "/api/json"


def ready(*names: str) -> dict[str, Any]:
    return {
        "buildable": True,
        "property": [{"parameterDefinitions": [{"name": n} for n in names or ("RELEASE_ID",)]}],
    }


def jenkins_root(**kwargs: Any) -> None:
    responses.get(ROOT, json={"mode": "NORMAL"}, headers={"X-Jenkins": "2.440.3"}, **kwargs)


@responses.activate
def test_jenkins_and_every_job_ready(plugin: JenkinsPlugin) -> None:
    jenkins_root()
    for job in JOBS:
        responses.get(job_api(job), json=ready())
    [check] = plugin.check_connection()
    assert check.ok and check.status == 200
    assert (check.plugin, check.system, check.url) == ("jenkins", "jenkins", URL)
    assert check.detail == "Jenkins 2.440.3, as bridge; 5 job(s) ready"
    assert len(responses.calls) == 1 + len(JOBS)  # each job once
    assert all(c.request.req_kwargs["timeout"] == (5.0, 10.0) for c in responses.calls)
    assert "tree=mode" in responses.calls[0].request.url


@responses.activate
def test_jobs_that_would_fail_a_release_are_named(plugin: JenkinsPlugin) -> None:
    jenkins_root()
    responses.get(job_api("payments/build"), json=ready("VERSION"))
    responses.get(job_api("payments/deploy"), status=404)
    responses.get(job_api("payments/smoke"), json={**ready(), "buildable": False})
    responses.get(job_api("payments/rollback"), json=ready())
    responses.get(job_api("ops/warm-caches"), body=requests.ConnectTimeout("slow"))
    [check] = plugin.check_connection()
    assert not check.ok
    assert check.detail == (
        "Jenkins 2.440.3, as bridge; payments/build: no RELEASE_ID parameter (add RELEASE_ID, "
        "SERVICE, VERSION, CHANGE); payments/deploy: not found (or not readable by the user); "
        "payments/smoke: disabled; ops/warm-caches: unreachable (ConnectTimeout)"
    )


@pytest.mark.parametrize(
    ("status", "headers", "words"),
    [
        (401, {"X-Jenkins": "2.440.3"}, "wrong user or API token"),
        (403, {"X-Jenkins": "2.440.3"}, "bridge may not read Jenkins (Overall/Read)"),
        (404, {}, "is plugins.jenkins.url the root URL?"),
        (200, {}, "not Jenkins' API"),  # a proxy's page: no X-Jenkins header
    ],
)
@responses.activate
def test_what_is_wrong_with_the_server(
    plugin: JenkinsPlugin, status: int, headers: dict[str, str], words: str
) -> None:
    responses.get(ROOT, status=status, headers=headers, body=f"<title>{TOKEN}</title>")
    [check] = plugin.check_connection()
    assert not check.ok and check.status == status
    assert words in check.detail
    assert TOKEN not in check.detail
    assert len(responses.calls) == 1  # never retried, jobs not asked


@responses.activate
def test_an_unreachable_server(plugin: JenkinsPlugin) -> None:
    responses.get(ROOT, body=requests.ReadTimeout("slow"))
    [check] = plugin.check_connection()
    assert not check.ok and check.detail == "unreachable: no answer within 10 s"
    responses.replace(responses.GET, ROOT, body=requests.ConnectionError("refused"))
    [check] = plugin.check_connection()
    assert check.detail.startswith("unreachable: ConnectionError: refused")
