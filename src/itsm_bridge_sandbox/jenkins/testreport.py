"""Synthetic JUnit reports and console logs for scripted builds.

The report has the shape of `hudson.tasks.junit.TestResult` as exported at
`/job/.../<n>/testReport/api/json` (what python-jenkins' `get_build_test_report` returns):
`duration` (seconds, float), `empty`, `failCount`, `passCount`, `skipCount`, `suites` of
`SuiteResult` (`name`, `duration`, `cases`, ...) whose `CaseResult`s carry `className`, `name`,
`status`, `duration`, `errorDetails`, `errorStackTrace`, `age`, `failedSince`, `skipped`.
`CaseResult.Status` is PASSED, SKIPPED, FAILED, FIXED (passes now, failed in the previous build)
or REGRESSION (fails now, passed in the previous build); the previous build's report decides.
Case names are stable across builds of a job (case i of the job is always the same test), the
first `failed` cases fail and the next `skipped` are skipped.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from itsm_bridge_sandbox.jenkins.model import Build

CASES_PER_SUITE = 10
CASE_SECONDS = 0.012


def _package(full_name: str) -> str:
    return "com.acme." + ".".join(re.sub(r"\W", "_", p).lower() for p in full_name.split("/"))


def _previous_cases(build: Build) -> dict[tuple[str, str], dict[str, Any]]:
    for number in sorted(build.job.builds, reverse=True):
        prior = build.job.builds[number]
        if number < build.number and prior.test_report is not None:
            return {
                (c["className"], c["name"]): c
                for s in prior.test_report["suites"]
                for c in s["cases"]
            }
    return {}


def make_report(build: Build) -> dict[str, Any] | None:
    """The report of a completed build, or None when it ran no tests."""
    spec = build.outcome.tests
    if spec is None:
        return None
    previous = _previous_cases(build)
    package = _package(build.job.full_name)
    stamp = datetime.fromtimestamp(build.started, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    suites: list[dict[str, Any]] = []
    for index in range(spec.total):
        suite_no = index // CASES_PER_SUITE + 1
        class_name = f"{package}.Suite{suite_no}Test"
        if not suites or suites[-1]["name"] != class_name:
            suites.append(
                {
                    "cases": [],
                    "duration": 0.0,
                    "enclosingBlockNames": [],
                    "enclosingBlocks": [],
                    "id": None,
                    "name": class_name,
                    "nodeId": None,
                    "stderr": None,
                    "stdout": None,
                    "timestamp": stamp,
                }
            )
        name = f"test{index + 1:03d}"
        failed = index < spec.failed
        skipped = not failed and index < spec.failed + spec.skipped
        before = previous.get((class_name, name))
        was_failing = before is not None and before["status"] in ("FAILED", "REGRESSION")
        if failed:
            status = "REGRESSION" if before is not None and not was_failing else "FAILED"
            age = (before["age"] + 1) if was_failing and before else 1
            failed_since = before["failedSince"] if was_failing and before else build.number
        else:
            status = "SKIPPED" if skipped else ("FIXED" if was_failing else "PASSED")
            age, failed_since = 0, 0
        duration = 0.0 if skipped else CASE_SECONDS
        suites[-1]["duration"] = round(suites[-1]["duration"] + duration, 3)
        suites[-1]["cases"].append(
            {
                "testActions": [],
                "age": age,
                "className": class_name,
                "duration": duration,
                "errorDetails": "expected:<200> but was:<500>" if failed else None,
                "errorStackTrace": (
                    f"java.lang.AssertionError: expected:<200> but was:<500>\n"
                    f"\tat {class_name}.{name}({class_name.rsplit('.', 1)[-1]}"
                    f".java:{40 + index})\n"
                )
                if failed
                else None,
                "failedSince": failed_since,
                "name": name,
                "skipped": skipped,
                "skippedMessage": "disabled in sandbox" if skipped else None,
                "status": status,
                "stderr": None,
                "stdout": None,
            }
        )
    return {
        "_class": "hudson.tasks.junit.TestResult",
        "testActions": [],
        "duration": round(sum(s["duration"] for s in suites), 3),
        "empty": spec.total == 0,
        "failCount": spec.failed,
        "passCount": spec.passed,
        "skipCount": spec.skipped,
        "suites": suites,
    }


def console_text(build: Build, user: str) -> str:
    """A plausible pipeline (or freestyle) console log; 'Finished: X' once completed."""
    job = build.job
    lines = [f"Started by user {user}"]
    workspace = f"/var/jenkins_home/workspace/{job.full_name}"
    if job.kind == "pipeline":
        lines += [
            "[Pipeline] Start of Pipeline",
            "[Pipeline] node",
            f"Running on Jenkins in {workspace}",
            "[Pipeline] {",
        ]
    else:
        lines += [f"Running as SYSTEM\nBuilding in workspace {workspace}"]
    lines += [f"{name}={value}" for name, value in build.params]
    lines += list(build.outcome.log)
    report = build.test_report
    if report is not None:
        total = report["passCount"] + report["failCount"] + report["skipCount"]
        lines.append(
            f"Recording test results\n[Checks API] No suitable checks publisher found.\n"
            f"Tests run: {total}, Failures: {report['failCount']}, "
            f"Skipped: {report['skipCount']}"
        )
    if build.result is None:
        return "\n".join(lines) + "\n"
    if build.aborted_by:
        lines.append(f"Aborted by {build.aborted_by}")
    if job.kind == "pipeline":
        lines += ["[Pipeline] }", "[Pipeline] // node", "[Pipeline] End of Pipeline"]
    lines.append(f"Finished: {build.result}")
    return "\n".join(lines) + "\n"
