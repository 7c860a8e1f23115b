"""Steps 11-18: deploy, smoke test, detect, rollback, notify, post-mortem, SLM, early life.

Each handler calls hooks and returns an `Outcome`; it never writes to the store itself.
A handler that made progress (started a job, finished a task) returns at once so that the
progress is committed before the next side effect.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from itsm_bridge import steps_close, steps_plan
from itsm_bridge.jobs import follow_job, job_params
from itsm_bridge.models import (
    ACTOR,
    Event,
    ExternalRecord,
    JobRef,
    JobState,
    Release,
    ReleaseState,
    Signal,
    Task,
    TaskSpec,
    TaskStatus,
)
from itsm_bridge.outcome import Outcome, StepContext
from itsm_bridge.steps_close import collect_signals
from itsm_bridge.steps_plan import ROLLBACK_KEY, StepEnv, tasks_event

SMOKE_ORDER = 200


def dispatch(env: StepEnv, number: int, ctx: StepContext, timeline: list[Event]) -> Outcome:
    """Run the handler of step `number` once."""
    handlers: dict[int, Callable[[], Outcome]] = {
        1: lambda: steps_plan.step_intake(env, ctx, "demand"),
        2: lambda: steps_plan.step_intake(env, ctx, "problem"),
        3: lambda: steps_plan.step_backlog(env, ctx),
        4: lambda: steps_plan.step_build(env, ctx),
        5: lambda: steps_plan.step_schedule(env, ctx),
        6: lambda: steps_plan.step_change(env, ctx),
        7: lambda: steps_plan.step_evaluate(env, ctx),
        8: lambda: steps_plan.step_cmdb(env, ctx),
        9: lambda: steps_plan.step_tasks(env, ctx),
        10: lambda: steps_plan.step_notes(env, ctx),
        11: lambda: step_deploy(env, ctx),
        12: lambda: step_smoke_test(env, ctx),
        13: lambda: step_detect(env, ctx),
        14: lambda: step_rollback(env, ctx),
        15: lambda: steps_close.step_notify(env, ctx),
        16: lambda: steps_close.step_post_mortem(env, ctx, timeline),
        17: lambda: steps_close.step_service_levels(env, ctx),
        18: lambda: steps_close.step_early_life_support(env, ctx),
    }
    return handlers[number]()


def step_of_task(task: Task) -> int:
    """The step that runs a task: 14 the rollback, 11 before the smoke test, 12 from it on."""
    if task.key == ROLLBACK_KEY:
        return 14
    return 11 if task.order < SMOKE_ORDER else 12


def task_event(task: Task, actor: str = ACTOR) -> Event:
    """The `task` event: a task finished (done or failed), with its note."""
    note = f": {task.note}" if task.note else ""
    return Event(
        actor=actor,
        kind="task",
        message=f"task {task.name} {task.status.value}{note}",
        evidence={
            "task": task.key,
            "name": task.name,
            "status": task.status.value,
            "note": task.note,
        },
    )


def tasks_of_step(ctx: StepContext) -> list[Task]:
    """Step 11 runs every task before the smoke test; step 12 the smoke test and after."""
    return [t for t in ctx.tasks if step_of_task(t) == ctx.step.number]


def run_tasks(env: StepEnv, ctx: StepContext, tasks: list[Task]) -> Outcome:
    """Run the tasks in order: one side effect per call, committed before the next."""
    reported: list[str] = list(ctx.step.state.get("reported", []))
    jobs = ctx.jobs
    for task in tasks:
        if task.status in (TaskStatus.DONE, TaskStatus.FAILED):
            if task.key not in reported:
                env.host.hook.task_finished(release=ctx.release, task=task)
                return Outcome.progress(
                    f"task {task.name} {task.status.value}",
                    state={"reported": [*reported, task.key]},
                )
            if task.status == TaskStatus.FAILED:
                reason = f"{task.name} failed" + (f": {task.note}" if task.note else "")
                return Outcome.failure(reason, {"task": task.key})
            continue
        if task.kind == "manual":
            return wait_for_manual_task(env, ctx, task)
        return run_automated_task(env, ctx, task, jobs.get(task.key))
    return Outcome.done(f"{len(tasks)} task(s) done")


def wait_for_manual_task(env: StepEnv, ctx: StepContext, task: Task) -> Outcome:
    """A manual task is done when its record is closed, or when `task-done` says so."""
    if task.record is not None:
        updated = env.host.hook.task_status(release=ctx.release, task=task)
        if updated is not None and updated.status != task.status:
            return Outcome.progress(
                f"task {task.name} {updated.status.value} (from {task.record.system})",
                task_updates=[(updated, None)],
                events=[task_event(updated, actor=task.record.system)]
                if updated.status in (TaskStatus.DONE, TaskStatus.FAILED)
                else [],
            )
    group = f" ({task.group})" if task.group else ""
    where = f" or close {task.record.number or task.record.id}" if task.record else ""
    return Outcome.waiting(
        f"waiting for manual task {task.name}{group}: "
        f"itsm-bridge release task-done {ctx.release.id} {task.key}{where}",
        retry_at=ctx.now + env.poll,
    )


def run_automated_task(env: StepEnv, ctx: StepContext, task: Task, job: JobRef | None) -> Outcome:
    purpose = (
        task.purpose
        if task.purpose in {"deploy", "smoke_test", "rollback"}
        else (task.job or task.key)
    )
    extra: dict[str, str] = {"TASK": task.key}
    if purpose == "rollback":
        extra["ROLLBACK_TO"] = str(ctx.core.get("rollback_to") or "")
    params = job_params(ctx.release, purpose, **extra)
    stored = job.model_dump(mode="json") if job else None
    status, ref, started = follow_job(env.host, ctx, purpose, stored, params, task=task.key)
    if ref is None:
        manual = task.model_copy(update={"kind": "manual"})
        return Outcome.progress(
            f"no plugin runs {purpose} jobs: task {task.name} is manual",
            task_updates=[(manual, None)],
        )
    if started:
        running = task.model_copy(update={"status": TaskStatus.RUNNING})
        return Outcome.progress(
            f"task {task.name}: job {ref.job} started",
            task_updates=[(running, ref)],
        )
    if status is None or not status.finished:
        return Outcome.waiting(
            f"task {task.name}: job {ref.job} running",
            retry_at=ctx.now + env.poll,
            task_updates=[(task, ref)] if ref != job else [],
        )
    unstable_ok = env.settings.policy.unstable == "success"
    ok = status.state == JobState.SUCCEEDED or (status.state == JobState.UNSTABLE and unstable_ok)
    label = f"{ref.job} #{status.number}" if status.number is not None else ref.job
    note = f"job {label} {status.state.value}"
    if status.state == JobState.UNSTABLE:
        note += f" (policy.unstable: {env.settings.policy.unstable})"
    if status.state == JobState.ABORTED and status.detail:
        note += f": {status.detail}"  # its own reason (who aborted it)
    if status.tests is not None:
        note += f"; tests: {status.tests.passed} passed, {status.tests.failed} failed"
    finished = task.model_copy(
        update={"status": TaskStatus.DONE if ok else TaskStatus.FAILED, "note": note}
    )
    return Outcome.progress(
        f"task {task.name}: {note}", task_updates=[(finished, ref)], events=[task_event(finished)]
    )


def step_deploy(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 11: wait for the window, then run the tasks up to the smoke test in order."""
    release = ctx.release
    if release.state == ReleaseState.SCHEDULED:
        if release.window_start and ctx.now < release.window_start:
            return Outcome.waiting(
                f"waiting for the window at {release.window_start:%Y-%m-%d %H:%M}Z",
                retry_at=release.window_start,
            )
        if release.window_end and ctx.now >= release.window_end:
            return Outcome.blocked(
                f"the window ended at {release.window_end:%Y-%m-%d %H:%M}Z before deployment "
                "began; retry to schedule the next one"
            )
        started = release.model_copy(update={"deploy_started_at": ctx.now})
        return Outcome.progress(
            "deployment started", release=started, transition=ReleaseState.IMPLEMENTING
        )
    return run_tasks(env, ctx, tasks_of_step(ctx))


def step_smoke_test(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 12: the smoke test (and any task after it)."""
    if ctx.release.state == ReleaseState.IMPLEMENTING:
        return Outcome.progress("verification started", transition=ReleaseState.VERIFYING)
    return run_tasks(env, ctx, tasks_of_step(ctx))


def step_detect(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 13: watch the release for `policy.verify_minutes`; `policy.failure_limit` distinct
    firing signals fail it (fewer are recorded in the step and told as they come)."""
    until = ctx.step.state.get("until")
    if until is None:
        until_at = ctx.now + timedelta(minutes=env.settings.policy.verify_minutes)
        return Outcome.progress("watch period started", state={"until": until_at.isoformat()})
    until_at = datetime.fromisoformat(until)
    limit = env.settings.policy.failure_limit
    earlier = ctx.step.state.get("seen", [])
    new = collect_signals(env, ctx, until=until_at, enough=limit - len(earlier))
    seen = [*earlier, *(s.model_dump(mode="json") for s in new)]
    if len(seen) >= limit:
        first = new[0] if new else Signal.model_validate(seen[0])
        return Outcome.failure(
            f"{first.source}: {first.summary}",
            {"signals": seen},
        )
    if new:
        return Outcome.progress(
            f"{len(seen)} of {limit} signal(s) needed to fail: "
            + "; ".join(f"{s.source}: {s.summary}" for s in new),
            state={"seen": seen},
        )
    if ctx.now >= until_at:
        return Outcome.done(
            f"no failure signal in {env.settings.policy.verify_minutes} minute(s)",
            transition=ReleaseState.SUCCEEDED,
        )
    return Outcome.waiting(
        f"watching until {until_at:%Y-%m-%d %H:%M}Z", retry_at=env.next_look(ctx.now, until_at)
    )


def step_rollback(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 14: roll a failed release back, then return its items to the backlog."""
    release = ctx.release
    if release.state not in (ReleaseState.FAILED, ReleaseState.ROLLING_BACK):
        return Outcome.skipped("the release did not fail")
    if release.state == ReleaseState.FAILED:
        return start_rollback(env, ctx)
    task = next(t for t in ctx.tasks if t.key == ROLLBACK_KEY)
    recording = record_rollback_task(env, ctx, task)
    if recording is not None:
        return recording
    if task.status != TaskStatus.DONE or task.key not in ctx.step.state.get("reported", []):
        outcome = run_tasks(env, ctx, [task])
        if outcome.fail and task.kind == "manual":  # a person says the rollback failed
            return Outcome(
                "failed",
                f"the rollback failed ({task.note or 'no note'}): roll back by hand, then: "
                f"itsm-bridge release task-done {release.id} {ROLLBACK_KEY}",
            )
        if outcome.fail:  # a failed rollback job leaves the rollback to a person
            manual = task.model_copy(update={"kind": "manual", "status": TaskStatus.PENDING})
            return Outcome.progress(
                f"rollback job failed ({task.note}); roll back by hand, then: itsm-bridge "
                f"release task-done {release.id} {ROLLBACK_KEY}",
                task_updates=[(manual, None)],
                state={"reported": []},
            )
        if outcome.status != "done":
            return outcome
    env.host.hook.return_to_backlog(
        release=release, items=release.scope, reason=release.failure_reason
    )
    return Outcome.done(
        f"rolled back; {len(release.scope)} item(s) returned to the backlog",
        transition=ReleaseState.ROLLED_BACK,
    )


def start_rollback(env: StepEnv, ctx: StepContext) -> Outcome:
    """The rollback task. A manual one gets its record where tasks are assigned
    (`create_tasks`) now, for the person who will roll back; an automated one once its job
    has started (`record_rollback_task`): the rollback does not wait for that record."""
    release = ctx.release
    existing = next((t for t in ctx.tasks if t.key == ROLLBACK_KEY), None)
    task = existing or rollback_task(env, ctx)
    records: list[ExternalRecord] = []
    state: dict[str, Any] = {}
    if task.record is None and task.kind == "manual":
        task, records = with_record(env, release, task)
        state = {"record_asked": True}
    return Outcome.progress(
        f"rolling back: {release.failure_reason}",
        transition=ReleaseState.ROLLING_BACK,
        new_tasks=[] if existing else [task],
        task_updates=[(task, None)] if existing else [],
        records=records,
        events=[tasks_event([task], "rollback task added")],
        state=state,
    )


def record_rollback_task(env: StepEnv, ctx: StepContext, task: Task) -> Outcome | None:
    """While the rollback job runs, its task's record (`create_tasks`), asked once; None
    when there is nothing to ask."""
    asked = ctx.step.state.get("record_asked")
    if asked or task.record is not None or task.status != TaskStatus.RUNNING:
        return None
    if not env.implemented("create_tasks"):
        return None
    recorded, records = with_record(env, ctx.release, task)
    where = f": {records[0].number or records[0].id}" if records else ": no record made"
    return Outcome.progress(
        f"task {task.name} recorded{where}",
        task_updates=[(recorded, None)] if records else [],
        records=records,
        state={"record_asked": True},
    )


def with_record(env: StepEnv, release: Release, task: Task) -> tuple[Task, list[ExternalRecord]]:
    """The task with the record `create_tasks` made for it (if any), and that record."""
    spec = TaskSpec(**task.model_dump(include=set(TaskSpec.model_fields)))
    created = env.host.hook.create_tasks(release=release, tasks=[spec]) or []
    records = [r for r in created if r.key == task.key]
    return task.model_copy(update={"record": records[0] if records else None}), records


def rollback_task(env: StepEnv, ctx: StepContext) -> Task:
    job = env.automated_jobs(ctx.release.service).get("rollback")
    return Task(
        key=ROLLBACK_KEY,
        name="Roll back",
        kind="automated" if job else "manual",
        order=900,
        purpose="rollback",
        job=job,
    )
