"""The Jenkins sandbox's in-memory world: folders, jobs, the queue, builds and scripted outcomes.

Time is driven by wall-clock checks, not by threads doing work: `JenkinsModel.advance()` looks at
the clock and moves every queue item whose quiet period has expired into a running build, and
every build whose scripted duration has elapsed to its scripted result. The server calls it on
every request (and a ticker thread calls it so that Notification plugin deliveries happen even
when nobody polls). Each phase change is recorded as a `PhaseEvent` for the notifier.

Lifecycle, as in real Jenkins (`hudson.model.Queue` javadoc; Parameterized-Remote-Trigger's
`QueueItemStatus`): WAITING (quiet period) -> LEFT with an executable (the build starts) or
LEFT cancelled; a build is `building` with `result: null` until it completes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
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


@dataclass
class Folder:
    """A CloudBees folder (`com.cloudbees.hudson.plugins.folder.Folder`)."""

    full_name: str
    children: dict[str, Folder | Job] = field(default_factory=dict)
    description: str | None = None

    @property
    def name(self) -> str:
        return self.full_name.rsplit("/", 1)[-1]


@dataclass
class Job:
    """A pipeline (`WorkflowJob`) or freestyle (`FreeStyleProject`) job and its builds."""

    full_name: str
    kind: str = "pipeline"
    parameters: list[ParamDef] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)
    next_outcomes: deque[Outcome] = field(default_factory=deque)
    builds: dict[int, Build] = field(default_factory=dict)
    next_build_number: int = 1
    endpoints: list[Endpoint] = field(default_factory=list)
    disabled: bool = False
    description: str | None = None

    @property
    def name(self) -> str:
        return self.full_name.rsplit("/", 1)[-1]

    def take_outcome(self) -> Outcome:
        return self.next_outcomes.popleft() if self.next_outcomes else self.outcome

    def completed(self) -> list[Build]:
        return [b for b in self.builds.values() if b.result is not None]

    def last(self, predicate: Callable[[Build], bool]) -> Build | None:
        for number in sorted(self.builds, reverse=True):
            if predicate(self.builds[number]):
                return self.builds[number]
        return None


@dataclass
class QueueItem:
    """A queue item: waiting during its quiet period, then left (started or cancelled)."""

    id: int
    job: Job
    params: list[tuple[str, str]]
    outcome: Outcome
    entered: float
    ready_at: float
    cancelled: bool = False
    build: Build | None = None

    @property
    def left(self) -> bool:
        return self.cancelled or self.build is not None


@dataclass
class Build:
    """A run (`WorkflowRun` / `FreeStyleBuild`); `result` is None while it is building."""

    job: Job
    number: int
    queue_id: int
    params: list[tuple[str, str]]
    outcome: Outcome
    started: float
    entered_queue: float
    result: str | None = None
    finished: float | None = None
    aborted_by: str | None = None
    test_report: dict[str, Any] | None = None

    @property
    def building(self) -> bool:
        return self.result is None

    @property
    def due(self) -> float:
        return self.started + self.outcome.duration


@dataclass
class PhaseEvent:
    """A Notification plugin phase of one build, recorded when it happened."""

    build: Build
    phase: str
    at: float


class JenkinsModel:
    """All jobs, the queue and the builds; every public method expects `lock` to be held."""

    def __init__(
        self, clock: Callable[[], float] = time.time, lock: threading.RLock | None = None
    ) -> None:
        self.clock = clock
        self.lock = lock or threading.RLock()
        self.root = Folder("")
        self.queue: dict[int, QueueItem] = {}
        self.next_queue_id = 1
        self.endpoints: list[Endpoint] = []
        self.events: list[PhaseEvent] = []
        self.on_events: Callable[[list[PhaseEvent]], None] | None = None
        self.test_report_builder: Callable[[Build], dict[str, Any] | None] | None = None

    # -- structure -------------------------------------------------------------------------
    def add_job(self, full_name: str, **kwargs: Any) -> Job:
        """Create a job (and any missing parent folders)."""
        parts = [p for p in full_name.strip("/").split("/") if p]
        if not parts:
            raise ValueError("a job needs a name")
        parent = self.root
        for depth, part in enumerate(parts[:-1]):
            child = parent.children.get(part)
            if child is None:
                child = Folder("/".join(parts[: depth + 1]))
                parent.children[part] = child
            if not isinstance(child, Folder):
                raise ValueError(f"{child.full_name} is a job, not a folder")
            parent = child
        job = Job("/".join(parts), **kwargs)
        parent.children[parts[-1]] = job
        return job

    def item(self, full_name: str) -> Folder | Job | None:
        node: Folder | Job = self.root
        for part in [p for p in full_name.strip("/").split("/") if p]:
            if not isinstance(node, Folder) or part not in node.children:
                return None
            node = node.children[part]
        return node

    def job(self, full_name: str) -> Job:
        node = self.item(full_name)
        if not isinstance(node, Job):
            raise KeyError(f"no Jenkins job {full_name!r}")
        return node

    def all_jobs(self) -> list[Job]:
        out: list[Job] = []
        stack: list[Folder | Job] = [self.root]
        while stack:
            node = stack.pop()
            if isinstance(node, Job):
                out.append(node)
            else:
                stack.extend(node.children.values())
        return sorted(out, key=lambda j: j.full_name)

    # -- scheduling ------------------------------------------------------------------------
    def schedule(self, job: Job, given: dict[str, str], delay: float | None = None) -> QueueItem:
        """Queue a build; identical pending requests fold into one item as in real Jenkins.

        Parameters not defined on the job are dropped and missing ones take their default
        (SECURITY-170 behaviour of `ParametersAction`).
        """
        params = [(p.name, given.get(p.name, p.default)) for p in job.parameters]
        for item in self.queue.values():
            if item.job is job and not item.left and item.params == params:
                return item  # Queue.schedule2 folds a duplicate (ParametersAction.shouldSchedule)
        now = self.clock()
        outcome = job.take_outcome()
        wait = outcome.queue_delay if delay is None else max(0.0, delay)
        item = QueueItem(self.next_queue_id, job, params, outcome, now, now + wait)
        self.queue[item.id] = item
        self.next_queue_id += 1
        return item

    def cancel(self, item: QueueItem) -> bool:
        if item.left:
            return False
        item.cancelled = True
        return True

    def start(self, item: QueueItem, now: float) -> Build:
        job = item.job
        build = Build(
            job,
            job.next_build_number,
            item.id,
            item.params,
            item.outcome,
            started=now,
            entered_queue=item.entered,
        )
        job.builds[build.number] = build
        job.next_build_number += 1
        item.build = build
        # The Notification plugin sends QUEUED and STARTED together from RunListener.onStarted
        # (notification-plugin JobListener.java); QUEUED carries the time spent in the queue.
        self._event(build, "QUEUED", item.entered)
        self._event(build, "STARTED", now)
        return build

    def complete(self, build: Build, result: str, now: float) -> None:
        if not build.building:
            return
        build.result = result
        build.finished = now
        if result != "ABORTED" and build.outcome.tests is not None and self.test_report_builder:
            build.test_report = self.test_report_builder(build)
        self._event(build, "COMPLETED", now)
        self._event(build, "FINALIZED", now)

    def abort(self, build: Build, by: str) -> None:
        if build.building:
            build.aborted_by = by
            self.complete(build, "ABORTED", self.clock())

    # -- time ------------------------------------------------------------------------------
    def advance(self) -> None:
        """Start due queue items and complete due builds, in time order."""
        now = self.clock()
        due: list[tuple[float, int, Any]] = []
        for item in self.queue.values():
            if not item.left and not item.job.disabled and item.ready_at <= now:
                due.append((item.ready_at, 0, item))
        for job in self.all_jobs():
            for build in job.builds.values():
                if build.building and build.due <= now:
                    due.append((build.due, 1, build))
        due.sort(key=lambda entry: (entry[0], entry[1]))
        for at, kind, obj in due:
            if kind == 0:
                build = self.start(obj, at)
                if build.due <= now:
                    self.complete(build, build.outcome.result, build.due)
            else:
                self.complete(obj, obj.outcome.result, at)
        self.flush()

    def next_due(self) -> float | None:
        """When `advance` next has something to do (None: nothing pending)."""
        times = [i.ready_at for i in self.queue.values() if not i.left and not i.job.disabled]
        times += [b.due for j in self.all_jobs() for b in j.builds.values() if b.building]
        return min(times) if times else None

    def flush(self) -> None:
        if self.events and self.on_events is not None:
            events, self.events = self.events, []
            self.on_events(events)
        elif self.on_events is None:
            self.events.clear()

    def _event(self, build: Build, phase: str, at: float) -> None:
        self.events.append(PhaseEvent(build, phase, at))


def endpoints_for(model: JenkinsModel, job: Job) -> list[Endpoint]:
    """The job's own endpoints, else the global ones."""
    return list(job.endpoints) if job.endpoints else list(model.endpoints)
