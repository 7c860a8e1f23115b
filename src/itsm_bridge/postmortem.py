"""Step 16: the post-mortem of a release, its follow-ups, and the meeting invitation.

After every failed release (and after successful ones with `policy.post_mortem.
after_success`): the core gathers the report (the audit trail, exactly; the steps and their
durations; the failure's evidence; what was rolled back; the follow-ups), plugins write the
documents (`post_mortem`), each follow-up becomes a backlog item (`add_to_backlog`, found
again by its source key on a re-run), and the transition team is invited to the meeting
through `notify_stakeholders`, with an iCalendar REQUEST (RFC 5546) as attachment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from icalendar import Calendar, Event, vCalAddress, vText

from itsm_bridge.models import (
    ACTOR,
    Attachment,
    PostMortemReport,
    Release,
    StepSummary,
    WorkItem,
)
from itsm_bridge.models import Event as AuditEvent
from itsm_bridge.settings import BridgeSettings
from itsm_bridge.store import StepRow
from itsm_bridge.windows import parse_duration

SOURCE_SYSTEM = "itsm-bridge"


def wanted(settings: BridgeSettings, release: Release) -> bool:
    """Whether the release gets a post-mortem: every failed one, successful ones if asked."""
    return bool(release.failure_reason) or settings.policy.post_mortem.after_success


def follow_ups(release: Release, report_steps: list[StepSummary]) -> list[str]:
    """The actions the post-mortem lists: the failure's root cause, each failed step."""
    if not release.failure_reason:
        return []
    items = [f"Find and fix the root cause of: {release.failure_reason}"]
    for step in report_steps:
        if step.status == "failed" and step.detail and step.detail != release.failure_reason:
            items.append(f"Step {step.number} {step.name} failed: {step.detail}")
    return items


def report(
    release: Release,
    timeline: list[AuditEvent],
    steps: list[StepRow],
    core: dict[str, object],
) -> PostMortemReport:
    """What the post-mortem documents say, from the committed state of the release."""
    summaries = [
        StepSummary(
            number=s.number,
            name=s.name,
            status=s.status,
            started_at=s.started_at,
            finished_at=s.finished_at,
            detail=s.detail,
        )
        for s in steps
    ]
    evidence = core.get("failure_evidence")
    return PostMortemReport(
        timeline=timeline,
        steps=summaries,
        failure_evidence=evidence if isinstance(evidence, dict) else {},
        rolled_back_to=str(core.get("rollback_to") or "") if release.failure_reason else "",
        follow_ups=follow_ups(release, summaries),
    )


def follow_up_item(release: Release, index: int, title: str) -> WorkItem:
    """A follow-up as a work item for the backlog, keyed by the release and its place."""
    return WorkItem(
        source_system=SOURCE_SYSTEM,
        source_kind="problem",
        source_id=f"{release.id}:follow-up:{index}",
        number=f"{release.id}-PM{index}",
        title=title[:250],
        description=f"Follow-up of the post-mortem of release {release.id} ({release.title}).",
        service=release.service,
    )


def meeting_start(settings: BridgeSettings, ended: datetime) -> datetime:
    """`policy.post_mortem.meeting_offset` after the release ended, on the next whole hour."""
    start = ended + parse_duration(settings.policy.post_mortem.meeting_offset)
    if start.minute or start.second or start.microsecond:
        start = start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return start.astimezone(UTC)


def invitation(
    settings: BridgeSettings,
    release: Release,
    ended: datetime,
    attendees: list[str],
    document: str,
) -> Attachment:
    """The meeting as an iCalendar REQUEST (`invite.ics`), one UID per release so a re-sent
    invitation updates the same meeting in the attendees' calendars."""
    start = meeting_start(settings, ended)
    calendar = Calendar()
    calendar.add("prodid", "-//itsm-bridge//post-mortem//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "REQUEST")
    meeting = Event()
    meeting.add("uid", f"{release.id}.post-mortem@itsm-bridge")
    meeting.add("dtstamp", ended.astimezone(UTC))
    meeting.add("dtstart", start)
    meeting.add("dtend", start + parse_duration(settings.policy.post_mortem.meeting_duration))
    meeting.add("summary", f"Post-mortem: {release.title}")
    what = f"failed: {release.failure_reason}" if release.failure_reason else "succeeded"
    meeting.add("description", f"Release {release.id} {what}. Post-mortem: {document}")
    meeting.add("sequence", 0)
    meeting.add("status", "CONFIRMED")
    for address in attendees:
        attendee = vCalAddress(f"mailto:{address}")
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        attendee.params["rsvp"] = vText("TRUE")
        meeting.add("attendee", attendee, encode=False)
    calendar.add_component(meeting)
    return Attachment(
        filename="invite.ics",
        content_type="text/calendar; method=REQUEST; charset=utf-8",
        content=calendar.to_ical().decode(),
    )


def written_event(urls: list[str], backlog_keys: list[str]) -> AuditEvent:
    """The `post_mortem` event: where the documents are and which follow-ups were opened."""
    follow = f"; follow-ups: {', '.join(backlog_keys)}" if backlog_keys else ""
    return AuditEvent(
        actor=ACTOR,
        kind="post_mortem",
        message=f"post-mortem written: {', '.join(urls) or 'no document'}{follow}",
        evidence={"documents": urls, "follow_ups": backlog_keys},
    )
