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

from itsm_bridge import lifecycle
from itsm_bridge.errors import OperationFailed, UsageError
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

    def _event(
        self, tx: Tx, release_id: str, actor: str, kind: str, message: str, **ev: object
    ) -> None:
        tx.add_event(
            release_id,
            Event(
                at=self.process.clock(), actor=actor, kind=kind, message=message, evidence=dict(ev)
            ),
        )
        self._wake(tx, release_id)

    def _wake(self, tx: Tx, release_id: str) -> None:
        """Make the release due now, and its waiting steps check again at once."""
        for step in tx.steps(release_id):
            if step.status == "waiting" and step.state.get("retry_at"):
                step.state["retry_at"] = None
                tx.save_step(release_id, step)
        tx.set_next_run(release_id, self.process.clock())

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
        actor: str = "cli",
    ) -> Release:
        if self.settings.services and service not in self.settings.services:
            known = ", ".join(sorted(self.settings.services))
            raise UsageError(f"--service {service!r} is not in services (configured: {known})")
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
        )
        with self.store.begin() as tx:
            tx.insert_release(release, list(STEPS))
            self._event(
                tx,
                release.id,
                actor,
                "created",
                f"release {release.title} created ({release_type.value})",
                reason=reason,
            )
        return release

    # -- approve ---------------------------------------------------------------------------
    def approve(
        self, release_id: str, *, reject: bool = False, note: str = "", actor: str = "cli"
    ) -> Release:
        owners = self.process.env.implemented("approval_status")
        if owners:
            raise UsageError(f"approval is owned by {', '.join(owners)}: approve the change there")
        with self._leased(release_id) as rid, self.store.begin() as tx:
            release = self._get(tx, rid)
            if release.state not in lifecycle.CANCELLABLE:
                raise UsageError(f"release {rid} is {release.state.value}: nothing to approve")
            decision = Approval(
                status="rejected" if reject else "approved",
                by=actor,
                comment=note,
                at=self.process.clock(),
            )
            release = release.model_copy(update={"approval": decision})
            if release.state == ReleaseState.BLOCKED and not reject:
                release = self._unblock(tx, release, "approved")
            tx.update_release(release)
            self._reset_step(tx, rid, 7)
            self._event(
                tx,
                rid,
                actor,
                "approval",
                f"change {'rejected' if reject else 'approved'}: {note}".rstrip(": "),
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
    ) -> None:
        with self._leased(release_id) as rid, self.store.begin() as tx:
            tasks = {task.key: task for task in tx.tasks(rid)}
            if task_key not in tasks:
                known = ", ".join(tasks) or "none yet"
                raise UsageError(f"release {rid} has no task {task_key!r}; tasks: {known}")
            task = tasks[task_key]
            if task.kind != "manual":
                raise UsageError(f"task {task_key} is automated: its job decides when it is done")
            if task.status in (TaskStatus.DONE, TaskStatus.FAILED):
                raise UsageError(f"task {task_key} is already {task.status.value}")
            status = TaskStatus.FAILED if failed else TaskStatus.DONE
            tx.save_task(rid, task.model_copy(update={"status": status, "note": note}))
            self._event(
                tx,
                rid,
                actor,
                "task",
                f"task {task.name} {status.value}" + (f": {note}" if note else ""),
                task=task_key,
            )

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
            current_step = 18 if release.state == ReleaseState.EARLY_LIFE_SUPPORT else 13
            release = self.process._fail(
                tx, release, f"rollback requested: {reason}", {"by": actor}, current_step, actor
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
            release = self.process._transition(tx, release, ReleaseState.CANCELLED, reason)
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
        """Once a human fixed the cause: a blocked release runs its failed steps again, and a
        release whose rollback step failed runs the rollback again."""
        with self._leased(release_id) as rid, self.store.begin() as tx:
            release = self._get(tx, rid)
            rollback_failed = any(
                s.number == lifecycle.ROLLBACK_STEP and s.status == "failed" for s in tx.steps(rid)
            )
            if release.state == ReleaseState.BLOCKED:
                release = self._unblock(tx, release, "retry")
                tx.update_release(release)
                self._event(tx, rid, actor, "retry", "blocked steps will run again")
            elif rollback_failed:
                self._reset_step(tx, rid, lifecycle.ROLLBACK_STEP)
                self._event(tx, rid, actor, "retry", "the rollback will run again")
            else:
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
        return self.process._transition(tx, release, ReleaseState.PLANNED, why)

    def _reset_step(self, tx: Tx, release_id: str, number: int, force: bool = False) -> None:
        for step in tx.steps(release_id):
            if step.number == number and (force or step.status != "done"):
                step.status, step.detail, step.finished_at, step.attempts = "pending", "", None, 0
                step.state = {
                    k: v for k, v in step.state.items() if k not in ("findings", "retry_at")
                }
                tx.save_step(release_id, step)


def parse_when(text: str | None) -> datetime | None:
    """An ISO 8601 instant with a zone (`Z` or an offset)."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--not-before: {text!r} is not ISO 8601 (2026-12-05T22:00:00+01:00)"
        ) from None
    if value.tzinfo is None:
        raise UsageError("--not-before needs a time zone, e.g. 2026-12-05T22:00:00+01:00")
    return value
