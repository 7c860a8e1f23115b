"""What people (the CLI, the REST API) do to releases: create, approve, finish a manual task,
roll back, cancel, retry. Each command takes the release's lease, checks, writes one
transaction with an audit event, and makes the release due so the process reacts at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa

from itsm_bridge import lifecycle
from itsm_bridge.errors import OperationFailed, UsageError
from itsm_bridge.inputs import version_problem
from itsm_bridge.lifecycle import STEPS
from itsm_bridge.models import (
    Approval,
    Event,
    Release,
    ReleaseState,
    ReleaseType,
    TaskStatus,
)
from itsm_bridge.process import Process
from itsm_bridge.steps_plan import ROLLBACK_KEY
from itsm_bridge.steps_run import task_event
from itsm_bridge.store import Tx
from itsm_bridge.windows import parse_duration

LEASE_WAIT_SECONDS = 30.0


def new_release_id(now: datetime) -> str:
    """Readable, sortable and unique: rel-20261128-1f3a9c2e."""
    return f"rel-{now:%Y%m%d}-{uuid.uuid4().hex[:8]}"


class ReleaseCommands:
    def __init__(self, process: Process) -> None:
        self.process = process
        self.store = process.store
        self.settings = process.settings

    @contextmanager
    def _leased(self, release_id: str) -> Iterator[str]:
        """Hold the release's lease (waiting for a running step to finish); yields the id."""
        full_id = self.resolve(release_id)
        deadline = time.monotonic() + LEASE_WAIT_SECONDS
        while True:
            with self.store.begin() as tx:
                if tx.lease_release(full_id, self.process.owner, self.process.lease_ttl):
                    break
            if time.monotonic() > deadline:
                raise OperationFailed(f"release {full_id} is busy (a step is running); try again")
            time.sleep(0.2)
        try:
            yield full_id
        finally:
            with self.store.begin() as tx:
                tx.drop_release_lease(full_id, self.process.owner)

    def resolve(self, release_id: str) -> str:
        """A full release id from an id or an unambiguous prefix."""
        with self.store.begin() as tx:
            matches = tx.find_release_id(release_id)
        if not matches:
            raise OperationFailed(
                f"no release {release_id!r}; `itsm-bridge release list` shows them"
            )
        if len(matches) > 1:
            raise UsageError(f"{release_id!r} matches several releases: {', '.join(matches)}")
        return matches[0]

    def now(self) -> datetime:
        return self.process.clock()

    def _event(
        self, tx: Tx, release_id: str, actor: str, kind: str, message: str, **ev: object
    ) -> None:
        tx.add_event(
            release_id,
            Event(at=self.now(), actor=actor, kind=kind, message=message, evidence=dict(ev)),
        )
        self._wake(tx, release_id)

    def _wake(self, tx: Tx, release_id: str) -> None:
        """Make the release due now, and its waiting steps check again at once."""
        tx.wake(release_id, self.now())

    # -- create ----------------------------------------------------------------------------
    def create(
        self,
        service: str,
        version: str,
        *,
        name: str = "",
        type: str = "normal",
        major: bool = False,
        not_before: datetime | None = None,
        duration: str | None = None,
        reason: str = "",
        service_levels: dict[str, str] | None = None,
        actor: str = "cli",
    ) -> Release:
        """Create a release (CLI `release create`, REST `POST /api/v1/releases`).

        Refuses (`UsageError`, exit 2) an unknown service, a version that is empty, holds
        whitespace or control characters, is longer than 64 characters or does not match
        `policy.version_pattern`, and a second open release (any state but closed and
        cancelled) of the same service and version, naming the existing one.
        """
        if self.settings.services and service not in self.settings.services:
            known = ", ".join(sorted(self.settings.services))
            raise UsageError(f"--service {service!r} is not in services (configured: {known})")
        problem = version_problem(version, self.settings.policy.version_pattern)
        if problem:
            raise UsageError(problem)
        try:
            release_type = ReleaseType(type)
        except ValueError:
            raise UsageError("--type must be normal, standard or emergency") from None
        if release_type == ReleaseType.EMERGENCY and not reason.strip():
            raise UsageError("an emergency release needs --reason (why it may break the rules)")
        if not_before is not None and not_before.tzinfo is None:
            raise UsageError("--not-before needs a time zone, e.g. 2026-12-05T22:00:00+01:00")
        try:
            length = parse_duration(duration or self.settings.policy.default_duration)
        except ValueError as exc:
            raise UsageError(f"--duration: {exc}") from None
        configured = self.settings.services.get(service)
        prescribed = {**(configured.service_levels if configured else {}), **(service_levels or {})}
        now = self.process.clock()
        release = Release(
            id=new_release_id(now),
            service=service,
            version=version,
            name=name,
            type=release_type,
            major=major,
            not_before=not_before,
            duration=length,
            reason=reason,
            created_at=now,
            service_levels=prescribed,
        )
        try:
            with self.store.begin() as tx:
                self._refuse_open(tx, service, version)
                tx.insert_release(release, list(STEPS))
                self._event(
                    tx,
                    release.id,
                    actor,
                    "created",
                    f"release {release.title} created ({release_type.value})",
                    reason=reason,
                )
        except sa.exc.IntegrityError:  # another replica created it meanwhile (unique index)
            with self.store.begin() as tx:
                self._refuse_open(tx, service, version)
            raise
        return release

    @staticmethod
    def _refuse_open(tx: Tx, service: str, version: str) -> None:
        existing = tx.open_release(service, version)
        if existing is not None:
            raise UsageError(
                f"release {existing[0]} ({existing[1]}) is already open for {service} "
                f"{version}: `itsm-bridge release show {existing[0]}`; cancel it or use "
                "another version"
            )

    # -- approve ---------------------------------------------------------------------------
    def approve(
        self, release_id: str, *, reject: bool = False, note: str = "", actor: str = "cli"
    ) -> Release:
        """Give the manual approval decision a planned release is waiting for at step 7.

        Only where an approval is awaited and no plugin owns approval; never a way to unblock
        a release (a blocked release is resumed with `release retry`). `UsageError` otherwise.
        """
        owners = self.process.env.implemented("approval_status")
        if owners:
            raise UsageError(f"approval is owned by {', '.join(owners)}: approve the change there")
        with self._leased(release_id) as rid, self.store.begin() as tx:
            release = self._get(tx, rid)
            if release.state == ReleaseState.BLOCKED:
                raise UsageError(
                    f"release {rid} is blocked, not waiting for approval; fix the cause, then "
                    f"`itsm-bridge release retry {rid}` (it asks for approval again)"
                )
            evaluate = next(s for s in tx.steps(rid) if s.number == 7)
            awaited = (evaluate.state.get("approval") or {}).get("status") == "pending"
            if release.state != ReleaseState.PLANNED or evaluate.status != "waiting" or not awaited:
                hint = (
                    "; run `itsm-bridge sync --once` first" if evaluate.status == "pending" else ""
                )
                raise UsageError(
                    f"release {rid} is {release.state.value} and step 7 (evaluate) is "
                    f"{evaluate.status}: no approval is awaited{hint}"
                )
            decision = Approval(
                status="rejected" if reject else "approved",
                by=actor,
                comment=note,
                at=self.now(),
            )
            release = release.model_copy(update={"approval": decision})
            tx.update_release(release)
            # the waiting step 7 runs again at once (`_wake`) and reads the decision
            self._event(
                tx,
                rid,
                actor,
                "approval",
                f"change {'rejected' if reject else 'approved'}: {note}".rstrip(": "),
                status=decision.status,
                by=actor,
                comment=note,
            )
            return release

    # -- manual tasks ----------------------------------------------------------------------
    def task_done(
        self,
        release_id: str,
        task_key: str,
        *,
        failed: bool = False,
        note: str = "",
        actor: str = "cli",
    ) -> str:
        """Finish a manual task, then close its record at once (`task_finished`).

        Returns a warning when the record could not be closed now (the next cycle closes it).
        """
        with self._leased(release_id) as rid:
            with self.store.begin() as tx:
                tasks = {task.key: task for task in tx.tasks(rid)}
                if task_key not in tasks:
                    known = ", ".join(tasks) or "none yet"
                    raise UsageError(f"release {rid} has no task {task_key!r}; tasks: {known}")
                task = tasks[task_key]
                if task.kind != "manual":
                    raise UsageError(
                        f"task {task_key} is automated: its job decides when it is done"
                    )
                # a failed rollback is finished by hand: the one task that may be done again
                redo = task.key == ROLLBACK_KEY and task.status == TaskStatus.FAILED
                if task.status in (TaskStatus.DONE, TaskStatus.FAILED) and not redo:
                    raise UsageError(f"task {task_key} is already {task.status.value}")
                if redo:
                    self._reset_step(tx, rid, lifecycle.ROLLBACK_STEP)
                status = TaskStatus.FAILED if failed else TaskStatus.DONE
                finished = task.model_copy(update={"status": status, "note": note})
                tx.save_task(rid, finished)
                tx.add_event(rid, task_event(finished, actor).model_copy(update={"at": self.now()}))
                self._wake(tx, rid)
            try:
                self.process.report_task(rid, task_key)
            except Exception as exc:  # the task is done; only its record waits for the cycle
                record = finished.record
                label = (record.number or record.id) if record else "its record"
                return f"{label} not closed yet ({exc}); the next cycle closes it"
        return ""

    # -- early life support ----------------------------------------------------------------
    def end_support(self, release_id: str, note: str = "", actor: str = "cli") -> None:
        """End a major release's early life support now; step 18 closes it with a summary."""
        with self._leased(release_id) as rid, self.store.begin() as tx:
            release = self._get(tx, rid)
            if release.state != ReleaseState.EARLY_LIFE_SUPPORT:
                raise UsageError(
                    f"release {rid} is {release.state.value}: not in early life support"
                )
            step = next(s for s in tx.steps(rid) if s.number == lifecycle.SUPPORT_STEP)
            step.state["ended_by"] = actor
            tx.save_step(rid, step)
            message = "early life support ended early" + (f": {note}" if note else "")
            self._event(tx, rid, actor, "support", message)

    # -- rollback, cancel, retry -----------------------------------------------------------
    def rollback(self, release_id: str, reason: str, actor: str = "cli") -> Release:
        if not reason.strip():
            raise UsageError("--reason is required")
        with self._leased(release_id) as rid, self.store.begin() as tx:
            release = self._get(tx, rid)
            if release.state not in lifecycle.DEPLOYED:
                hint = (
                    " (use `release cancel` before deployment)"
                    if (release.state in lifecycle.CANCELLABLE)
                    else ""
                )
                raise UsageError(f"release {rid} is {release.state.value}: cannot roll back{hint}")
            release = self.process.fail(
                tx, release, f"rollback requested: {reason}", {"by": actor}, None, actor
            )
            tx.update_release(release)
            self._wake(tx, rid)
            return release

    def cancel(self, release_id: str, reason: str, actor: str = "cli") -> Release:
        if not reason.strip():
            raise UsageError("--reason is required")
        with self._leased(release_id) as rid, self.store.begin() as tx:
            release = self._get(tx, rid)
            if release.state not in lifecycle.CANCELLABLE:
                raise UsageError(
                    f"release {rid} is {release.state.value}: only a release not yet deploying "
                    "can be cancelled (use `release rollback`)"
                )
            release = self.process.transition(tx, release, ReleaseState.CANCELLED, reason)
            now = self.process.clock()
            for step in tx.steps(rid):
                if step.status not in lifecycle.FINISHED:
                    step.status, step.detail, step.finished_at = (
                        "skipped",
                        f"cancelled: {reason}",
                        now,
                    )
                    tx.save_step(rid, step)
            tx.update_release(release)
            self._event(tx, rid, actor, "cancelled", f"cancelled: {reason}")
            return release

    def retry(self, release_id: str, actor: str = "cli") -> Release:
        """Once a human fixed the cause: a blocked release runs its failed steps again, a
        release whose rollback step failed runs the rollback again, and a release whose
        plugins could not be told (attention) is told again now."""
        with self._leased(release_id) as rid, self.store.begin() as tx:
            release = self._get(tx, rid)
            rollback_failed = any(
                s.number == lifecycle.ROLLBACK_STEP and s.status == "failed" for s in tx.steps(rid)
            )
            attention = tx.core_data(rid).get("attention")
            if attention:
                tx.set_core_data(rid, delivery_retry_at=None)
                self._wake(tx, rid)
            if release.state == ReleaseState.BLOCKED:
                release = self._unblock(tx, release, "retry")
                tx.update_release(release)
                self._event(tx, rid, actor, "retry", "blocked steps will run again")
            elif rollback_failed:
                self._reset_step(tx, rid, lifecycle.ROLLBACK_STEP)
                self._event(tx, rid, actor, "retry", "the rollback will run again")
            elif not attention:
                raise UsageError(
                    f"release {rid} is {release.state.value}: nothing failed that a retry redoes"
                )
            return release

    # -- helpers ---------------------------------------------------------------------------
    def _get(self, tx: Tx, release_id: str) -> Release:
        release = tx.release(release_id)
        if release is None:
            raise OperationFailed(f"no release {release_id!r}")
        return release

    def _unblock(self, tx: Tx, release: Release, why: str) -> Release:
        for step in tx.steps(release.id):
            if step.status == "failed":
                self._reset_step(tx, release.id, step.number)
        if release.window_end and release.window_end <= self.process.clock():
            self._reset_step(tx, release.id, 5, force=True)  # the window passed: schedule again
        if release.approval is not None and release.approval.status == "rejected":
            release = release.model_copy(update={"approval": None})  # a retry asks again
        return self.process.transition(tx, release, ReleaseState.PLANNED, why)

    def _reset_step(self, tx: Tx, release_id: str, number: int, force: bool = False) -> None:
        for step in tx.steps(release_id):
            if step.number == number and (force or step.status != "done"):
                step.status, step.detail, step.finished_at, step.attempts = "pending", "", None, 0
                # run it afresh (findings, approval request, jobs, retries); a job it started
                # is superseded: the step starts a new one instead of finding that one again
                superseded = list(step.state.get("superseded", []))
                if step.state.get("job"):
                    superseded.append(step.state["job"])
                step.state = {"superseded": superseded} if superseded else {}
                tx.save_step(release_id, step)
