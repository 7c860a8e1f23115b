"""Loading the `jenkins:` part of the sandbox seed into a `JenkinsModel`.

Format (see the `jenkins:` part of config/sandbox-seed.yaml)::

    jenkins:
      user: sandbox            # optional: credentials (constructor arguments otherwise)
      password: sandbox
      api_token: sandbox       # optional, defaults to the password
      quiet_period: 0.2        # default queue delay (seconds) of every job
      duration: 0.5            # default build duration (seconds)
      notify_url: http://...   # optional Notification plugin endpoint for every job, or
      notifications: [{url, event: all, log: 0, notes: "", headers: {}, retries: 0}]
      jobs:
        - name: payments/build           # folders are created from the path
          type: pipeline                 # or freestyle
          description: ...
          parameters: [RELEASE_ID, {name: SERVICE, default: payments, description: ...}]
          result: SUCCESS                # SUCCESS | UNSTABLE | FAILURE | ABORTED | NOT_BUILT
          duration: 1.0
          queue_delay: 0.2
          tests: {passed: 42, failed: 0, skipped: 2}   # omit: the build records no tests
          artifacts: ["dist/payments-{VERSION}.tar.gz"]  # archived files; {NAME}: a parameter
          log: ["extra console line", ...]
          rules:                         # the first rule whose `when` matches the build's
            - when: {VERSION: "1.1.0"}   # parameters replaces these keys of the outcome:
              result: FAILURE            # result, duration, tests, queue_delay, artifacts
              tests: {passed: 10, failed: 2}
          disabled: false
          notify_url: ...                # or notifications: [...]; replaces the global ones
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from itsm_bridge_sandbox.jenkins.model import (
    Endpoint,
    JenkinsModel,
    Outcome,
    ParamDef,
    Rule,
    TestSpec,
)

TOP_KEYS = {
    "user",
    "password",
    "api_token",
    "quiet_period",
    "duration",
    "notify_url",
    "notifications",
    "jobs",
}
JOB_KEYS = {
    "name",
    "type",
    "description",
    "parameters",
    "result",
    "duration",
    "queue_delay",
    "tests",
    "artifacts",
    "log",
    "disabled",
    "notify_url",
    "notifications",
    "rules",
}
RULE_KEYS = {"when", "result", "duration", "tests", "queue_delay", "artifacts"}
KINDS = ("pipeline", "freestyle")


def section(seed: dict[str, Any] | None) -> dict[str, Any]:
    """The Jenkins part of a seed: accepts the whole seed (`{jenkins: ...}`) or the part."""
    if not seed:
        return {}
    part = seed.get("jenkins", seed) if isinstance(seed, dict) else None
    if not isinstance(part, dict):
        raise ValueError("jenkins seed must be a mapping")
    return part


def endpoints(spec: dict[str, Any], where: str) -> list[Endpoint]:
    found: list[Endpoint] = []
    if spec.get("notify_url"):
        found.append(Endpoint(str(spec["notify_url"])))
    for entry in spec.get("notifications") or []:
        try:
            found.append(Endpoint.from_value(entry))
        except ValueError as exc:
            raise ValueError(f"{where}.notifications: {exc}") from exc
    return found


def rules(spec: dict[str, Any], base: Outcome, where: str) -> list[Rule]:
    """The job's `rules`: each overrides some keys of the job's outcome for the builds whose
    parameters match `when`."""
    found: list[Rule] = []
    for index, entry in enumerate(spec.get("rules") or []):
        at = f"{where}.rules[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("when"), dict):
            raise ValueError(f"{at}: a rule is {{when: {{PARAMETER: value}}, result: ...}}")
        unknown = set(entry) - RULE_KEYS
        if unknown:
            raise ValueError(f"{at}: unknown keys {sorted(unknown)}; known: {sorted(RULE_KEYS)}")
        changes: dict[str, Any] = {}
        if "result" in entry:
            changes["result"] = str(entry["result"])
        if "duration" in entry:
            changes["duration"] = float(entry["duration"])
        if "queue_delay" in entry:
            changes["queue_delay"] = float(entry["queue_delay"])
        if "tests" in entry:
            changes["tests"] = TestSpec.from_value(entry["tests"])
        if "artifacts" in entry:
            changes["artifacts"] = tuple(str(a) for a in entry["artifacts"] or ())
        try:
            outcome = replace(base, **changes)
        except ValueError as exc:
            raise ValueError(f"{at}: {exc}") from exc
        when = tuple((str(k), str(v)) for k, v in entry["when"].items())
        found.append(Rule(when, outcome))
    return found


def load(model: JenkinsModel, seed: dict[str, Any] | None) -> dict[str, Any]:
    """Create the seeded jobs; returns the section (for credentials)."""
    spec = section(seed)
    unknown = set(spec) - TOP_KEYS
    if unknown:
        raise ValueError(f"jenkins seed: unknown keys {sorted(unknown)}; known: {sorted(TOP_KEYS)}")
    quiet = float(spec.get("quiet_period", 0.2))
    duration = float(spec.get("duration", 0.5))
    model.endpoints = endpoints(spec, "jenkins")
    for index, job in enumerate(spec.get("jobs") or []):
        where = f"jenkins.jobs[{index}]"
        if not isinstance(job, dict) or "name" not in job:
            raise ValueError(f"{where}: a job needs a name")
        unknown = set(job) - JOB_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(JOB_KEYS)}")
        kind = str(job.get("type", "pipeline"))
        if kind not in KINDS:
            raise ValueError(f"{where}.type must be one of {KINDS}, got {kind!r}")
        try:
            outcome = Outcome(
                result=str(job.get("result", "SUCCESS")),
                duration=float(job.get("duration", duration)),
                tests=TestSpec.from_value(job.get("tests")),
                queue_delay=float(job.get("queue_delay", quiet)),
                log=tuple(str(line) for line in job.get("log") or ()),
                artifacts=tuple(str(a) for a in job.get("artifacts") or ()),
            )
            params = [ParamDef.from_value(p) for p in job.get("parameters") or []]
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        created = model.add_job(
            str(job["name"]),
            kind=kind,
            parameters=params,
            outcome=outcome,
            endpoints=endpoints(job, where),
            disabled=bool(job.get("disabled", False)),
            description=job.get("description"),
        )
        created.rules = rules(job, outcome, where)
    return spec
