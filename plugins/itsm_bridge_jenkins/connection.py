"""`check_connection`: one authenticated read of Jenkins, then one of each configured job, so
`itsm-bridge check-config --connect` tells an operator what would fail during a release.

The requests ("Remote access API"; each at most 10 seconds, never retried)::

    GET /api/json?tree=mode                       credentials and Overall/Read
    GET /job/<a>/job/<b>/api/json?tree=buildable,property[parameterDefinitions[name]]

Jenkins answers 401 for a wrong user or token (`BasicHeaderProcessor`), 403 for an anonymous
request or a user without Overall/Read, 404 for a job that does not exist or that the user may
not read. Every answer of Jenkins carries an `X-Jenkins` header with its version: a 200 without
it is not Jenkins (a proxy, a login page). A job must define the string parameter
`RELEASE_ID` (see `jobs.py`: without it a restarted bridge cannot recognise its builds).
Never the token in the detail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from itsm_bridge.http import redact
from itsm_bridge.models import ConnectionCheck
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_jenkins.client import JenkinsClient, jenkins_message, job_path
from itsm_bridge_jenkins.jobs import PURPOSES, SYSTEM

if TYPE_CHECKING:
    from itsm_bridge_jenkins import Settings

CHECK_TIMEOUT = 10.0
JOB_TREE = "buildable,property[parameterDefinitions[name]]"


def configured_jobs(bridge: BridgeSettings) -> list[str]:
    """Every job the services name (purposes and automated tasks), once each, in order."""
    jobs: list[str] = []
    for service in bridge.services.values():
        candidates = [getattr(service.jobs, p) for p in PURPOSES]
        candidates += [t.job for t in service.tasks if t.job]
        jobs += [j for j in candidates if j and j not in jobs]
    return jobs


def check(client: JenkinsClient, config: Settings, bridge: BridgeSettings) -> ConnectionCheck:
    """Reach Jenkins and each configured job once; never raises for HTTP or network faults."""
    timeout = min(CHECK_TIMEOUT, config.timeout_seconds)

    def answer(ok: bool, detail: str, status: int | None = None) -> ConnectionCheck:
        text = redact(detail, config.token)
        return ConnectionCheck(
            plugin=SYSTEM, system=SYSTEM, url=client.base_url, ok=ok, status=status, detail=text
        )

    try:
        response = client.probe("/api/json", timeout, tree="mode")
    except requests.Timeout:
        return answer(False, f"unreachable: no answer within {timeout:g} s")
    except requests.RequestException as exc:
        return answer(False, f"unreachable: {type(exc).__name__}: {str(exc)[:200]}")
    status = response.status_code
    if status == 401:
        return answer(False, "wrong user or API token; check plugins.jenkins.user/token", status)
    if status == 403:
        return answer(
            False,
            f"{config.user} may not read Jenkins (Overall/Read); give the user read access",
            status,
        )
    if status != 200 or "X-Jenkins" not in response.headers:
        reason = jenkins_message(response) or response.reason
        return answer(
            False, f"not Jenkins' API ({reason}); is plugins.jenkins.url the root URL?", status
        )
    version = response.headers["X-Jenkins"]
    problems = [
        p for p in (check_job(client, job, timeout) for job in configured_jobs(bridge)) if p
    ]
    if problems:
        return answer(False, f"Jenkins {version}, as {config.user}; " + "; ".join(problems), 200)
    count = len(configured_jobs(bridge))
    return answer(True, f"Jenkins {version}, as {config.user}; {count} job(s) ready", 200)


def check_job(client: JenkinsClient, job: str, timeout: float) -> str | None:
    """What is wrong with one job, or None."""
    try:
        response = client.probe(job_path(job) + "api/json", timeout, tree=JOB_TREE)
    except requests.RequestException as exc:
        return f"{job}: unreachable ({type(exc).__name__})"
    if response.status_code == 404:
        return f"{job}: not found (or not readable by the user)"
    if response.status_code != 200:
        return f"{job}: HTTP {response.status_code} {jenkins_message(response)[:80]}"
    try:
        document = response.json()
    except ValueError:
        return f"{job}: the answer is not JSON"
    names = {
        str(d.get("name"))
        for prop in document.get("property") or []
        for d in (prop or {}).get("parameterDefinitions") or []
        if isinstance(d, dict)
    }
    if "RELEASE_ID" not in names:
        return f"{job}: no RELEASE_ID parameter (add RELEASE_ID, SERVICE, VERSION, CHANGE)"
    if document.get("buildable") is False:
        return f"{job}: disabled"
    return None
