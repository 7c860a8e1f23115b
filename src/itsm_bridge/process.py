"""The release state machine: the only caller of the process hooks.

`Process.advance(id)` runs every step of a release that is due, one at a time: it reads the
committed state, calls the step's hooks outside any transaction, then commits the outcome
(step status, release fields, records, tasks, events, state transition) in one transaction
before the next step starts. After each commit it delivers the new events to
`release_changed` through the outbox (`outbox.py`: a crash re-delivers, it never loses).

A release is advanced only under its row lease (`leases.py`), renewed by a heartbeat while a
plugin call runs; each commit renews it first in its own transaction and is refused when the
lease expired or changed hands, so several replicas can share one PostgreSQL database.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
import sqlalchemy as sa

from itsm_bridge import lifecycle, steps_run
from itsm_bridge.cycle import CycleReport, health, new_troubles
from itsm_bridge.errors import NeedsHuman, OperationFailed, TransientError
from itsm_bridge.leases import LeaseLost, heartbeat
from itsm_bridge.lifecycle import STEP_NAMES, check_transition
from itsm_bridge.models import ACTOR, Event, Release, ReleaseState, utcnow
from itsm_bridge.outbox import Outbox
from itsm_bridge.outbox import retry_at as delivery_retry_at
from itsm_bridge.outcome import Outcome, StepContext
from itsm_bridge.plugins import PluginHost
from itsm_bridge.settings import BridgeSettings
from itsm_bridge.steps_plan import StepEnv
from itsm_bridge.store import Store, Tx

log = logging.getLogger(__name__)

MAX_STEPS_PER_ADVANCE = 200
TRANSIENT = (TransientError, requests.ConnectionError, requests.Timeout)
HOLD_LEASES = 4  # a step may keep its lease (heartbeat) for at most this many lease periods


class Process:
    """Drives releases through the 18 steps with the loaded plugins."""

    def __init__(
        self,
        store: Store,
        host: PluginHost,
        settings: BridgeSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
        lease_ttl: timedelta | None = None,
        max_hold: timedelta | None = None,
        on_step: Callable[[int, str, float], None] | None = None,
    ) -> None:
        self.store = store
        self.host = host
        self.settings = settings
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.env = StepEnv(host, settings)
        if lease_ttl is None:
            lease_ttl = timedelta(seconds=settings.server.lease_seconds)
        if lease_ttl <= timedelta(0):
            raise ValueError("lease_ttl must be positive")
        self.lease_ttl = lease_ttl
        self.max_hold = max_hold if max_hold is not None else lease_ttl * HOLD_LEASES
        self.on_step = on_step  # (step number, status, seconds) after each step (metrics)
        self.outbox = Outbox(store, host, clock, TRANSIENT, self._fence)

    # -- running ---------------------------------------------------------------------------
    def run_due(self, limit: int = 100) -> CycleReport:
        """Advance every release whose next run is due; says what was advanced and what failed."""
        with self.store.begin() as tx:
            due = tx.due_release_ids(self.clock(), limit)
        report = CycleReport()
        for release_id in due:
            before = health(self.store, release_id)
            try:
                if self.advance(release_id):
                    report.advanced.append(release_id)
            except sa.exc.OperationalError:
                raise  # the database is away: the cycle stops (the CLI says so in one line)
            except Exception as exc:
                log.exception("release %s: unexpected error while advancing", release_id)
                first = (str(exc).splitlines() or [""])[0][:300]
                report.failures.append(f"release {release_id}: {type(exc).__name__}: {first}")
                continue
            report.failures += new_troubles(self.store, release_id, before)
        return report

    def advance(self, release_id: str, claimed_at: float | None = None) -> bool:
        """Run the release's due steps until each waits; False when another owner holds it.

        `claimed_at`: when (`time.monotonic()`) a claim (`Tx.claim_due`) leased the release
        to this owner; the lease is not taken again while less than half its time has passed
        since (each commit renews it anyway, and refuses when it was lost).
        """
        if claimed_at is None or not self._surely_held(claimed_at):
            claimed_at = time.monotonic()
            with self.store.begin() as tx:
                if not tx.lease_release(release_id, self.owner, self.lease_ttl):
                    return False
        run = _Run(renewed_at=claimed_at)
        try:
            self._deliver(release_id)
            for _ in range(MAX_STEPS_PER_ADVANCE):
                ran = self._run_next_step(release_id, run)
                if ran is None:
                    break
                number, outcome = ran
                if outcome.status == "waiting" and outcome.fail is None:
                    run.waited.add(number)
                else:
                    run.waited.clear()  # progress may have unblocked a step that waited
                if not _rollback_first(number, outcome):
                    self._deliver(release_id)
            self._schedule_delivery(release_id)
        except LeaseLost:
            log.warning("release %s: lease lost to another owner; outcome discarded", release_id)
        finally:
            with self.store.begin() as tx:
                tx.drop_release_lease(release_id, self.owner)
        return True

    def _deliver(self, release_id: str) -> None:
        """The outbox's delivery, under the lease's heartbeat (plugins may be slow)."""
        with heartbeat(self.store, release_id, self.owner, self.lease_ttl, self.max_hold):
            self.outbox.deliver(release_id)

    def _surely_held(self, since: float) -> bool:
        """Whether a lease this owner took or renewed at `since` (time.monotonic) surely is
        still its own: less than half its time has passed."""
        return time.monotonic() - since < self.lease_ttl.total_seconds() / 2

    def _fence(self, tx: Tx, release_id: str) -> None:
        """Renew the lease inside `tx`, or raise `LeaseLost` (and roll `tx` back)."""
        if not tx.renew_release_lease(release_id, self.owner, self.lease_ttl):
            raise LeaseLost(release_id)

    def _schedule_delivery(self, release_id: str) -> None:
        """A held delivery makes the release due again when it is to be retried."""
        with self.store.begin() as tx:
            due = delivery_retry_at(tx.core_data(release_id))
            if due is None:
                return
            current = tx.next_run(release_id)
            if current is None or due < current:
                self._fence(tx, release_id)
                tx.set_next_run(release_id, due)

    def _run_next_step(self, release_id: str, run: _Run) -> tuple[int, Outcome] | None:
        """Run one ready step not yet seen waiting in this pass; None when nothing is due.
        Raises `LeaseLost` before the step when this owner no longer holds the release (so
        no side effect is started). While less than half the lease's time has passed since
        this run took or renewed it (a commit renews it), it is held for certain: the step is
        read without renewing it, off the write lock (the heartbeat around the step renews
        it a third of the lease in, before it can run out)."""
        held = self._surely_held(run.renewed_at)
        if not held:
            run.renewed_at = time.monotonic()
        with self.store.read() if held else self.store.begin() as tx:
            if not held:
                self._fence(tx, release_id)
            found = tx.release_with_core(release_id)
            if found is None:
                return None
            release, core = found
            steps = tx.steps(release_id)
            now = self.clock()
            step, look_again = lifecycle.next_step(release.state, steps, run.waited, now)
            if step is not None:
                tasks, jobs = tx.tasks_with_jobs(release_id)
                ctx = StepContext(
                    release=release,
                    step=step,
                    tasks=tasks,
                    core=core,
                    now=now,
                    jobs=jobs,
                    steps=steps,
                    unstarted=run.unstarted,
                )
                timeline = tx.events(release_id) if step.number == 16 else []
        if step is None:  # nothing to run now
            with self.store.begin() as tx:
                self._fence(tx, release_id)
                tx.set_next_run(release_id, look_again)
            return None
        started = time.monotonic()
        with heartbeat(self.store, release_id, self.owner, self.lease_ttl, self.max_hold):
            outcome = self._call_step(ctx, timeline)
        if self.on_step is not None:
            self.on_step(step.number, outcome.status, time.monotonic() - started)
        if outcome.status == "waiting" and outcome.retry_at is None:
            outcome.retry_at = now + self.env.poll
        committing = time.monotonic()
        self._commit(ctx, outcome)  # (it renews the lease, or raises LeaseLost)
        run.renewed_at = committing
        return step.number, outcome

    def _call_step(self, ctx: StepContext, timeline: list[Event]) -> Outcome:
        number = ctx.step.number
        try:
            return steps_run.dispatch(self.env, number, ctx, timeline)
        except TRANSIENT as exc:
            return self._transient(ctx, exc)
        except (NeedsHuman, OperationFailed) as exc:  # expected: the message says it all
            return self._hard_failure(ctx, str(exc))
        except Exception as exc:
            log.exception("release %s step %s failed", ctx.release.id, number)
            return self._hard_failure(ctx, f"{type(exc).__name__}: {exc}")

    def _transient(self, ctx: StepContext, exc: Exception) -> Outcome:
        """Retry with backoff; fail only after `retry_limit` attempts and `give_up_after`."""
        policy = self.settings.policy
        attempts = ctx.step.attempts + 1
        since = ctx.step.state.get("transient_since") or ctx.now.isoformat()
        failing_for = ctx.now - datetime.fromisoformat(since)
        if attempts >= policy.retry_limit and failing_for >= policy.give_up_delay:
            return self._hard_failure(
                ctx, f"gave up after {attempts} attempts in {_minutes(failing_for)}: {exc}"
            )
        delay = min(timedelta(seconds=30 * 2 ** (attempts - 1)), timedelta(hours=1))
        return Outcome.waiting(
            f"transient failure (attempt {attempts}), retrying: {exc}",
            retry_at=ctx.now + delay,
            state={"attempts": attempts, "transient_since": since},
        )

    def _hard_failure(self, ctx: StepContext, detail: str) -> Outcome:
        """A step that needs a human: blocks before deployment, fails the release during it."""
        if ctx.release.state in lifecycle.CANCELLABLE:
            return Outcome.blocked(detail)
        if ctx.release.state in (ReleaseState.IMPLEMENTING, ReleaseState.VERIFYING):
            return Outcome.failure(f"step {STEP_NAMES[ctx.step.number]}: {detail}")
        if ctx.step.number == lifecycle.ROLLBACK_STEP:
            return Outcome(
                "failed",
                f"{detail}; fix the cause, then: itsm-bridge release retry {ctx.release.id}",
            )
        return Outcome("failed", detail)

    # -- committing ------------------------------------------------------------------------
    def _commit(self, ctx: StepContext, outcome: Outcome) -> None:
        """Write everything the step did in one transaction, if this owner still holds it."""
        release_id = ctx.release.id
        step = ctx.step
        now = self.clock()
        created: list[str] = []
        with self.store.begin() as tx:
            self._fence(tx, release_id)
            current = tx.release(release_id, records=False)  # (records are added, not set)
            if current is None or current.state != ctx.release.state:
                return  # someone else (a CLI command) moved the release meanwhile; re-read
            release = outcome.release or current
            release = release.model_copy(update={"state": current.state})
            step.attempts = int(outcome.state.pop("attempts", 0))
            step.state = {**step.state, **outcome.state}
            if not step.attempts:
                step.state.pop("transient_since", None)  # the system answered again
            step.started_at = step.started_at or now
            step.detail = outcome.detail
            step.status = outcome.status
            if outcome.status in ("done", "skipped", "failed"):
                step.finished_at = now
            step.state["retry_at"] = outcome.retry_at.isoformat() if outcome.retry_at else None
            for record in outcome.records:
                if tx.add_record(release_id, record):
                    release.records.append(record)
            if outcome.new_tasks:
                created = tx.insert_tasks(release_id, outcome.new_tasks)
            for task, job in outcome.task_updates:
                tx.save_task(release_id, task, job)
            if outcome.core:
                tx.set_core_data(release_id, **outcome.core)
            for event in outcome.events:
                tx.add_event(release_id, event.model_copy(update={"at": now}))
            name = STEP_NAMES[step.number]
            if outcome.status != "waiting" or step.state.get("last_detail") != outcome.detail:
                tx.add_event(
                    release_id,
                    Event(
                        at=now,
                        actor=ACTOR,
                        kind="step",
                        message=f"step {step.number} {name}: {outcome.status}: {outcome.detail}",
                        evidence={"step": step.number, "status": outcome.status},
                    ),
                )
            step.state["last_detail"] = outcome.detail
            tx.save_step(release_id, step)
            if outcome.block:
                release = self.transition(tx, release, ReleaseState.BLOCKED, outcome.detail)
            elif outcome.fail is not None:
                release = self.fail(tx, release, outcome.fail, outcome.fail_evidence, step.number)
            elif outcome.transition is not None:
                release = self.transition(tx, release, outcome.transition, outcome.detail)
            if release.state == ReleaseState.PLANNED and self._planning_done(tx, release_id):
                release = self.transition(tx, release, ReleaseState.SCHEDULED, "plan complete")
            tx.update_release(release)
            if outcome.status != "waiting" or outcome.retry_at is None:
                tx.set_next_run(release_id, now)
        ctx.unstarted.update(created)  # committed: nothing can have started them yet

    @staticmethod
    def _planning_done(tx: Tx, release_id: str) -> bool:
        statuses = {s.number: s.status for s in tx.steps(release_id)}
        return all(statuses[n] in lifecycle.FINISHED for n in lifecycle.PLANNING_STEPS)

    def transition(self, tx: Tx, release: Release, target: ReleaseState, why: str) -> Release:
        """Move the release to `target` (a legal transition) with an audit event."""
        check_transition(release.state, target)
        tx.add_event(
            release.id,
            Event(
                at=self.clock(),
                actor=ACTOR,
                kind="state",
                message=f"{release.state.value} -> {target.value}: {why}",
                evidence={"from": release.state.value, "to": target.value},
            ),
        )
        return release.model_copy(update={"state": target})

    def fail(
        self,
        tx: Tx,
        release: Release,
        reason: str,
        evidence: dict[str, Any],
        at_step: int | None,
        actor: str = ACTOR,
    ) -> Release:
        """The failure path: mark failed, end what was left of verification, then roll back.

        `at_step` is the step that failed; None when a person asked for the rollback, and the
        verification steps not yet finished are then skipped, not failed.
        """
        tx.add_event(
            release.id,
            Event(at=self.clock(), actor=actor, kind="failure", message=reason, evidence=evidence),
        )
        during_els = release.state == ReleaseState.EARLY_LIFE_SUPPORT
        release = self.transition(tx, release, ReleaseState.FAILED, reason)
        release = release.model_copy(update={"failure_reason": reason})
        now = self.clock()
        for step in tx.steps(release.id):
            if step.number in (11, 12, 13) and step.status not in lifecycle.FINISHED:
                failed_here = at_step is not None and (
                    step.number == at_step or step.status in ("running", "waiting")
                )
                step.status = "failed" if failed_here else "skipped"
                step.detail = reason if failed_here else f"skipped: {_skip_reason(reason, at_step)}"
                step.finished_at = now
            elif step.number in (14, 18) or (during_els and step.number in (15, 16, 17)):
                step.status, step.detail, step.finished_at = "pending", "", None
                step.state = {}
            else:
                continue  # unchanged: not written
            tx.save_step(release.id, step)
        tx.set_core_data(
            release.id,
            rollback_to=tx.last_good_version(release.service, exclude=release.id),
            failure_evidence=evidence,
        )
        return release

    # -- tasks finished outside a step (release task-done) ---------------------------------
    def report_task(self, release_id: str, task_key: str) -> None:
        """Tell the plugins at once that a task finished (`task_finished`), under the lease.

        The caller holds the release's lease. A plugin failure is raised after nothing was
        marked: the step that runs the task reports it again on its next cycle.
        """
        with self.store.begin() as tx:
            release = tx.release(release_id)
            task = next((t for t in tx.tasks(release_id) if t.key == task_key), None)
        if release is None or task is None:
            return
        number = steps_run.step_of_task(task)
        self.host.hook.task_finished(release=release, task=task)
        with self.store.begin() as tx:
            for step in tx.steps(release_id):
                if step.number == number:
                    reported = [k for k in step.state.get("reported", []) if k != task_key]
                    step.state["reported"] = [*reported, task_key]
                    tx.save_step(release_id, step)


def _rollback_first(number: int, outcome: Outcome) -> bool:
    """Whether plugins are told of this step's events later, after the rollback job started:
    the step failed the release, or step 14 just added the rollback task. Telling them
    (`release_changed`, one call and one mark per event) comes right after step 14's next
    pass, which starts the job; the rollback does not wait for the news."""
    if outcome.fail is not None:
        return True
    return number == lifecycle.ROLLBACK_STEP and outcome.transition == ReleaseState.ROLLING_BACK


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)} min"


def _skip_reason(reason: str, at_step: int | None) -> str:
    return reason if at_step is None else f"the release failed ({reason})"


@dataclass
class _Run:
    """What one `Process.advance` carries from step to step."""

    renewed_at: float  # when (time.monotonic) this run took or last renewed the lease
    waited: set[int] = field(default_factory=set)  # steps seen waiting since the last progress
    unstarted: set[str] = field(default_factory=set)  # tasks it created, not started yet
