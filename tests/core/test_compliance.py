"""The policy's own findings (step 7): back-out plan, test results, emergencies."""

from __future__ import annotations

from typing import Any

import pytest

from itsm_bridge.compliance import build_event, build_findings, core_findings
from itsm_bridge.models import BuildInfo, JobState, Release, TestSummary
from itsm_bridge.settings import settings_from_mapping

JOBS = {"jobs": {"rollback": "payments/rollback"}}


def settings(**policy: Any) -> Any:
    return settings_from_mapping({"services": {"payments": JOBS}, "policy": policy})


def build(tests: TestSummary | None) -> BuildInfo:
    return BuildInfo(
        system="jenkins",
        job="payments/build",
        state=JobState.SUCCEEDED,
        number=42,
        url="https://ci/job/payments/job/build/42/",
        tests=tests,
    )


@pytest.mark.parametrize(
    ("policy", "tests", "expected"),
    [
        ({}, TestSummary(passed=10), []),
        ({}, TestSummary(passed=9, failed=1), [("blocker", "1 failed test(s) in build")]),
        ({"max_failed_tests": 1}, TestSummary(passed=9, failed=1), []),
        ({"max_failed_tests": 1}, TestSummary(failed=2), [("blocker", "2 failed test(s)")]),
        ({}, None, [("warning", "build payments/build #42 has no test report")]),
        (
            {"require_tests": True},
            None,
            [("blocker", "build payments/build #42 has no test report; policy")],
        ),
    ],
)
def test_the_build_s_tests_against_the_policy(
    policy: dict[str, Any], tests: TestSummary | None, expected: list[tuple[str, str]]
) -> None:
    found = build_findings(settings(**policy), build(tests))
    assert [
        (f.severity, f.message[: len(text)]) for f, (_, text) in zip(found, expected, strict=True)
    ] == expected


def test_without_any_build_only_a_policy_that_requires_tests_blocks() -> None:
    assert build_findings(settings(), None) == []
    (blocker,) = build_findings(settings(require_tests=True), None)
    assert blocker.severity == "blocker" and "no build with test results" in blocker.message


def test_core_findings_of_an_emergency_without_a_back_out_plan() -> None:
    bare = settings_from_mapping({"services": {"payments": {}}})
    release = Release(id="r", service="payments", version="1", type="emergency", reason="outage")
    found = core_findings(bare, release)
    assert [(f.severity, f.message.split(":")[0]) for f in found] == [
        ("blocker", "no back-out plan"),
        ("warning", "emergency change"),
    ]


def test_the_build_event_names_the_package_and_its_results() -> None:
    event = build_event(build(TestSummary(passed=120, failed=0, skipped=3)))
    assert event.kind == "build"
    assert (
        event.message
        == "build payments/build #42 succeeded; tests: 120 passed, 0 failed, 3 skipped"
    )
    assert event.evidence["url"] == "https://ci/job/payments/job/build/42/"
