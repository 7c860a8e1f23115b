"""Steps 1-10: intake, backlog, build, schedule, change, evaluation, CMDB, tasks, notes.

Each handler calls hooks and returns an `Outcome`; it never writes to the store itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsm_bridge.compliance import build_event, core_findings, findings_event, tests_text
from itsm_bridge.jobs import follow_job, job_params
from itsm_bridge.models import (
    ACTOR,
    Approval,
    BuildInfo,
    ConfigurationItem,
    Event,
    Impact,
    JobState,
    ReleaseNotes,
    ReleaseType,
    Task,
    TaskSpec,
)
from itsm_bridge.outcome import Outcome, StepContext
from itsm_bridge.plugins import PluginHost
from itsm_bridge.settings import BridgeSettings
from itsm_bridge.windows import Window, find_slot

DEPLOY_KEY, SMOKE_KEY, ROLLBACK_KEY = "deploy", "smoke-test", "rollback"
HORIZON_WHEN_UNCONFIGURED = timedelta(days=3650)
POLL_JITTER = 0.2  # a waiting step's poll comes up to this share of the interval early


@dataclass
class StepEnv:
    host: PluginHost
    settings: BridgeSettings

    @property
    def poll(self) -> timedelta:
        """How long a waiting step waits before it asks its plugin again: `poll_seconds`,
        less up to `POLL_JITTER` of it at random, so that releases that began waiting
        together (a pipeline that created many) spread their polls instead of asking in
        bursts that hold up the releases an event just woke. Never longer than configured."""
        seconds = self.settings.policy.poll_seconds
        return timedelta(seconds=seconds * (1 - random.uniform(0, POLL_JITTER)))

    def next_look(self, now: datetime, until: datetime) -> datetime:
        """When a watching step (13, 18) looks for failure signals again: at the next poll
        while a plugin answers `detect_failure`, else when the watch ends. Alerts pushed or
        polled by a monitoring plugin reach a release through the inbox, which wakes it at
        once: asking nobody every `poll_seconds` would only load the worker."""
        if self.implemented("detect_failure"):
            return min(now + self.poll, until)
        return until

    def implemented(self, hook: str, *, defaults: bool = False) -> list[str]:
        """Names of the plugins implementing `hook` (without the defaults unless asked)."""
        return self.host.implementers(hook, defaults=defaults)

    def automated_jobs(self, service_name: str) -> dict[str, str]:
        """Purpose -> job for the purposes a plugin will run: a job is configured for the
        service and a plugin runs jobs. Empty when none: every task is then manual."""
        service = self.settings.services.get(service_name)
        if service is None or not self.implemented("start_job"):
            return {}
        jobs = service.jobs.model_dump()
        return {purpose: str(job) for purpose, job in jobs.items() if job}


def step_intake(env: StepEnv, ctx: StepContext, kind: str) -> Outcome:
    """Steps 1-2: demands and problems enter the backlog continuously through the intake
    poller (`sync`), not per release; the step records whether intake is connected."""
    plugins = env.implemented("collect_work_items")
    if not plugins:
        return Outcome.skipped(f"no intake plugin enabled: {kind}s are not collected")
    if not env.implemented("add_to_backlog"):
        return Outcome.skipped(
            f"{kind}s are collected ({', '.join(plugins)}) but no backlog plugin is enabled: "
            "they wait in the inbox until one is"
        )
    return Outcome.done(f"{kind}s reach the backlog through intake ({', '.join(plugins)})")


def step_backlog(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 3: the backlog items the release delivers.

    Read again when the backlog changes (`inbox.refresh_scope`); once the change exists, what
    changed is told as a `scope` event (evidence `added`, `removed`: issue keys).
    """
    items = env.host.hook.release_scope(release=ctx.release)
    if items is None:
        return Outcome.skipped("no backlog plugin enabled: the release has no linked items")
    release = ctx.release.model_copy(update={"scope": list(items)})
    before = {item.key for item in ctx.release.scope}
    now = {item.key for item in items}
    added, removed = sorted(now - before), sorted(before - now)
    events = []
    if (added or removed) and ctx.release.record(None, "change_request") is not None:
        parts = [
            f"{verb} {', '.join(keys)}"
            for verb, keys in (("added", added), ("removed", removed))
            if keys
        ]
        events.append(
            Event(
                actor=ACTOR,
                kind="scope",
                message=f"the release's backlog changed: {'; '.join(parts)}",
                evidence={"added": added, "removed": removed},
            )
        )
    return Outcome.done(f"{len(items)} backlog item(s) in scope", release=release, events=events)


def step_build(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 4: produce the build package (a CI job); its result (number, URL, artifacts,
    tests) is recorded on the release (`Release.build`) for the evaluation and the change.
    After `release retry`, the builds of earlier runs (`superseded`) are not this run's."""
    params = job_params(ctx.release, "build")
    step_state = ctx.step.state
    status, job, started = follow_job(
        env.host,
        ctx,
        "build",
        step_state.get("job"),
        params,
        superseded=step_state.get("superseded"),
    )
    if job is None:
        return Outcome.skipped("no CI plugin started a build job: the package is built outside")
    state: dict[str, Any] = {"job": job.model_dump(mode="json")}
    if status is None or not status.finished:
        detail = f"build {job.job} {'started' if started else 'running'}"
        return (
            Outcome.progress(detail, state=state)
            if started
            else Outcome.waiting(detail, state=state)
        )
    build = BuildInfo.from_status(status)
    release = ctx.release.model_copy(update={"build": build})
    detail = f"build {build.label} {status.state.value}{tests_text(build)}"
    if status.state in (JobState.SUCCEEDED, JobState.UNSTABLE):
        return Outcome.done(detail, state=state, release=release)
    why = f": {status.detail}" if status.detail else ""
    return Outcome.blocked(f"{detail}{why}", state=state, release=release)


def step_cmdb(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 8: affected CIs and impacted services, merged from every CMDB plugin."""
    impact = Impact()
    for answer in env.host.hook.identify_impact(release=ctx.release):
        if answer is not None:
            impact = impact.merged(answer)
    service = env.settings.services.get(ctx.release.service)
    if not impact.cis and not impact.services and service and service.ci:
        impact = Impact(services=[ConfigurationItem(id=service.ci, name=service.ci)])
        detail = f"no CMDB plugin: impact is the configured service CI {service.ci}"
    else:
        detail = f"{len(impact.cis)} affected CI(s), {len(impact.services)} impacted service(s)"
    return Outcome.done(detail, release=ctx.release.model_copy(update={"impact": impact}))


def step_schedule(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 5: the earliest slot inside a maintenance window and outside every freeze."""
    release = ctx.release
    # whole seconds: change records keep no sub-second detail ("now" rounds down, so the
    # slot starts at once; a requested instant rounds up, so it is never earlier)
    asked = release.not_before if release.not_before and release.not_before > ctx.now else None
    not_before = (asked or ctx.now).replace(microsecond=0)
    if asked and not_before < asked:
        not_before += timedelta(seconds=1)
    emergency = release.type == ReleaseType.EMERGENCY

    def windows(start: Any, end: Any) -> list[Window]:
        found = [
            w
            for result in env.host.hook.maintenance_windows(release=release, start=start, end=end)
            for w in result
        ]
        return found

    def freezes(start: Any, end: Any) -> list[Any]:
        return [
            f
            for result in env.host.hook.freeze_periods(release=release, start=start, end=end)
            for f in result
        ]

    any_window = windows(not_before, not_before + timedelta(days=400))
    if not any_window:

        def windows(start: Any, end: Any) -> list[Window]:
            return [Window(name="any time", start=start, end=end, source="none configured")]

    slot = find_slot(windows, freezes, not_before, release.duration, emergency=emergency)
    if slot is None:
        return Outcome.blocked(
            f"no slot of {release.duration} inside a maintenance window and outside freezes "
            "within 400 days; add a window or shorten --duration"
        )
    updated = release.model_copy(update={"window_start": slot.start, "window_end": slot.end})
    where = slot.window.name if slot.window else "outside every maintenance window"
    events = []
    if emergency and (slot.broken_freezes or slot.outside_window):
        broken = ", ".join(f.name for f in slot.broken_freezes) or "none"
        events.append(
            Event(
                actor=ACTOR,
                kind="exception",
                message=f"emergency change exception: freezes broken: {broken}; outside window: "
                f"{'yes' if slot.outside_window else 'no'}; reason: {release.reason}",
                evidence={
                    "freezes": [f.name for f in slot.broken_freezes],
                    "outside_window": slot.outside_window,
                    "reason": release.reason,
                },
            )
        )
    return Outcome.done(
        f"{slot.start:%Y-%m-%d %H:%M}Z to {slot.end:%Y-%m-%d %H:%M}Z ({where})",
        release=updated,
        events=events,
    )


def step_notes(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 10: render the release notes from the backlog items, then publish them."""
    notes: ReleaseNotes = env.host.hook.render_release_notes(
        release=ctx.release, items=ctx.release.scope
    )
    records = [
        r
        for result in env.host.hook.publish_release_notes(release=ctx.release, notes=notes)
        for r in result
    ]
    where = f"; published to {len(records)} record(s)" if records else ""
    return Outcome.done(
        f"{len(notes.items)} item(s) in the notes{where}",
        records=records,
        core={"notes": notes.model_dump(mode="json")},
    )


def step_change(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 6: the change record in the ITSM system of record.

    The release first learns which of its jobs a plugin will run (`Release.jobs`), so that the
    change's plans name a job only where one will run.
    """
    release = ctx.release.model_copy(update={"jobs": env.automated_jobs(ctx.release.service)})
    notes = ReleaseNotes(**ctx.core["notes"]) if ctx.core.get("notes") else None
    change = env.host.hook.create_change(release=release, notes=notes)
    if change is None:
        return Outcome.skipped(
            "no ITSM plugin enabled: the change is tracked in the bridge only", release=release
        )
    label = change.number or change.id
    return Outcome.done(f"change {label}", records=[change], release=release)


def implicit_tasks(env: StepEnv, ctx: StepContext) -> list[TaskSpec]:
    """Deploy and smoke test: automated when a job is configured and a plugin runs jobs."""
    jobs = env.automated_jobs(ctx.release.service)
    specs = []
    for key, name, purpose, order in (
        (DEPLOY_KEY, "Deploy", "deploy", 100),
        (SMOKE_KEY, "Smoke test", "smoke_test", 200),
    ):
        job = jobs.get(purpose)
        automated = job is not None
        specs.append(
            TaskSpec(
                key=key,
                name=name,
                kind="automated" if automated else "manual",
                order=order,
                purpose=purpose,
                job=job if automated else None,
            )
        )
    return specs


def step_tasks(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 9: plan the release tasks, then create their records where they are assigned."""
    impact = ctx.release.impact or Impact()
    specs: dict[str, TaskSpec] = {}
    for spec in implicit_tasks(env, ctx):
        specs[spec.key] = spec
    for result in env.host.hook.plan_tasks(release=ctx.release, impact=impact):
        for spec in result:
            specs.setdefault(spec.key, spec)
    ordered = sorted(specs.values(), key=lambda s: (s.order, s.key))
    records = env.host.hook.create_tasks(release=ctx.release, tasks=ordered) or []
    by_key = {r.key: r for r in records}
    tasks = [Task(**spec.model_dump(), record=by_key.get(spec.key)) for spec in ordered]
    manual = sum(1 for task in tasks if task.kind == "manual")
    return Outcome.done(
        f"{len(tasks)} task(s), {manual} manual; {len(records)} record(s) created",
        records=records,
        new_tasks=tasks,
        events=[tasks_event(tasks, f"{len(tasks)} release task(s) planned")],
    )


def tasks_event(tasks: list[Task], message: str) -> Event:
    """The `tasks` event: the release's tasks and their records, for plugins to link once."""
    listed = [
        {
            "key": task.key,
            "name": task.name,
            "kind": task.kind,
            "group": task.group,
            "record": task.record.model_dump(mode="json", exclude_none=True)
            if task.record
            else None,
        }
        for task in tasks
    ]
    return Event(actor=ACTOR, kind="tasks", message=message, evidence={"tasks": listed})


def step_evaluate(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 7: compliance findings (any blocker blocks), then the approval gate.

    Events: `findings` once per evaluation (when there are any); `approval` pending when the
    findings allow it, which is the request: plugins ask for approval on it (e.g. the change
    moves to Assess), and the decision is read only on the next pass, once they were told
    (after a rejection and `release retry`, so the old decision is not read back); `approval`
    again when it is decided.
    """
    findings = ctx.step.state.get("findings")
    events: list[Event] = []
    if findings is None:
        found = core_findings(env.settings, ctx.release)
        for result in env.host.hook.evaluate_change(release=ctx.release):
            found += result
        findings = [f.model_dump(mode="json") for f in found]
        if ctx.release.build is not None:
            events.append(build_event(ctx.release.build))
        if found:
            events.append(findings_event(found))
        blockers = [f for f in found if f.severity == "blocker"]
        if blockers:
            return Outcome.blocked(
                "; ".join(f"{f.source}: {f.message}" for f in blockers),
                state={"findings": findings},
                events=events,
            )
    if not ctx.step.state.get("approval_requested"):
        return Outcome.progress(
            "approval requested",
            state={"findings": findings, "approval_requested": True},
            events=[*events, approval_event(Approval(status="pending"))],
        )
    approval: Approval = env.host.hook.approval_status(release=ctx.release)
    state = {"findings": findings, "approval": approval.model_dump(mode="json")}
    # `release approve` recorded a manual decision with its own event already
    decided = approval_event(approval) if approval != ctx.release.approval else None
    if approval.status == "approved":
        by = f" by {approval.by}" if approval.by else ""
        return Outcome.done(
            f"{len(findings)} finding(s), no blocker; approved{by}",
            state=state,
            events=[*events, decided] if decided else events,
        )
    if approval.status == "rejected":
        comment = f": {approval.comment}" if approval.comment else ""
        return Outcome.blocked(
            f"change rejected by {approval.by or 'the approver'}{comment}",
            state=state,
            events=[*events, decided] if decided else events,
        )
    return Outcome.waiting("waiting for approval of the change", state=state, events=events)


def approval_event(approval: Approval) -> Event:
    if approval.status == "pending":
        message = "approval of the change requested"
    else:
        by = f" by {approval.by}" if approval.by else ""
        comment = f": {approval.comment}" if approval.comment else ""
        message = f"change {approval.status}{by}{comment}"
    return Event(
        actor=approval.by or ACTOR,
        kind="approval",
        message=message,
        evidence={"status": approval.status, "by": approval.by, "comment": approval.comment},
    )
