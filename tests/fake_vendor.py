"""A plugin that behaves like a well-built vendor plugin, against an in-memory "vendor".

The vendor's boundary is counted, not deduplicated: `calls` counts every hook call that
reaches it, `created` every create it served (a create of a key that exists makes a duplicate,
listed in `duplicates`, as a real API's POST would). The plugin looks every record up by the
release id before creating it, as the real plugins must. The vendor can simulate a crash of
the whole process right after the side effect of its n-th call of a kind (before the core
commits it).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import (
    Approval,
    BacklogItem,
    ChangeRef,
    Delivery,
    Event,
    ExternalRecord,
    JobRef,
    JobState,
    JobStatus,
    Notice,
    PostMortemReport,
    Release,
    ReleaseNotes,
    Signal,
    Task,
    TaskSpec,
    TestSummary,
)


class SimulatedCrash(BaseException):
    """Escapes every `except Exception`, like the process dying."""


class FakeVendor:
    """State of the pretend external systems; optionally persisted to a JSON file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.records: dict[str, Any] = {}
        self.created: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.duplicates: list[str] = []
        self.crash_at: tuple[str, int] | None = None
        self.job_results: dict[str, str] = {}
        self.signals: list[Signal] = []
        self.detect_calls = 0  # detect_failure asked (polled), not persisted
        self.approval = "approved"
        self.tests = TestSummary(passed=10, failed=0)
        self.jobs_started: list[dict[str, str]] = []
        self.first_attempts: list[tuple[str, bool]] = []  # (purpose, first_attempt) per start
        self.failures: dict[str, list[Exception]] = {}
        self.changes_seen: list[str] = []
        self.notices: list[Notice] = []  # what the stakeholders were told, in order
        if path and path.exists():
            data = json.loads(path.read_text())
            self.records, self.created = data["records"], Counter(data["created"])
            self.calls = Counter(data["calls"])
            self.duplicates = data.get("duplicates", [])
            self.crash_at = tuple(data["crash_at"]) if data["crash_at"] else None  # type: ignore[assignment]

    def save(self) -> None:
        if self.path:
            self.path.write_text(
                json.dumps(
                    {
                        "records": self.records,
                        "created": self.created,
                        "calls": self.calls,
                        "duplicates": self.duplicates,
                        "crash_at": self.crash_at,
                    }
                )
            )

    def lookup(self, kind: str, key: str) -> Any:
        """The record `kind/key`, or None (a query at the vendor)."""
        return self.records.get(f"{kind}/{key}")

    def create(self, kind: str, key: str, value: Any) -> Any:
        """A create at the vendor: always makes a record, a duplicate when the key exists."""
        full = f"{kind}/{key}"
        if full in self.records:
            self.duplicates.append(full)
        self.records[full] = value
        self.created[kind] += 1
        return value

    def effect(self, kind: str, key: str, value: Any = True, look: bool = True) -> Any:
        """One hook call with a side effect, as a well-built plugin makes it: counted at the
        boundary, then look up (unless the core proved it the first attempt: `look` False),
        create only what is missing; then maybe crash."""
        pending = self.failures.get(kind)
        if pending:
            raise pending.pop(0)
        self.calls[kind] += 1
        found = self.lookup(kind, key) if look else None
        if found is None:
            found = self.create(kind, key, value)
        self.save()
        if self.crash_at and self.crash_at[0] == kind and self.calls[kind] == self.crash_at[1]:
            self.crash_at = None
            self.save()
            raise SimulatedCrash(f"{kind}/{key}")
        return found


class FakeVendorPlugin:
    def __init__(self, vendor: FakeVendor) -> None:
        self.v = vendor

    @hookimpl
    def release_scope(self, release: Release) -> list[BacklogItem]:
        return [BacklogItem(system="fake", key="PAY-1", summary="Refunds", kind="Story")]

    @hookimpl
    def create_change(self, release: Release, notes: ReleaseNotes | None) -> ChangeRef:
        number = self.v.effect("change", release.id, f"CHG{len(self.v.records):04d}")
        return ChangeRef(system="fake", id=f"chg-{release.id}", number=number)

    @hookimpl
    def approval_status(self, release: Release) -> Approval:
        return Approval(status=self.v.approval, by="cab")  # type: ignore[arg-type]

    @hookimpl
    def create_tasks(self, release: Release, tasks: list[TaskSpec]) -> list[ExternalRecord]:
        out = []
        for task in tasks:
            number = self.v.effect("task", f"{release.id}:{task.key}", f"TASK-{task.key}")
            out.append(ExternalRecord(system="fake", kind="task", id=number, key=task.key))
        return out

    @hookimpl
    def publish_release_notes(self, release: Release, notes: ReleaseNotes) -> list[ExternalRecord]:
        self.v.effect("notes", release.id)
        return [ExternalRecord(system="fake", kind="page", id=f"notes-{release.id}")]

    @hookimpl
    def start_job(
        self,
        release: Release,
        purpose: str,
        params: dict[str, str],
        first_attempt: bool,
        superseded: list[JobRef],
    ) -> JobRef:
        key = f"{params['RELEASE_ID']}:{purpose}:{params.get('TASK', '')}"
        if superseded:  # a run after a retry: the earlier runs' jobs are not this one
            key += f"#{len(superseded) + 1}"
        self.v.jobs_started.append({"purpose": purpose, **params})
        self.v.first_attempts.append((purpose, first_attempt))
        self.v.effect("job", key, {"polls": 0}, look=not first_attempt)
        return JobRef(system="fake", job=purpose, purpose=purpose, build_id=key)

    @hookimpl
    def job_status(self, job: JobRef) -> JobStatus:
        record = self.v.records[f"job/{job.build_id}"]
        record["polls"] += 1
        self.v.save()
        if record["polls"] < 2:
            return JobStatus(state=JobState.RUNNING, job=job)
        if "result" not in record:  # a finished job keeps its result
            record["result"] = self.v.job_results.get(job.purpose, "succeeded")
            self.v.save()
        return JobStatus(state=JobState(record["result"]), job=job, tests=self.v.tests)

    @hookimpl
    def task_finished(self, release: Release, task: Task) -> None:
        self.v.effect("task_closed", f"{release.id}:{task.key}")

    @hookimpl
    def detect_failure(self, release: Release, since: datetime) -> list[Signal]:
        self.v.detect_calls += 1
        return list(self.v.signals)

    @hookimpl
    def return_to_backlog(self, release: Release, items: list[BacklogItem], reason: str) -> None:
        pending = self.v.failures.get("return_to_backlog")
        if pending:
            raise pending.pop(0)
        for item in items:
            self.v.effect("backlog_return", f"{release.id}:{item.key}")

    @hookimpl
    def notify_stakeholders(self, release: Release, notice: Notice) -> list[Delivery]:
        self.v.effect("notification", f"{release.id}:{notice.subject}")
        self.v.notices.append(notice)
        return [Delivery(channel="fake", target=", ".join(notice.recipients), ok=True)]

    @hookimpl
    def post_mortem(self, release: Release, report: PostMortemReport) -> list[ExternalRecord]:
        self.v.effect("post_mortem", release.id)
        return []

    @hookimpl
    def update_service_levels(self, release: Release) -> list[str]:
        first = self.v.lookup("sla", release.id) is None
        self.v.effect("sla", release.id)
        return [f"service {release.service}: version"] if first else []

    @hookimpl
    def release_changed(self, release: Release, event: Event) -> None:
        self.v.effect("work_note", f"{release.id}:{event.at.isoformat()}:{event.message}")
        self.v.changes_seen.append(event.message)


class KillingVendorPlugin(FakeVendorPlugin):
    """The entry-point form: state in `$FAKE_VENDOR_STATE`, and a real SIGKILL as the crash."""

    def __init__(self, config: object, settings: object) -> None:
        import os
        import signal

        vendor = FakeVendor(Path(os.environ["FAKE_VENDOR_STATE"]))
        original = vendor.effect

        def effect(kind: str, key: str, value: Any = True, look: bool = True) -> Any:
            try:
                return original(kind, key, value, look)
            except SimulatedCrash:
                os.kill(os.getpid(), signal.SIGKILL)
                raise

        vendor.effect = effect  # type: ignore[method-assign]
        super().__init__(vendor)
