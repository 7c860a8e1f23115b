"""The release state machine: the only caller of the process hooks.

`Process.advance(id)` runs every step of a release that is due, one at a time: it reads the
committed state, calls the step's hooks outside any transaction, then commits the outcome
(step status, release fields, records, tasks, events, state transition) in one transaction
before the next step starts. After each commit it delivers the new events to
`release_changed` (an outbox: a crash re-delivers, it never loses). A release is advanced
only under its row lease, so several replicas can share one PostgreSQL database.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import requests

from itsm_bridge import lifecycle, steps_plan, steps_run
from itsm_bridge.errors import NeedsHuman, TransientError
from itsm_bridge.lifecycle import STEP_NAMES, check_transition
from itsm_bridge.models import Event, Release, ReleaseState, utcnow
from itsm_bridge.outcome import Outcome, StepContext
from itsm_bridge.plugins import PluginHost
from itsm_bridge.settings import BridgeSettings
from itsm_bridge.steps_plan import StepEnv
from itsm_bridge.store import StepRow, Store

log = logging.getLogger(__name__)

ACTOR = "itsm-bridge"
MAX_STEPS_PER_ADVANCE = 200
DELIVERY_ATTEMPTS = 5
TRANSIENT = (TransientError, requests.ConnectionError, requests.Timeout)


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
    ) -> None:
        self.store = store
        self.host = host
        self.settings = settings
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.env = StepEnv(host, settings)
        self.lease_ttl = lease_ttl or timedelta(seconds=settings.server.lease_seconds)

    # -- running ---------------------------------------------------------------------------
    def run_due(self, limit: int = 100) -> list[str]:
        """Advance every release whose next run is due; returns the ids advanced."""
        with self.store.begin() as tx:
            due = tx.due_release_ids(self.clock(), limit)
        advanced = []
        for release_id in due:
            try:
                if self.advance(release_id):
                    advanced.append(release_id)
            except Exception:
                log.exception("release %s: unexpected error while advancing", release_id)
        return advanced

    def advance(self, release_id: str) -> bool:
        """Run the release's due steps until each waits; False when another owner holds it."""
        with self.store.begin() as tx:
            if not tx.lease_release(release_id, self.owner, self.lease_ttl):
                return False
        try:
            self.deliver_events(release_id)
            waited: set[int] = set()
            for _ in range(MAX_STEPS_PER_ADVANCE):
                with self.store.begin() as tx:  # renew: a long run must not lose its lease
                    if not tx.lease_release(release_id, self.owner, self.lease_ttl):
                        log.warning("release %s: lease taken over by another replica", release_id)
                        return True
                ran = self._run_next_step(release_id, waited)
                if ran is None:
                    break
                number, outcome = ran
                if outcome.status == "waiting" and outcome.fail is None:
                    waited.add(number)
                else:
                    waited.clear()  # progress may have unblocked a step that waited
                self.deliver_events(release_id)
        finally:
            with self.store.begin() as tx:
                tx.drop_release_lease(release_id, self.owner)
        return True

    def _run_next_step(self, release_id: str, waited: set[int]) -> tuple[int, Outcome] | None:
        """Run one ready step not yet seen waiting in this pass; None when nothing is due."""
        with self.store.begin() as tx:
            release = tx.release(release_id)
            if release is None:
                return None
            if release.state in lifecycle.TERMINAL or release.state == ReleaseState.BLOCKED:
                tx.set_next_run(release_id, None)
                return None
            steps = tx.steps(release_id)
            ready = lifecycle.ready_steps({s.number: s.status for s in steps})
            now = self.clock()
            pending = [s for s in steps if s.number in ready]
            runnable = [s for s in pending if s.number not in waited and not _not_yet(s, now)]
            if not runnable:
                retry = [r for r in (_retry_at(s) for s in pending) if r is not None]
                tx.set_next_run(release_id, min(retry, default=None))
                return None
            step = runnable[0]
            ctx = StepContext(
                release=release,
                step=step,
                tasks=tx.tasks(release_id),
                core=tx.core_data(release_id),
                now=now,
                jobs=tx.task_jobs(release_id),
            )
            timeline = tx.events(release_id) if step.number == 16 else []
            build_state = next((s.state for s in steps if s.number == 4), {})
        outcome = self._call_step(ctx, timeline, build_state)
        if outcome.status == "waiting" and outcome.retry_at is None:
            outcome.retry_at = now + self.env.poll
        self._commit(ctx, outcome)
        return step.number, outcome

    def _call_step(self, ctx: StepContext, timeline: list[Event], build: dict[str, Any]) -> Outcome:
        number = ctx.step.number
        try:
            return self._dispatch(number, ctx, timeline, build)
        except TRANSIENT as exc:
            attempts = ctx.step.attempts + 1
            if attempts >= self.settings.policy.retry_limit:
                return self._hard_failure(ctx, f"gave up after {attempts} attempts: {exc}")
            delay = min(timedelta(seconds=30 * 2 ** (attempts - 1)), timedelta(hours=1))
            return Outcome.waiting(
                f"transient failure (attempt {attempts}), retrying: {exc}",
                retry_at=ctx.now + delay,
                state={"attempts": attempts},
            )
        except NeedsHuman as exc:
            return self._hard_failure(ctx, str(exc))
        except Exception as exc:
            log.exception("release %s step %s failed", ctx.release.id, number)
            return self._hard_failure(ctx, f"{type(exc).__name__}: {exc}")

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

    def _dispatch(
        self, number: int, ctx: StepContext, timeline: list[Event], build: dict[str, Any]
    ) -> Outcome:
        env = self.env
        handlers: dict[int, Callable[[], Outcome]] = {
            1: lambda: steps_plan.step_intake(env, ctx, "demand"),
            2: lambda: steps_plan.step_intake(env, ctx, "problem"),
            3: lambda: steps_plan.step_backlog(env, ctx),
            4: lambda: steps_plan.step_build(env, ctx),
            5: lambda: steps_plan.step_schedule(env, ctx),
            6: lambda: steps_plan.step_change(env, ctx),
            7: lambda: steps_plan.step_evaluate(env, ctx, build),
            8: lambda: steps_plan.step_cmdb(env, ctx),
            9: lambda: steps_plan.step_tasks(env, ctx),
            10: lambda: steps_plan.step_notes(env, ctx),
            11: lambda: steps_run.step_deploy(env, ctx),
            12: lambda: steps_run.step_smoke_test(env, ctx),
            13: lambda: steps_run.step_detect(env, ctx),
            14: lambda: steps_run.step_rollback(env, ctx),
            15: lambda: steps_run.step_notify(env, ctx),
            16: lambda: steps_run.step_post_mortem(env, ctx, timeline),
            17: lambda: steps_run.step_service_levels(env, ctx),
            18: lambda: steps_run.step_early_life_support(env, ctx),
        }
        return handlers[number]()

    # -- committing ------------------------------------------------------------------------
    def _commit(self, ctx: StepContext, outcome: Outcome) -> None:
        """Write everything the step did in one transaction."""
        release_id = ctx.release.id
        step = ctx.step
        now = self.clock()
        with self.store.begin() as tx:
            current = tx.release(release_id)
            if current is None or current.state != ctx.release.state:
                return  # someone else (a CLI command) moved the release meanwhile; re-read
            release = outcome.release or current
            release = release.model_copy(update={"state": current.state})
            step.attempts = int(outcome.state.pop("attempts", 0))
            step.state = {**step.state, **outcome.state}
            step.started_at = step.started_at or now
            step.detail = outcome.detail
            step.status = outcome.status
            if outcome.status in ("done", "skipped", "failed"):
                step.finished_at = now
            step.state["retry_at"] = outcome.retry_at.isoformat() if outcome.retry_at else None
            tx.save_step(release_id, step)
            for record in outcome.records:
                if tx.add_record(release_id, record):
                    release.records.append(record)
            if outcome.new_tasks:
                tx.insert_tasks(release_id, outcome.new_tasks)
            for task, job in outcome.task_updates:
                tx.save_task(release_id, task, job)
            if outcome.core:
                tx.set_core_data(release_id, **outcome.core)
            for event in outcome.events:
                tx.add_event(release_id, event)
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
                release = self._transition(tx, release, ReleaseState.BLOCKED, outcome.detail)
            elif outcome.fail is not None:
                release = self._fail(tx, release, outcome.fail, outcome.fail_evidence, step.number)
            elif outcome.transition is not None:
                release = self._transition(tx, release, outcome.transition, outcome.detail)
            if release.state == ReleaseState.PLANNED and self._planning_done(tx, release_id):
                release = self._transition(tx, release, ReleaseState.SCHEDULED, "plan complete")
            tx.update_release(release)
            if outcome.status != "waiting" or outcome.retry_at is None:
                tx.set_next_run(release_id, now)

    @staticmethod
    def _planning_done(tx: Any, release_id: str) -> bool:
        statuses = {s.number: s.status for s in tx.steps(release_id)}
        return all(statuses[n] in lifecycle.FINISHED for n in lifecycle.PLANNING_STEPS)

    def _transition(self, tx: Any, release: Release, target: ReleaseState, why: str) -> Release:
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

    def _fail(
        self,
        tx: Any,
        release: Release,
        reason: str,
        evidence: dict[str, Any],
        at_step: int,
        actor: str = ACTOR,
    ) -> Release:
        """The failure path: mark failed, skip what was left of verification, then roll back."""
        tx.add_event(
            release.id,
            Event(
                at=self.clock(),
                actor=actor,
                kind="failure",
                message=reason,
                evidence=evidence,
            ),
        )
        during_els = release.state == ReleaseState.EARLY_LIFE_SUPPORT
        release = self._transition(tx, release, ReleaseState.FAILED, reason)
        release = release.model_copy(update={"failure_reason": reason})
        now = self.clock()
        for step in tx.steps(release.id):
            if step.number in (11, 12, 13) and step.status not in lifecycle.FINISHED:
                failed_here = step.number == at_step or step.status in ("running", "waiting")
                step.status = "failed" if failed_here else "skipped"
                step.detail = reason if failed_here else f"skipped: the release failed ({reason})"
                step.finished_at = now
            elif step.number in (14, 18) or (during_els and step.number in (15, 16, 17)):
                step.status, step.detail, step.finished_at = "pending", "", None
                step.state = {}
            tx.save_step(release.id, step)
        tx.set_core_data(release.id, rollback_to=self._previous_version(tx, release))
        return release

    def _previous_version(self, tx: Any, release: Release) -> str:
        for other in tx.list_releases(state=ReleaseState.CLOSED.value, limit=200):
            if (
                other.service == release.service
                and other.id != release.id
                and not (other.failure_reason)
            ):
                return str(other.version)
        return ""

    # -- the outbox of release_changed -----------------------------------------------------
    def deliver_events(self, release_id: str) -> None:
        """Tell every plugin about events not yet delivered (at least once, in order).

        An event that keeps failing for reasons other than a passing fault is given up after
        `DELIVERY_ATTEMPTS` tries, with an audit event, so one bad event cannot hold back
        every later one.
        """
        with self.store.begin() as tx:
            core = tx.core_data(release_id)
            pending = tx.events_after(release_id, int(core.get("delivered_event_id", 0)))
            release = tx.release(release_id)
        if not pending or release is None:
            return
        attempts = int(core.get("delivery_attempts", 0))
        for event_id, event in pending:
            try:
                self.host.hook.release_changed(release=release, event=event)
            except Exception as exc:
                attempts += 1
                transient = isinstance(exc, TRANSIENT)
                if transient or attempts < DELIVERY_ATTEMPTS:
                    log.warning(
                        "release %s: release_changed failed, will retry: %s", release_id, exc
                    )
                    with self.store.begin() as tx:
                        tx.set_core_data(release_id, delivery_attempts=attempts)
                    return
                with self.store.begin() as tx:
                    tx.add_event(
                        release_id,
                        Event(
                            at=self.clock(),
                            actor=ACTOR,
                            kind="sync_failed",
                            message=f"gave up telling plugins about event {event_id} "
                            f"after {attempts} attempts: {exc}",
                            evidence={"event": event.message},
                        ),
                    )
            with self.store.begin() as tx:
                tx.set_core_data(release_id, delivered_event_id=event_id, delivery_attempts=0)
            attempts = 0


def _retry_at(step: StepRow) -> datetime | None:
    value = step.state.get("retry_at")
    return datetime.fromisoformat(value) if value else None


def _not_yet(step: StepRow, now: datetime) -> bool:
    retry = _retry_at(step)
    return step.status == "waiting" and retry is not None and retry > now
