"""The change's plans say only what is true: a job is named only when a plugin will run it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from itsm_bridge.models import Release
from itsm_bridge.settings import BridgeSettings, settings_from_mapping
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin, change

ALL_JOBS = {"deploy": "payments/deploy", "smoke_test": "payments/smoke",
            "rollback": "payments/rollback", "build": "payments/build"}  # fmt: skip


def bridge(**policy: Any) -> BridgeSettings:
    return settings_from_mapping({
        "services": {"payments": {
            "ci": "payments-api",
            "jobs": ALL_JOBS,
            "tasks": [
                {"name": "Start database", "group": "Database Administration", "after": "deploy"},
                {"name": "Stop database", "group": "Database Administration", "before": "deploy"},
                {"name": "Warm caches", "kind": "automated", "job": "payments/warm",
                 "after": "smoke_test"},
                {"name": "Tell support", "before": "smoke_test"},
            ],
        }},
        "policy": policy,
    })  # fmt: skip


def plans(release: Release, settings: BridgeSettings, group: str | None) -> dict[str, str]:
    service = settings.services["payments"]
    return {
        "implementation": change.implementation_plan(settings, release, group),
        "backout": change.backout_plan(settings, service, release, group),
        "test": change.test_plan(release, group),
    }


def test_without_a_job_runner_every_task_is_manual_with_its_group(
    make_release: Callable[..., Release],
) -> None:
    found = plans(make_release(jobs={}), bridge(), "Change Management")
    assert found["implementation"].splitlines() == [
        "1. Stop database (manual, Database Administration)",
        "2. Deploy (manual, Change Management)",
        "3. Start database (manual, Database Administration)",
        "4. Tell support (manual, Change Management)",
        "5. Smoke test (manual, Change Management)",
        "6. Warm caches (manual, Change Management)",
    ]
    for text in found.values():
        assert "payments/" not in text  # configured jobs that nobody runs are not named
        assert "job" not in text
    assert found["backout"].startswith("1. Roll back by hand to the last good version")
    assert 'change task "Roll back" for Change Management' in found["backout"]
    assert found["test"].startswith(
        'A manual smoke test follows the deployment (change task "Smoke test" for Change '
        "Management)."
    )


def test_with_a_job_runner_the_jobs_it_runs_are_named(
    make_release: Callable[..., Release],
) -> None:
    found = plans(make_release(jobs=ALL_JOBS), bridge(), None)
    assert found["implementation"].splitlines() == [
        "1. Stop database (manual, Database Administration)",
        "2. Deploy (job payments/deploy)",
        "3. Start database (manual, Database Administration)",
        "4. Tell support (manual)",  # no group anywhere: said so, no group invented
        "5. Smoke test (job payments/smoke)",
        "6. Warm caches (job payments/warm)",
    ]
    assert found["backout"].startswith("1. itsm-bridge runs the rollback job payments/rollback")
    assert "by hand" not in found["backout"]
    assert found["test"].startswith("Smoke test job payments/smoke runs after the deployment.")
    assert "(job payments/build)" in found["test"]


def test_only_the_purposes_a_plugin_runs_are_jobs(make_release: Callable[..., Release]) -> None:
    found = plans(make_release(jobs={"deploy": "payments/deploy"}), bridge(), "CM")
    assert "2. Deploy (job payments/deploy)" in found["implementation"]
    assert "5. Smoke test (manual, CM)" in found["implementation"]
    assert "6. Warm caches (job payments/warm)" in found["implementation"]  # a runner exists
    assert "payments/rollback" not in found["backout"]
    assert "payments/build" not in found["test"]


def test_no_rollback_configured_means_no_backout_plan_unless_the_policy_allows_it(
    make_release: Callable[..., Release],
) -> None:
    required, relaxed = bridge(), bridge(require_backout_plan=False)
    for settings in (required, relaxed):
        settings.services["payments"].jobs.rollback = None
    release = make_release(jobs={"deploy": "payments/deploy"})
    assert plans(release, required, "CM")["backout"] == ""  # a finding blocks the release
    assert plans(release, relaxed, "CM")["backout"].startswith("1. Roll back by hand")


@pytest.mark.integration
def test_a_servicenow_only_change_names_no_job(
    snow: ServiceNowSandbox,
    make_plugin: Callable[..., ServiceNowPlugin],
    make_release: Callable[..., Release],
) -> None:
    plugin = make_plugin()  # the conftest's service configures all four jobs
    ref = plugin.create_change(make_release(jobs={}), None)
    row = snow.record("change_request", ref.id)
    assert row["implementation_plan"].splitlines() == [
        "1. Deploy (manual, Change Management)",
        "2. Smoke test (manual, Change Management)",
    ]
    for field in ("implementation_plan", "backout_plan", "test_plan"):
        assert "job" not in row[field], field
    assert "Roll back by hand" in row["backout_plan"]
