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

from itsm_bridge_sandbox.jenkins.spec import (
    PHASES,
    RESULTS,
    Endpoint,
    Outcome,
    ParamDef,
    Rule,
    TestSpec,
)

__all__ = [
    "PHASES",
    "RESULTS",
    "Build",
    "Endpoint",
    "Folder",
    "JenkinsModel",
    "Job",
    "Outcome",
    "ParamDef",
    "PhaseEvent",
    "QueueItem",
    "Rule",
    "TestSpec",
    "endpoints_for",
]

#: How long Jenkins remembers a queue item after it left the queue (`Queue.leftItems`, a
#: cache with `expireAfterWrite(5 * 60, SECONDS)` in hudson.model.Queue): afterwards
#: `/queue/item/<id>/api/json` answers 404 and the build is found by its parameters.
LEFT_ITEM_SECONDS = 300.0


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
    rules: list[Rule] = field(default_factory=list)
    builds: dict[int, Build] = field(default_factory=dict)
    next_build_number: int = 1
    endpoints: list[Endpoint] = field(default_factory=list)
    disabled: bool = False
    description: str | None = None

    @property
    def name(self) -> str:
        return self.full_name.rsplit("/", 1)[-1]

    def take_outcome(self, params: dict[str, str] | None = None) -> Outcome:
        """The next scripted outcome, else the first rule matching `params`, else the
        job's default."""
        if self.next_outcomes:
            return self.next_outcomes.popleft()
        for rule in self.rules:
            if rule.matches(params or {}):
                return rule.outcome
        return self.outcome

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
    left_at: float | None = None

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
        self.running: list[Build] = []  # the builds still building: what `advance` looks at
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
        outcome = job.take_outcome(dict(params))
        wait = outcome.queue_delay if delay is None else max(0.0, delay)
        item = QueueItem(self.next_queue_id, job, params, outcome, now, now + wait)
        self.queue[item.id] = item
        self.next_queue_id += 1
        return item

    def cancel(self, item: QueueItem) -> bool:
        if item.left:
            return False
        item.cancelled = True
        item.left_at = self.clock()
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
        self.running.append(build)
        job.next_build_number += 1
        item.build = build
        item.left_at = now
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
        self.running.remove(build)
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
        for build in self.running:
            if build.due <= now:
                due.append((build.due, 1, build))
        due.sort(key=lambda entry: (entry[0], entry[1]))
        for at, kind, obj in due:
            if kind == 0:
                build = self.start(obj, at)
                if build.due <= now:
                    self.complete(build, build.outcome.result, build.due)
            else:
                self.complete(obj, obj.outcome.result, at)
        self.forget_left_items(now)
        self.flush()

    def forget_left_items(self, now: float, older_than: float = LEFT_ITEM_SECONDS) -> None:
        """Drop items that left the queue `older_than` seconds ago (Jenkins' leftItems cache)."""
        for item_id in [
            i.id
            for i in self.queue.values()
            if i.left_at is not None and now - i.left_at >= older_than
        ]:
            del self.queue[item_id]

    def next_due(self) -> float | None:
        """When `advance` next has something to do (None: nothing pending)."""
        times = [i.ready_at for i in self.queue.values() if not i.left and not i.job.disabled]
        times += [b.due for b in self.running]
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
