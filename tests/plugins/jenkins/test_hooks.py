"""Every hook of the Jenkins plugin called the way the core calls it: through pluggy, with the
plugin loaded from its entry point and configured from the bridge settings, against the
sandbox."""

from __future__ import annotations

import json
from typing import Any

import pytest

from itsm_bridge.models import JobRef, JobState, Release, TestSummary
from itsm_bridge.plugins import PluginHost, load_plugins
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge_sandbox.jenkins import JenkinsSandbox
from support import ManualClock

pytestmark = pytest.mark.integration
RID = "rel-20261128-0000abcd"
PARAMS = {"RELEASE_ID": RID, "SERVICE": "payments", "VERSION": "1.4.0", "CHANGE": ""}


@pytest.fixture
def host(jenkins_sandbox: JenkinsSandbox) -> PluginHost:
    return load_plugins(
        settings_from_mapping(
            {
                "plugins": {
                    "enabled": ["jenkins"],
                    "jenkins": {
                        "url": jenkins_sandbox.url,
                        "user": "sandbox",
                        "token": "sandbox",
                        "webhook_token": "hook-secret",
                        "max_builds": 20,
                    },
                },
                "services": {
                    "payments": {"jobs": {"build": "payments/build", "deploy": "payments/deploy"}}
                },
            }
        )
    )


def release() -> Release:
    return Release(id=RID, service="payments", version="1.4.0")


def test_hook_start_job(host: PluginHost, jenkins_sandbox: JenkinsSandbox) -> None:
    ref = host.hook.start_job(
        release=release(), purpose="build", params=PARAMS, first_attempt=False, superseded=[]
    )
    assert isinstance(ref, JobRef) and ref.system == "jenkins" and ref.queue_id == "1"
    again = host.hook.start_job(
        release=release(), purpose="build", params=PARAMS, first_attempt=False, superseded=[]
    )
    assert again == ref  # found in the queue, not triggered twice
    assert (
        host.hook.start_job(
            release=release(),
            purpose="smoke_test",
            params=PARAMS,
            first_attempt=False,
            superseded=[],
        )
        is None
    )
    assert len(jenkins_sandbox.requests_to("POST")) == 1


def test_hook_job_status(
    host: PluginHost, jenkins_sandbox: JenkinsSandbox, clock: ManualClock
) -> None:
    ref = host.hook.start_job(
        release=release(), purpose="build", params=PARAMS, first_attempt=False, superseded=[]
    )
    assert host.hook.job_status(job=ref).state == JobState.QUEUED
    clock.tick(5)
    status = host.hook.job_status(job=ref)
    assert status.state == JobState.SUCCEEDED
    assert status.tests == TestSummary(passed=42, failed=0, skipped=2)
    other = JobRef(system="gitlab", job="x", purpose="build", build_id="1")
    assert host.hook.job_status(job=other) is None


def test_hook_register_webhooks(host: PluginHost) -> None:
    registered: dict[str, Any] = {}
    host.hook.register_webhooks(register=lambda name, handler: registered.update({name: handler}))
    body = {
        "name": "build",
        "url": "job/payments/job/build/",
        "build": {
            "number": 3,
            "phase": "FINALIZED",
            "status": "FAILURE",
            "parameters": {"RELEASE_ID": RID},
        },
    }
    [event] = registered["jenkins"]({}, json.dumps(body).encode(), {"token": "hook-secret"})
    assert event["release_id"] == RID and event["kind"] == "job"


def test_hook_check_connection(host: PluginHost) -> None:
    checks = [c for answer in host.hook.check_connection() for c in answer]
    [jenkins] = [c for c in checks if c.plugin == "jenkins"]
    assert jenkins.ok and jenkins.detail.endswith("2 job(s) ready")
