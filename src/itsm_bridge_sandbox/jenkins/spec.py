"""What the sandbox's jobs are configured to do: parameters, scripted outcomes, the rules that
pick an outcome from a build's parameters, and Notification plugin endpoints.

Split from `model.py` (which re-exports these names) to keep modules small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESULTS = ("SUCCESS", "UNSTABLE", "FAILURE", "ABORTED", "NOT_BUILT")
PHASES = ("QUEUED", "STARTED", "COMPLETED", "FINALIZED")


@dataclass(frozen=True)
class TestSpec:
    """How many test cases a build reports (a JUnit report is synthesised from these counts)."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped

    @classmethod
    def from_value(cls, value: Any) -> TestSpec | None:
        if value is None or value is False:
            return None
        if isinstance(value, TestSpec):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"tests must be a mapping of passed/failed/skipped, got {value!r}")
        unknown = set(value) - {"passed", "failed", "skipped"}
        if unknown:
            raise ValueError(f"unknown keys in tests: {sorted(unknown)}")
        return cls(
            int(value.get("passed", 0)), int(value.get("failed", 0)), int(value.get("skipped", 0))
        )


@dataclass(frozen=True)
class Outcome:
    """What a build will do: its result, how long it runs, its tests and its quiet period."""

    result: str = "SUCCESS"
    duration: float = 0.5
    tests: TestSpec | None = None
    queue_delay: float = 0.2
    log: tuple[str, ...] = ()
    #: archived file names; `{NAME}` is replaced by the build's parameter NAME
    artifacts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS}, got {self.result!r}")
        if self.duration < 0 or self.queue_delay < 0:
            raise ValueError("duration and queue_delay must not be negative")


@dataclass
class ParamDef:
    """A string parameter definition (`hudson.model.StringParameterDefinition`)."""

    name: str
    default: str = ""
    description: str | None = None

    @classmethod
    def from_value(cls, value: Any) -> ParamDef:
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict) and "name" in value:
            default = value.get("default", "")
            return cls(
                str(value["name"]),
                "" if default is None else str(default),
                value.get("description"),
            )
        raise ValueError(f"a parameter is a name or {{name, default, description}}: {value!r}")


@dataclass
class Endpoint:
    """One Notification plugin endpoint (`com.tikal.hudson.plugins.notification.Endpoint`).

    `event` is the plugin's filter: all, started, completed, finalized, failed. `log` is the
    number of console lines to include (-1: all). `headers` is a sandbox extension (the real
    plugin sends only `Content-Type` and, when the URL has user info, `Authorization: Basic`).
    """

    url: str
    event: str = "all"
    log: int = 0
    notes: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    timeout: float = 5.0

    @classmethod
    def from_value(cls, value: Any) -> Endpoint:
        if isinstance(value, Endpoint):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict) and "url" in value:
            return cls(
                str(value["url"]),
                str(value.get("event", "all")),
                int(value.get("log", 0)),
                str(value.get("notes", "")),
                dict(value.get("headers") or {}),
                int(value.get("retries", 0)),
                float(value.get("timeout", 5.0)),
            )
        raise ValueError(f"a notification endpoint is a URL or {{url, ...}}: {value!r}")


@dataclass(frozen=True)
class Rule:
    """A seeded rule: a build whose parameters include every `when` pair gets `outcome`.

    The demo uses one to make the smoke test of one version fail (`when: {VERSION: 1.1.0}`).
    A script (`script_next`) wins over rules; the first matching rule wins over the job's
    default outcome.
    """

    when: tuple[tuple[str, str], ...]
    outcome: Outcome

    def matches(self, params: dict[str, str]) -> bool:
        return all(params.get(name) == value for name, value in self.when)


def artifact_names(outcome: Outcome, params: dict[str, str]) -> list[str]:
    """The outcome's artifact names with `{NAME}` replaced by the build's parameters."""
    names = []
    for pattern in outcome.artifacts:
        name = pattern
        for key, value in params.items():
            name = name.replace("{" + key + "}", value)
        names.append(name)
    return names
