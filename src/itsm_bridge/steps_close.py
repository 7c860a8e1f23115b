"""Steps 15-18: notify, post-mortem, service levels, early life support.

Each handler calls hooks and returns an `Outcome`; it never writes to the store itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from itsm_bridge import notices, postmortem, signals
from itsm_bridge.models import (
    ACTOR,
    Event,
    ExternalRecord,
    Notice,
    ReleaseNotes,
    ReleaseState,
    Signal,
)
from itsm_bridge.outcome import Outcome, StepContext
from itsm_bridge.steps_plan import StepEnv

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def collect_signals(
    env: StepEnv, ctx: StepContext, until: datetime | None = None, enough: int | None = None
) -> list[Signal]:
    """New firing signals at or above `policy.failure_severity`, started since the deployment
    began (less `policy.clock_skew_seconds`) and, when given, by `until` (the end of the
    watch): from those recorded with the release (pushed alerts) and from `detect_failure`.
    When the recorded ones number `enough` already (a pushed alert fails the release), the
    plugins are not asked: the rollback does not wait for their answers.

    Vendors stamp whole seconds, so the deployment start is compared to the second.
    """
    policy = env.settings.policy
    began = (ctx.release.deploy_started_at or ctx.now).replace(microsecond=0)
    since = began - timedelta(seconds=policy.clock_skew_seconds)
    seen = {s["key"] if isinstance(s, dict) else s for s in ctx.step.state.get("seen", [])}
    threshold = SEVERITY_RANK[policy.failure_severity]

    def new(found: list[Signal]) -> list[Signal]:
        unique = {s.key: s for s in found}  # one per key: an alert polled and pushed is one
        return [
            s
            for s in unique.values()
            if s.key not in seen
            and signals.firing(s)
            and s.at >= since
            and (until is None or s.at <= until)
            and SEVERITY_RANK[s.severity] >= threshold
        ]

    stored = signals.stored(ctx.core)
    recorded = new(stored)
    if enough is not None and len(recorded) >= enough:
        return recorded
    polled = [
        s
        for result in env.host.hook.detect_failure(release=ctx.release, since=since)
        for s in result
    ]
    return new(polled + stored)


def step_notify(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 15: tell the stakeholders, with the notes, or the failure and its evidence.

    A failed delivery is recorded (`release show`), never a failure of the release.
    """
    release = ctx.release
    notes = ReleaseNotes(**ctx.core["notes"]) if ctx.core.get("notes") else None
    if release.failure_reason:
        evidence = ctx.core.get("failure_evidence") or {}
        lines = ["The release was rolled back.", f"Reason: {release.failure_reason}"]
        lines += [f"- {key}: {value}" for key, value in sorted(evidence.items())]
        told = notices.notice(
            env.settings, release, "rolled_back", lines, notes=notes, evidence=evidence
        )
    else:
        told = notices.notice(env.settings, release, "succeeded", [], notes=notes)
    return _notified(env, ctx, told, Outcome.done)


def _notified(env: StepEnv, ctx: StepContext, told: Notice, make: Any, **kw: Any) -> Outcome:
    """Send a notice and record its deliveries in the outcome `make` builds."""
    deliveries, event = notices.send(env.host, ctx.release, told)
    failed = sum(1 for d in deliveries if not d.ok)
    detail = f"stakeholders notified: {told.subject}" + (
        f" ({failed} of {len(deliveries)} deliveries failed)" if failed else ""
    )
    return make(
        detail,
        events=[event, *kw.pop("events", [])],
        core={"deliveries": notices.recorded(ctx.core, told.kind, deliveries)},
        **kw,
    )


def step_post_mortem(env: StepEnv, ctx: StepContext, timeline: list[Event]) -> Outcome:
    """Step 16: the post-mortem from the audit trail and its follow-ups in the backlog, then
    (committed first, a second pass) the meeting invitation (see `itsm_bridge.postmortem`)."""
    release = ctx.release
    if not postmortem.wanted(env.settings, release):
        return Outcome.skipped(
            "the release succeeded: no post-mortem (policy.post_mortem.after_success)"
        )
    if "documents" not in ctx.step.state:
        return write_post_mortem(env, ctx, timeline)
    urls: list[str] = ctx.step.state["documents"]
    follow_ups: list[str] = ctx.step.state.get("follow_up_titles", [])
    pm = env.settings.policy.post_mortem
    service = env.settings.services.get(release.service)
    team = list(dict.fromkeys([*(service.stakeholders if service else []), *pm.attendees]))
    document = urls[0] if urls else ""
    invite = postmortem.invitation(env.settings, release, ctx.now, team, document)
    lines = [f"Post-mortem of {release.title}: {', '.join(urls) or 'no document'}."]
    lines += [f"Follow-up: {title}" for title in follow_ups]
    told = notices.notice(env.settings, release, "post_mortem", lines, attachments=[invite])
    told = told.model_copy(update={"recipients": team})
    outcome: Outcome = _notified(env, ctx, told, Outcome.done)
    keys = ctx.step.state.get("follow_ups", [])
    outcome.detail = f"post-mortem written ({len(urls)} document(s), {len(keys)} follow-up(s))"
    return outcome


def write_post_mortem(env: StepEnv, ctx: StepContext, timeline: list[Event]) -> Outcome:
    """The documents and the follow-ups (each found again by its source key on a re-run)."""
    release = ctx.release
    report = postmortem.report(release, timeline, ctx.steps, ctx.core)
    records = [
        r for result in env.host.hook.post_mortem(release=release, report=report) for r in result
    ]
    keys: list[str] = []
    if env.settings.policy.post_mortem.follow_ups and env.implemented("add_to_backlog"):
        for index, title in enumerate(report.follow_ups, start=1):
            work = postmortem.follow_up_item(release, index, title)
            item = env.host.hook.add_to_backlog(item=work)
            if item is not None:
                keys.append(item.key)
                records.append(
                    ExternalRecord(system=item.system, kind="follow_up", id=item.key, url=item.url)
                )
    urls = [r.url or r.id for r in records if r.kind == "post_mortem"]
    return Outcome.progress(
        f"post-mortem written; {len(keys)} follow-up(s) in the backlog",
        records=records,
        events=[postmortem.written_event(urls, keys)],
        state={"documents": urls, "follow_ups": keys, "follow_up_titles": report.follow_ups},
    )


def step_service_levels(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 17: update service levels with what the release changed; say what was written."""
    plugins = env.implemented("update_service_levels")
    if not plugins:
        return Outcome.done("no service-level plugin enabled: nothing to update")
    written = [
        line
        for result in env.host.hook.update_service_levels(release=ctx.release)
        for line in result or []
    ]
    if not written:
        return Outcome.done(f"service levels already current ({', '.join(plugins)})")
    event = Event(
        actor=ACTOR,
        kind="service_levels",
        message=f"service levels updated: {'; '.join(written)}",
        evidence={"written": written, "prescribed": ctx.release.service_levels},
    )
    return Outcome.done(f"service levels updated: {'; '.join(written)}", events=[event])


def step_early_life_support(env: StepEnv, ctx: StepContext) -> Outcome:
    """Step 18: major releases are watched for `policy.els_days`; others skip it.

    Signals during the watch are attached to the release (`seen`) and told as they come;
    the stakeholders are told when it starts and, with a summary, when it ends (on time, or
    early with `release end-support`).
    """
    release = ctx.release
    state = release.state
    if state == ReleaseState.ROLLED_BACK:
        return Outcome.skipped("the release was rolled back", transition=ReleaseState.CLOSED)
    if state == ReleaseState.SUCCEEDED and not release.major:
        return Outcome.skipped("not a major release", transition=ReleaseState.CLOSED)
    if state == ReleaseState.SUCCEEDED:
        until_at = ctx.now + timedelta(days=env.settings.policy.els_days)
        lines = [f"{release.title} is in early life support until {until_at:%Y-%m-%d %H:%M} UTC."]
        told = notices.notice(env.settings, release, "els_started", lines)
        return _notified(
            env,
            ctx,
            told,
            Outcome.progress,
            state={"until": until_at.isoformat()},
            transition=ReleaseState.EARLY_LIFE_SUPPORT,
        )
    until_at = datetime.fromisoformat(ctx.step.state["until"])
    new = collect_signals(env, ctx, until=until_at)
    if new and env.settings.policy.els_auto_rollback:
        first = new[0]
        return Outcome.failure(
            f"during early life support: {first.source}: {first.summary}",
            {"signals": [s.model_dump(mode="json") for s in new]},
        )
    if new:
        seen = [*ctx.step.state.get("seen", []), *(s.model_dump(mode="json") for s in new)]
        lines = [f"{s.source}: {s.summary} ({s.key})" for s in new]
        evidence = {"signals": [s.model_dump(mode="json") for s in new]}
        told = notices.notice(env.settings, release, "els_incident", lines, evidence=evidence)
        events = [signal_event(s) for s in new]  # e.g. an incident opened for each
        return _notified(env, ctx, told, Outcome.progress, state={"seen": seen}, events=events)
    ended_by = ctx.step.state.get("ended_by")
    if ctx.now >= until_at or ended_by:
        seen = ctx.step.state.get("seen", [])
        how = f"ended early by {ended_by}" if ended_by else "ended"
        lines = [f"Early life support of {release.title} {how}: {len(seen)} incident(s)."]
        lines += [f"- {s['source']}: {s['summary']} ({s['key']})" for s in seen]
        told = notices.notice(env.settings, release, "els_ended", lines, evidence={"seen": seen})
        return _notified(env, ctx, told, Outcome.done, transition=ReleaseState.CLOSED)
    return Outcome.waiting(
        f"early life support until {until_at:%Y-%m-%d %H:%M}Z",
        retry_at=env.next_look(ctx.now, until_at),
    )


def signal_event(signal: Signal) -> Event:
    """The `signal` event: a signal during early life support that did not roll it back."""
    return Event(
        actor=signal.source,
        kind="signal",
        message=f"{signal.source}: {signal.summary}",
        evidence={"key": signal.key, **signal.evidence},
    )
