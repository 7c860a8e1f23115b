"""The typed objects that cross the hook boundary.

Plugins receive and return these; the core persists them. All datetimes are timezone-aware
UTC. The models are pydantic so that they serialise to the JSON of the contract unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from itsm_bridge.windows import Freeze, Slot, Window

__all__ = [
    "Approval",
    "Attachment",
    "BacklogItem",
    "BuildInfo",
    "ChangeRef",
    "ConfigurationItem",
    "ConnectionCheck",
    "Delivery",
    "Event",
    "ExternalRecord",
    "Finding",
    "Freeze",
    "Impact",
    "JobRef",
    "JobState",
    "JobStatus",
    "Notice",
    "PostMortemReport",
    "Release",
    "ReleaseNotes",
    "ReleaseState",
    "ReleaseType",
    "Signal",
    "Slot",
    "StepStatus",
    "StepSummary",
    "Task",
    "TaskSpec",
    "TaskStatus",
    "TestSummary",
    "Window",
    "WorkItem",
    "utcnow",
]


ACTOR = "itsm-bridge"  # who the bridge itself is in the audit trail


def utcnow() -> datetime:
    """Now, timezone-aware UTC (the only clock the core reads)."""
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return value.astimezone(UTC) if value is not None else None


class ReleaseType(StrEnum):
    NORMAL = "normal"
    STANDARD = "standard"
    EMERGENCY = "emergency"


class ReleaseState(StrEnum):
    PLANNED = "planned"
    SCHEDULED = "scheduled"
    IMPLEMENTING = "implementing"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    EARLY_LIFE_SUPPORT = "early_life_support"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    CLOSED = "closed"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class ExternalRecord(_Model):
    """A record in another system that the bridge created or follows."""

    system: str
    kind: str
    id: str
    number: str | None = None
    url: str | None = None
    key: str | None = Field(default=None, description="the bridge-side key it belongs to")


class ChangeRef(ExternalRecord):
    """The change record of a release (step 6)."""

    kind: str = "change_request"
    state: str | None = None


class Approval(_Model):
    """The approval decision for a release's change."""

    status: Literal["pending", "approved", "rejected"]
    by: str = ""
    comment: str = ""
    at: datetime | None = None


class Release(_Model):
    """One service at one version moving through the process."""

    id: str
    service: str
    version: str
    name: str = ""
    type: ReleaseType = ReleaseType.NORMAL
    major: bool = False
    state: ReleaseState = ReleaseState.PLANNED
    not_before: datetime | None = None
    duration: timedelta = timedelta(hours=1)
    reason: str = ""
    window_start: datetime | None = None
    window_end: datetime | None = None
    deploy_started_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    records: list[ExternalRecord] = Field(default_factory=list)
    approval: Approval | None = None
    scope: list[BacklogItem] = Field(default_factory=list)
    impact: Impact | None = None
    failure_reason: str = ""
    build: BuildInfo | None = None
    service_levels: dict[str, str] = Field(
        default_factory=dict,
        description="what the release prescribes for its service (e.g. availability, support "
        "hours): the service's configured values, overridden by the release request's",
    )
    jobs: dict[str, str] = Field(
        default_factory=dict,
        description="purpose -> CI/CD job, only for the purposes a plugin will run "
        "(set by the core before the change is created; empty: every task is manual)",
    )

    _check_times = field_validator(
        "not_before", "window_start", "window_end", "deploy_started_at", "created_at"
    )(_aware)

    @property
    def title(self) -> str:
        """The one-line name used in records: "<service> <version>: <name>"."""
        return f"{self.service} {self.version}: {self.name or 'release'}"

    def record(
        self, system: str | None, kind: str, key: str | None = None
    ) -> ExternalRecord | None:
        """The first external record of that kind (and system, and key), if any."""
        for rec in self.records:
            if (
                rec.kind == kind
                and (system is None or rec.system == system)
                and (key is None or rec.key == key)
            ):
                return rec
        return None


class WorkItem(_Model):
    """A demand or problem that should become backlog work (steps 1-2)."""

    source_system: str
    source_kind: Literal["demand", "problem"]
    source_id: str
    number: str
    title: str
    description: str = ""
    url: str | None = None
    service: str | None = None
    updated_at: datetime | None = None

    @property
    def source_key(self) -> str:
        """The idempotency key that ties a backlog issue to this record."""
        return f"{self.source_system}:{self.source_kind}:{self.number}"


class BacklogItem(_Model):
    """An issue in the backlog (step 3): what a release contains and returns on rollback."""

    system: str
    key: str
    summary: str
    status: str = ""
    kind: str = ""
    url: str | None = None


class Finding(_Model):
    """One result of evaluating a change (step 7). Any `blocker` blocks the release."""

    severity: Literal["blocker", "warning", "info"]
    source: str
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class ConfigurationItem(_Model):
    id: str
    name: str
    cls: str = ""
    system: str = "config"


class Impact(_Model):
    """Affected CIs and impacted services of a release (step 8)."""

    cis: list[ConfigurationItem] = Field(default_factory=list)
    services: list[ConfigurationItem] = Field(default_factory=list)

    def merged(self, other: Impact) -> Impact:
        def union(
            a: list[ConfigurationItem], b: list[ConfigurationItem]
        ) -> list[ConfigurationItem]:
            seen = {(ci.system, ci.id) for ci in a}
            return a + [ci for ci in b if (ci.system, ci.id) not in seen]

        return Impact(cis=union(self.cis, other.cis), services=union(self.services, other.services))


class TaskSpec(_Model):
    """A release task (step 9) before it exists anywhere.

    `kind` manual waits for a person (or its record being closed); automated starts the job
    for `purpose` (deploy, smoke_test, or a custom job name in `job`).
    """

    key: str
    name: str
    kind: Literal["manual", "automated"] = "manual"
    group: str | None = None
    order: int = 0
    purpose: str | None = None
    job: str | None = None


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Task(TaskSpec):
    status: TaskStatus = TaskStatus.PENDING
    record: ExternalRecord | None = None
    note: str = ""


class JobRef(_Model):
    """A job the bridge started (queue item or build) in a CI/CD system."""

    system: str
    job: str
    purpose: str
    queue_id: str | None = None
    build_id: str | None = None
    url: str | None = None


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    UNSTABLE = "unstable"
    FAILED = "failed"
    ABORTED = "aborted"


class TestSummary(_Model):
    """The counts of a build's test report."""

    __test__ = False  # not a pytest test class
    passed: int = 0
    failed: int = 0
    skipped: int = 0


class JobStatus(_Model):
    """What a CI/CD system says of a job: its state and, once it ran, its build's facts."""

    state: JobState
    job: JobRef
    tests: TestSummary | None = Field(
        default=None, description="the build's test report; None when it has none"
    )
    detail: str = ""
    number: int | None = None
    url: str | None = None
    duration_seconds: float | None = None
    artifacts: list[str] = Field(default_factory=list, description="artifact URLs")

    @property
    def finished(self) -> bool:
        return self.state not in (JobState.QUEUED, JobState.RUNNING)


class BuildInfo(_Model):
    """Step 4's result, the build package: recorded on the release and named in the change."""

    system: str
    job: str
    state: JobState
    number: int | None = None
    url: str | None = None
    tests: TestSummary | None = None
    artifacts: list[str] = Field(default_factory=list)

    @classmethod
    def from_status(cls, status: JobStatus) -> BuildInfo:
        return cls(
            system=status.job.system,
            job=status.job.job,
            state=status.state,
            number=status.number,
            url=status.url or status.job.url,
            tests=status.tests,
            artifacts=status.artifacts,
        )

    @property
    def label(self) -> str:
        """`payments/build #42`."""
        return f"{self.job} #{self.number}" if self.number is not None else self.job


class Signal(_Model):
    """Evidence that a deployed release is failing (step 13)."""

    source: str
    key: str
    severity: Literal["critical", "warning", "info"] = "critical"
    summary: str
    at: datetime
    service: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)

    _check_at = field_validator("at")(_aware)


class ReleaseNotes(_Model):
    title: str
    markdown: str
    html: str = ""
    items: list[BacklogItem] = Field(default_factory=list)


class ConnectionCheck(_Model):
    """The answer of one system to `itsm-bridge check-config --connect`."""

    plugin: str
    system: str
    url: str
    ok: bool
    status: int | None = None
    detail: str = ""


class StepSummary(_Model):
    """One step of a release as the post-mortem reports it."""

    number: int
    name: str
    status: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    detail: str = ""

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class PostMortemReport(_Model):
    """What step 16 knows of a release, for the post-mortem document (`post_mortem`).

    `timeline` is the whole audit trail, oldest first; `steps` the 18 steps with their
    times; `failure_evidence` what failed it (signals, the task, who asked); `rolled_back_to`
    the version the rollback restored; `follow_ups` the actions the core lists (each becomes
    a backlog item when a backlog plugin is enabled).
    """

    timeline: list[Event]
    steps: list[StepSummary]
    failure_evidence: dict[str, Any] = Field(default_factory=dict)
    rolled_back_to: str = ""
    follow_ups: list[str] = Field(default_factory=list)


class Attachment(_Model):
    """A file sent with a notice (e.g. the post-mortem meeting's .ics invitation)."""

    filename: str
    content_type: str
    content: str


class Notice(_Model):
    """What the stakeholders are told (step 15, early life support, the post-mortem).

    `kind`: succeeded, rolled_back, els_started, els_incident, els_ended, post_mortem.
    `recipients` are the service's stakeholders (`services.<name>.stakeholders`); `text` is
    the plain-text body, `html` the same as HTML (with the release notes); `notes` the notes
    themselves for a channel that renders its own layout.
    """

    kind: Literal[
        "succeeded", "rolled_back", "els_started", "els_incident", "els_ended", "post_mortem"
    ]
    subject: str
    text: str
    html: str = ""
    recipients: list[str] = Field(default_factory=list)
    notes: ReleaseNotes | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    attachments: list[Attachment] = Field(default_factory=list)


class Delivery(_Model):
    """One channel's delivery of a notice: recorded on the release, never failing it."""

    channel: str  # e.g. "email", "slack", "teams", "log"
    target: str  # recipients or a redacted URL, never a secret
    ok: bool
    detail: str = ""
    attempts: int = 1


class Event(_Model):
    """One entry of a release's audit trail."""

    at: datetime = Field(default_factory=utcnow)
    actor: str
    kind: str
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)


Release.model_rebuild()
PostMortemReport.model_rebuild()
