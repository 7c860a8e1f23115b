"""Steps 15-18 as a release manager sees them: notices, post-mortem, service levels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest

from itsm_bridge.errors import UsageError
from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.inputs import parse_service_levels
from itsm_bridge.models import BacklogItem, Release, WorkItem
from process_harness import Harness

TEAM = ["sre@acme.com", "payments-team@acme.com"]
SERVICE = {
    "jobs": {"build": "b", "deploy": "d", "smoke_test": "s", "rollback": "r"},
    "stakeholders": ["payments-team@acme.com"],
    "service_levels": {"availability": "99.9", "support_hours": "8x5"},
}


class Backlog:
    """A backlog plugin: follow-ups become items, found again by their source key."""

    def __init__(self) -> None:
        self.items: dict[str, BacklogItem] = {}
        self.creates = 0

    @hookimpl
    def add_to_backlog(self, item: WorkItem) -> BacklogItem:
        if item.source_key not in self.items:
            self.creates += 1
            key = f"PAY-{100 + len(self.items)}"
            self.items[item.source_key] = BacklogItem(system="jira", key=key, summary=item.title)
        return self.items[item.source_key]


class Levels:
    """A service-level plugin that records what the release prescribed."""

    def __init__(self) -> None:
        self.prescribed: list[dict[str, str]] = []

    @hookimpl
    def update_service_levels(self, release: Release) -> list[str]:
        self.prescribed.append(dict(release.service_levels))
        return [f"cmdb_ci_service payments: {', '.join(sorted(release.service_levels))}"]


def harness(tmp_path: Path, **policy: Any) -> tuple[Harness, Backlog]:
    h = Harness(
        tmp_path,
        service=SERVICE,
        policy={
            "verify_minutes": 0,
            "post_mortem": {"attendees": ["sre@acme.com"], "meeting_offset": "2d"},
            **policy,
        },
    )
    backlog = Backlog()
    h.process.host.register(backlog, "backlog", version="0", module="t")
    return h, backlog


def test_a_failed_release_gets_its_post_mortem_follow_ups_and_meeting(tmp_path: Path) -> None:
    h, backlog = harness(tmp_path)
    h.vendor.job_results["smoke_test"] = "failed"
    rid = h.create()
    release = h.run(rid, cycles=14)
    assert release.state.value == "closed"
    with h.store.begin() as tx:
        events = tx.events(rid)
        steps = {s.number: s for s in tx.steps(rid)}
        records = tx.records(rid)
    # the timeline is the audit trail, exactly, up to the post-mortem
    document = Path(next(r.id for r in records if r.kind == "post_mortem" and r.key == "md"))
    rows = [line for line in document.read_text().split("## Timeline")[1].splitlines()]
    rows = [r for r in rows if r.startswith("| 20")]
    before = events[: next(i for i, e in enumerate(events) if e.kind == "post_mortem")]
    assert rows == [
        f"| {e.at:%Y-%m-%d %H:%M:%S} | {e.actor} | "
        + e.message.replace("|", "\\|").replace("\n", " ")
        + " |"
        for e in before
    ]
    assert before[-1].message.startswith("step 15 notify: done")
    # the follow-up is in the backlog, once, and linked
    assert backlog.creates == 1
    (item,) = backlog.items.values()
    assert item.summary.startswith("Find and fix the root cause of: Smoke test failed")
    assert any(r.kind == "follow_up" and r.id == item.key for r in records)
    # the meeting invitation went to the stakeholders and the transition team
    told = next(n for n in h.vendor.notices if n.kind == "post_mortem")
    assert told.recipients == ["payments-team@acme.com", "sre@acme.com"]
    (invite,) = told.attachments
    assert invite.content_type.startswith("text/calendar; method=REQUEST")
    calendar = icalendar.Calendar.from_ical(invite.content)
    assert str(calendar["method"]) == "REQUEST"
    (meeting,) = calendar.walk("VEVENT")
    assert str(meeting["uid"]) == f"{rid}.post-mortem@itsm-bridge"
    ended = steps[16].finished_at
    assert ended is not None
    start = meeting.decoded("dtstart")
    assert start - ended <= timedelta(days=2, hours=1) and start - ended >= timedelta(days=2)
    assert (start.minute, start.second) == (0, 0)
    assert meeting.decoded("dtend") - start == timedelta(hours=1)
    assert sorted(str(a) for a in meeting.get("attendee")) == [f"mailto:{a}" for a in sorted(TEAM)]
    assert steps[16].detail == "post-mortem written (2 document(s), 1 follow-up(s))"


def test_a_successful_release_gets_a_post_mortem_only_when_asked(tmp_path: Path) -> None:
    h, backlog = harness(tmp_path)
    rid = h.create()
    assert h.run(rid, cycles=10).state.value == "closed"
    assert h.steps(rid)["post_mortem"] == (
        "skipped",
        "the release succeeded: no post-mortem (policy.post_mortem.after_success)",
    )
    asked, _ = harness(tmp_path / "asked", post_mortem={"after_success": True})
    other = asked.create()
    assert asked.run(other, cycles=10).state.value == "closed"
    assert asked.steps(other)["post_mortem"][0] == "done"
    assert any(n.kind == "post_mortem" for n in asked.vendor.notices)
    assert backlog.creates == 0


def test_service_levels_are_what_the_release_prescribes(tmp_path: Path) -> None:
    h, _ = harness(tmp_path)
    levels = Levels()
    h.process.host.register(levels, "levels", version="0", module="t")
    rid = h.commands.create("payments", "2.0.0", service_levels={"availability": "99.95"}).id
    assert h.run(rid, cycles=10).state.value == "closed"
    assert levels.prescribed == [{"availability": "99.95", "support_hours": "8x5"}]
    assert h.events(rid, "service_levels") == [
        "service levels updated: cmdb_ci_service payments: availability, support_hours; "
        "service payments: version"  # and the fake vendor's own line
    ]


def test_service_level_options() -> None:
    assert parse_service_levels(["availability=99.95", " support_hours = 24x7 "]) == {
        "availability": "99.95",
        "support_hours": "24x7",
    }
    for bad in ("availability", "=1", "two words=1"):
        with pytest.raises(UsageError, match="KEY=VALUE"):
            parse_service_levels([bad])


def test_meeting_start_rounds_up_to_the_hour() -> None:
    from itsm_bridge.postmortem import meeting_start
    from itsm_bridge.settings import settings_from_mapping

    settings = settings_from_mapping({"policy": {"post_mortem": {"meeting_offset": "1d"}}})
    ended = datetime(2026, 12, 5, 21, 17, tzinfo=UTC)
    assert meeting_start(settings, ended) == datetime(2026, 12, 6, 22, tzinfo=UTC)
    on_the_hour = datetime(2026, 12, 5, 21, tzinfo=UTC)
    assert meeting_start(settings, on_the_hour) == datetime(2026, 12, 6, 21, tzinfo=UTC)
