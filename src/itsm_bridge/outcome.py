"""What a step handler returns: everything one step changed, committed in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from itsm_bridge.models import (
    Event,
    ExternalRecord,
    JobRef,
    Release,
    ReleaseState,
    Task,
)
from itsm_bridge.store import StepRow


@dataclass
class StepContext:
    """A step's inputs: the release as committed, its step row, tasks, their jobs, core data."""

    release: Release
    step: StepRow
    tasks: list[Task]
    core: dict[str, Any]
    now: datetime
    jobs: dict[str, JobRef] = field(default_factory=dict)  # the job of each automated task
    steps: list[StepRow] = field(default_factory=list)  # every step of the release
    # Keys of the tasks this run of `Process.advance` created (committed) and whose job it has
    # not asked a plugin to start yet: nothing can have started them, so their first start
    # skips the look for an earlier one (`start_job(first_attempt=True)`). Shared by the
    # steps of one run, taken (removed) by the start.
    unstarted: set[str] = field(default_factory=set)


@dataclass
class Outcome:
    """The result of running a step once.

    `status` is the step's new status: done, skipped, failed (the step, and with `block` the
    release), waiting (check again at `retry_at`, or on the next cycle) or running (progress
    was made: run the step again at once).
    """

    status: str
    detail: str = ""
    retry_at: datetime | None = None
    state: dict[str, Any] = field(default_factory=dict)
    release: Release | None = None
    transition: ReleaseState | None = None
    records: list[ExternalRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    core: dict[str, Any] = field(default_factory=dict)
    new_tasks: list[Task] = field(default_factory=list)
    task_updates: list[tuple[Task, JobRef | None]] = field(default_factory=list)
    block: bool = False
    fail: str | None = None
    fail_evidence: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def done(cls, detail: str, **kw: Any) -> Outcome:
        return cls("done", detail, **kw)

    @classmethod
    def skipped(cls, detail: str, **kw: Any) -> Outcome:
        return cls("skipped", detail, **kw)

    @classmethod
    def waiting(cls, detail: str, retry_at: datetime | None = None, **kw: Any) -> Outcome:
        return cls("waiting", detail, retry_at=retry_at, **kw)

    @classmethod
    def progress(cls, detail: str, **kw: Any) -> Outcome:
        return cls("running", detail, **kw)

    @classmethod
    def blocked(cls, detail: str, **kw: Any) -> Outcome:
        return cls("failed", detail, block=True, **kw)

    @classmethod
    def failure(cls, detail: str, evidence: dict[str, Any] | None = None, **kw: Any) -> Outcome:
        """The release failed (a job, the smoke test, a signal): roll it back."""
        return cls("failed", detail, fail=detail, fail_evidence=evidence or {}, **kw)
