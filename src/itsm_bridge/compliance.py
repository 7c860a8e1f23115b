"""The core's own compliance rules for step 7 (policy), and how their results are told.

Plugins add their findings through `evaluate_change` (the ITSM system's conflicts, its own
checks); these are the rules that hold whatever plugins are enabled: a back-out plan, the
build's test results against `policy.max_failed_tests` and `policy.require_tests`, and the
warning an emergency change always carries.
"""

from __future__ import annotations

from itsm_bridge.models import ACTOR, BuildInfo, Event, Finding, Release, ReleaseType
from itsm_bridge.settings import BridgeSettings


def core_findings(settings: BridgeSettings, release: Release) -> list[Finding]:
    """The policy's findings for a release; any blocker blocks it."""
    policy = settings.policy
    service = settings.services.get(release.service)
    findings = []
    if policy.require_backout_plan and not (service and service.jobs.rollback):
        findings.append(
            Finding(
                severity="blocker",
                source="policy",
                message=f"no back-out plan: set services.{release.service}.jobs.rollback "
                "or policy.require_backout_plan: false",
            )
        )
    findings += build_findings(settings, release.build)
    if release.type == ReleaseType.EMERGENCY:
        findings.append(
            Finding(
                severity="warning",
                source="policy",
                message=f"emergency change: {release.reason}",
            )
        )
    return findings


def build_findings(settings: BridgeSettings, build: BuildInfo | None) -> list[Finding]:
    """Failed tests beyond the policy block; a missing report warns, or blocks when the policy
    requires tests (as does a release with no build at all)."""
    policy = settings.policy
    if build is None:
        if not policy.require_tests:
            return []
        return [
            Finding(
                severity="blocker",
                source="policy",
                message="policy.require_tests: no build with test results (no CI plugin built "
                "the release); enable one, or set policy.require_tests: false",
            )
        ]
    tests = build.tests
    if tests is None:
        return [
            Finding(
                severity="blocker" if policy.require_tests else "warning",
                source="policy",
                message=f"build {build.label} has no test report"
                + ("; policy.require_tests is set" if policy.require_tests else ""),
                evidence={"build": build.label, "url": build.url or ""},
            )
        ]
    if tests.failed > policy.max_failed_tests:
        return [
            Finding(
                severity="blocker",
                source="policy",
                message=f"{tests.failed} failed test(s) in build {build.label}; policy allows "
                f"{policy.max_failed_tests}",
                evidence={"build": build.label, **tests.model_dump()},
            )
        ]
    return []


def tests_text(build: BuildInfo) -> str:
    """`; tests: 120 passed, 0 failed, 3 skipped` (or `; no test report`)."""
    if build.tests is None:
        return "; no test report"
    t = build.tests
    return f"; tests: {t.passed} passed, {t.failed} failed, {t.skipped} skipped"


def build_event(build: BuildInfo) -> Event:
    """The `build` event: the package the change deploys, and its test results."""
    artifacts = f"; {len(build.artifacts)} artifact(s)" if build.artifacts else ""
    return Event(
        actor=ACTOR,
        kind="build",
        message=f"build {build.label} {build.state.value}{tests_text(build)}{artifacts}",
        evidence={
            "job": build.job,
            "number": build.number,
            "url": build.url or "",
            "tests": build.tests.model_dump() if build.tests else None,
            "artifacts": build.artifacts,
        },
    )


def findings_event(found: list[Finding]) -> Event:
    """The `findings` event of an evaluation (step 7)."""
    blockers = sum(1 for f in found if f.severity == "blocker")
    lines = "; ".join(f"{f.severity}: {f.source}: {f.message}" for f in found)
    return Event(
        actor=ACTOR,
        kind="findings",
        message=f"{len(found)} finding(s), {blockers} blocker(s): {lines}",
        evidence={
            "findings": [
                {"severity": f.severity, "source": f.source, "message": f.message} for f in found
            ]
        },
    )
