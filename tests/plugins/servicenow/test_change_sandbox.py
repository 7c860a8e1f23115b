"""The change_request against the ServiceNow sandbox over real HTTP (through pysnow): the
bridge asks, the approvers (the sandbox's helpers) decide, the change model refuses the rest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.http import HTTPTransientError
from itsm_bridge.models import Event, Release, ReleaseState, TaskSpec
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin, change_review

pytestmark = pytest.mark.integration

CHANGES = "/api/now/table/change_request"
AT = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The conflict check's polling sleeps, recorded instead of slept."""
    recorded: list[float] = []
    poll = change_review.ConflictPoll(sleep=recorded.append)
    monkeypatch.setattr(change_review, "DEFAULT_POLL", poll)
    yield recorded


def changes(snow: ServiceNowSandbox, release_id: str) -> list[dict[str, Any]]:
    return [
        row for row in snow.store.rows_of("change_request")
        if row.get("correlation_id") == release_id
    ]  # fmt: skip


def ev(kind: str, message: str, minute: int = 0, **evidence: Any) -> Event:
    return Event(at=AT + timedelta(minutes=minute), actor="itsm-bridge", kind=kind,
                 message=message, evidence=evidence)  # fmt: skip


def pending(minute: int = 0) -> Event:
    return ev("approval", "approval of the change requested", minute, status="pending")


def state_event(to: ReleaseState, minute: int = 0) -> Event:
    return ev("state", f"-> {to.value}", minute, to=to.value)


def bridge_states(snow: ServiceNowSandbox, sys_id: str) -> list[str]:
    """The states the bridge PATCHed on the change, in order (refused ones included)."""
    bodies = [r.json() or {} for r in snow.requests_to("PATCH", f"{CHANGES}/{sys_id}")]
    return [body["state"] for body in bodies if "state" in body]


def notes(snow: ServiceNowSandbox, sys_id: str) -> list[str]:
    bodies = [r.json() or {} for r in snow.requests_to("PATCH", f"{CHANGES}/{sys_id}")]
    return [body["work_notes"] for body in bodies if "work_notes" in body]


def with_change(plugin: ServiceNowPlugin, release: Release) -> Release:
    ref = plugin.create_change(release, None)
    return release.model_copy(update={"records": [ref]})


def test_create_fills_the_change_and_a_second_call_finds_it(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    ref = plugin.create_change(release, None)
    row = snow.record("change_request", ref.id)
    assert ref.number == row["number"] and ref.number.startswith("CHG")
    assert ref.url == f"{snow.url}/nav_to.do?uri=change_request.do?sys_id={ref.id}"
    assert row["correlation_id"] == release.id
    assert row["correlation_display"] == "itsm-bridge"
    assert row["short_description"] == "payments 1.4.0: Faster refunds"
    assert (row["start_date"], row["end_date"]) == ("2026-12-05 21:00:00", "2026-12-05 23:00:00")
    assert row["cmdb_ci"] == snow.record("cmdb_ci", "payments-api")["sys_id"]
    assert row["assignment_group"] == snow.record("sys_user_group", "Change Management")["sys_id"]
    assert (row["risk"], row["impact"], row["category"]) == ("3", "2", "Software")

    again = plugin.create_change(release, None)
    assert again.id == ref.id
    assert len(changes(snow, release.id)) == 1


def test_lost_create_response_then_retry_finds_the_one_change(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    snow.fail_next("POST", CHANGES, 500, fail_after_write=True)
    with pytest.raises(HTTPTransientError):
        plugin.create_change(release, None)
    assert len(snow.requests_to("POST", CHANGES)) == 1  # a create is never retried
    ref = plugin.create_change(release, None)
    assert [row["sys_id"] for row in changes(snow, release.id)] == [ref.id]
    assert len(snow.requests_to("POST", CHANGES)) == 1


def test_missing_ci_needs_a_human(
    snow: ServiceNowSandbox,
    make_plugin: Callable[..., ServiceNowPlugin],
    make_release: Callable[..., Release],
) -> None:
    plugin = make_plugin()
    plugin.bridge.services["payments"].ci = "no-such-ci"
    with pytest.raises(NeedsHuman, match="no-such-ci"):
        plugin.create_change(make_release(), None)
    assert changes(snow, make_release().id) == []


# -- a whole release: the realistic event sequence ------------------------------------------
SPECS = [
    TaskSpec(key="stop-database", name="Stop database", group="Database Administration"),
    TaskSpec(key="deploy", name="Deploy", purpose="deploy"),
    TaskSpec(key="start-database", name="Start database", group="Database Administration"),
    TaskSpec(key="smoke-test", name="Smoke test", purpose="smoke_test"),
]


def chatter(*steps: int, minute: int) -> list[Event]:
    """What a step's progress says: running, waiting, done; none of it worth a note."""
    return [
        ev("step", f"step {n}: {status}", minute, step=n, status=status)
        for n in steps
        for status in ("running", "waiting", "done")
    ]


def test_a_servicenow_only_release_writes_at_most_15_notes_once_each(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    """No Jenkins: deploy and smoke test are manual; four manual tasks; create to close."""
    plain = make_release()
    staged = with_change(plugin, plain)
    sys_id = staged.records[0].id
    records = plugin.create_tasks(staged, SPECS)
    assert records is not None
    tasks = [
        {"key": s.key, "name": s.name, "kind": "manual", "group": s.group,
         "record": r.model_dump(mode="json")}
        for s, r in zip(SPECS, records, strict=True)
    ]  # fmt: skip
    at = {ReleaseState.PLANNED: staged}

    def rel(state: ReleaseState) -> Release:
        return at.setdefault(state, staged.model_copy(update={"state": state}))

    planned, scheduled = ReleaseState.PLANNED, ReleaseState.SCHEDULED
    implementing, verifying = ReleaseState.IMPLEMENTING, ReleaseState.VERIFYING
    succeeded, closed = ReleaseState.SUCCEEDED, ReleaseState.CLOSED
    sequence: list[tuple[Release, Event]] = [(plain, ev("created", "release created"))]
    sequence += [(plain, e) for e in chatter(8, 5, 10, minute=1)]
    sequence += [(staged, e) for e in chatter(6, 3, 4, minute=2)]
    sequence += [(staged, ev("tasks", "4 tasks planned", 3, tasks=tasks))]
    sequence += [(staged, e) for e in chatter(9, minute=3)]
    found = [{"severity": "warning", "source": "servicenow", "message": "a warning"}]
    sequence += [(staged, ev("findings", "1 finding, no blocker", 4, findings=found))]
    sequence += [(staged, pending(5))]
    sequence += [(staged, ev("step", "step 7: waiting", 5, step=7, status="waiting"))] * 3
    for release, event in sequence:
        plugin.release_changed(release, event)
    assert snow.record("change_request", sys_id)["state"] == "-4"  # the bridge asked
    snow.approve_change(sys_id, "tech and CAB: go")  # Assess -> Authorize -> Scheduled
    later: list[tuple[Release, Event]] = [
        (rel(planned), ev("approval", "change approved", 6, status="approved", by="cab")),
        *[(rel(planned), e) for e in chatter(7, minute=6)],
        (rel(scheduled), state_event(scheduled, 7)),
        (rel(implementing), state_event(implementing, 8)),
        *[(rel(implementing), e) for e in chatter(11, minute=8)],
    ]
    minute = 9
    for task in tasks[:3]:
        later.append((rel(implementing), ev("task", f"{task['name']} done", minute,
                      task=task["key"], name=task["name"], status="done", note="ok")))  # fmt: skip
        minute += 1
    later += [(rel(verifying), state_event(verifying, 12))]
    later += [(rel(verifying), ev("task", "Smoke test done", 13, task="smoke-test",
               name="Smoke test", status="done", note="ok"))]  # fmt: skip
    later += [(rel(verifying), e) for e in chatter(12, 13, minute=13)]
    later += [(rel(succeeded), state_event(succeeded, 14))]
    later += [(rel(succeeded), e) for e in chatter(15, 16, 17, minute=14)]
    later += [(rel(closed), state_event(closed, 15))]
    for release, event in later:
        plugin.release_changed(release, event)

    written = notes(snow, sys_id)
    assert len(written) == 13 and len(written) <= 15
    assert written[-1].endswith("work notes written by itsm-bridge on this change: 13")
    assert len(snow.journal(sys_id, "work_notes")) == 13
    assert bridge_states(snow, sys_id) == ["-4", "-1", "0", "3"]  # never -3 or -2
    row = snow.record("change_request", sys_id)
    assert (row["state"], row["close_code"], row["approval"]) == ("3", "successful", "approved")
    assert sum(1 for note in written if "CTASK" in note) == 1  # the task links, once

    patches = len(snow.requests_to("PATCH", CHANGES))
    for release, event in sequence + later:  # every event delivered again
        plugin.release_changed(release, event)
    assert len(snow.requests_to("PATCH", CHANGES)) == patches
    assert len(snow.journal(sys_id, "work_notes")) == 13


def test_rejected_change_blocks_and_a_retry_asks_again(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = with_change(plugin, make_release())
    sys_id = release.records[0].id
    first = plugin.approval_status(release)
    assert first is not None and first.status == "pending"
    plugin.release_changed(release, pending())
    snow.approve_change(sys_id, levels=1)  # technical approval: on to the CAB
    snow.reject_change(sys_id, "Not during the payments peak, please")
    decision = plugin.approval_status(release)
    assert decision is not None
    assert (decision.status, decision.comment) == (
        "rejected",
        "Not during the payments peak, please",
    )
    assert decision.at is not None
    plugin.release_changed(release, pending())  # a redelivery does not overrule the CAB
    assert snow.record("change_request", sys_id)["state"] == "-5"
    plugin.release_changed(release, ev("retry", "blocked steps will run again", 30))
    row = snow.record("change_request", sys_id)
    assert (row["state"], row["approval"]) == ("-4", "requested")  # asked again
    again = plugin.approval_status(release)
    assert again is not None and again.status == "pending"
    plugin.release_changed(release, pending(31))  # the core's new request: already asked
    snow.approve_change(sys_id)
    approved = plugin.approval_status(release)
    assert approved is not None and approved.status == "approved"
    assert bridge_states(snow, sys_id) == ["-4", "-4"]


def test_emergency_change_asks_the_cab_directly(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = with_change(plugin, make_release(type="emergency", reason="card fraud spike"))
    sys_id = release.records[0].id
    row = snow.record("change_request", sys_id)
    assert (row["type"], row["justification"]) == (
        "emergency",
        "Emergency change: card fraud spike",
    )
    plugin.release_changed(release, pending())
    assert bridge_states(snow, sys_id) == ["-3"]
    snow.approve_change(sys_id, levels=1)  # the CAB: Authorize -> Scheduled
    decision = plugin.approval_status(release)
    assert decision is not None and decision.status == "approved"


def test_a_change_whose_own_type_differs_follows_its_own_model(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = with_change(plugin, make_release())  # the release says normal
    sys_id = release.records[0].id
    snow.store.update(snow.store.get("change_request", sys_id), {"type": "emergency"})
    plugin.release_changed(release, pending())
    assert bridge_states(snow, sys_id) == ["-3"]  # emergency: New -> Authorize, no Assess
    assert snow.record("change_request", sys_id)["approval"] == "requested"
    snow.approve_change(sys_id, levels=1)
    implementing = release.model_copy(update={"state": ReleaseState.IMPLEMENTING})
    plugin.release_changed(implementing, state_event(ReleaseState.IMPLEMENTING, 1))
    assert snow.record("change_request", sys_id)["state"] == "-1"


def test_standard_change_is_scheduled_by_the_bridge_and_preapproved(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = with_change(plugin, make_release(type="standard"))
    sys_id = release.records[0].id
    first = plugin.approval_status(release)
    assert first is not None and first.status == "pending"  # approved, but not scheduled yet
    plugin.release_changed(release, pending())
    assert bridge_states(snow, sys_id) == ["-2"]
    decision = plugin.approval_status(release)
    assert decision is not None and decision.status == "approved"


def test_without_the_change_management_api_the_built_in_model_walks_it(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    snow.change_api = False
    release = with_change(plugin, make_release())
    sys_id = release.records[0].id
    plugin.release_changed(release, pending())
    snow.approve_change(sys_id)
    for minute, state in enumerate((ReleaseState.IMPLEMENTING, ReleaseState.SUCCEEDED), 1):
        moved = release.model_copy(update={"state": state})
        plugin.release_changed(moved, state_event(state, minute))
    assert bridge_states(snow, sys_id) == ["-4", "-1", "0"]
    assert len(snow.requests_to("GET", "/api/sn_chg_rest/")) == 1  # tried once, remembered
    [finding] = plugin.evaluate_change(release)
    assert finding.severity == "info" and "no Change Management API" in finding.message


def test_failed_release_closes_unsuccessful(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    ref = plugin.create_change(release, None)
    snow.store.update(snow.store.get("change_request", ref.id),
                      {"state": "-1", "approval": "approved"}, user="admin")  # fmt: skip
    release = release.model_copy(
        update={"records": [ref], "state": ReleaseState.CLOSED, "failure_reason": "smoke failed"}
    )
    plugin.release_changed(release, state_event(ReleaseState.CLOSED))
    row = snow.record("change_request", ref.id)
    assert (row["state"], row["close_code"]) == ("3", "unsuccessful")
    assert "smoke failed" in row["close_notes"]
    assert bridge_states(snow, ref.id) == ["0", "3"]


def test_cancelled_release_cancels_the_change(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = with_change(plugin, make_release())
    plugin.release_changed(release, pending())
    cancelled = release.model_copy(update={"state": ReleaseState.CANCELLED})
    plugin.release_changed(cancelled, ev("cancelled", "cancelled: not needed", 1))
    assert snow.record("change_request", release.records[0].id)["state"] == "4"


# -- findings ----------------------------------------------------------------------------
def test_findings_blackout_conflict_after_the_check_ran(
    snow: ServiceNowSandbox,
    plugin: ServiceNowPlugin,
    make_release: Callable[..., Release],
    sleeps: list[float],
) -> None:
    start = datetime(2026, 12, 19, 21, tzinfo=UTC)  # inside the year-end freeze
    release = make_release(window_start=start, window_end=start + timedelta(hours=2))
    release = with_change(plugin, release)
    found = plugin.evaluate_change(release)
    assert [f.severity for f in found] == ["blocker"]
    assert found[0].evidence["type"] == "blackout"
    assert found[0].evidence["schedule"] == "Year-end freeze"
    assert "Blackout" in found[0].message
    conflict = f"/api/sn_chg_rest/change/{release.records[0].id}/conflict"
    assert len(snow.requests_to("POST", conflict)) == 1
    assert len(snow.requests_to("GET", conflict)) == 3  # before, running, finished
    assert sleeps == [0.5]


def test_findings_clean_change_has_none(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    # Saturday 2026-12-05 22:00-23:00 Berlin: inside the weekly maintenance window
    start = datetime(2026, 12, 5, 21, tzinfo=UTC)
    release = make_release(window_start=start, window_end=start + timedelta(hours=1))
    release = with_change(plugin, release)
    assert plugin.evaluate_change(release) == []
    assert snow.requests_to("POST", f"/api/sn_chg_rest/change/{release.records[0].id}/conflict")


def test_findings_a_change_without_dates_is_not_checked(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = with_change(plugin, make_release(window_start=None, window_end=None))
    [finding] = plugin.evaluate_change(release)
    assert (finding.severity, finding.message) == (
        "warning",
        "conflict check not run: the change has no planned start and end date",
    )
    assert not snow.requests_to("POST", "/api/sn_chg_rest")


def test_findings_missing_backout_and_window_outside_dates(
    snow: ServiceNowSandbox,
    make_plugin: Callable[..., ServiceNowPlugin],
    make_release: Callable[..., Release],
) -> None:
    plugin = make_plugin(conflict_check=False)
    plugin.bridge.services["payments"].jobs.rollback = None
    release = make_release()
    ref = plugin.create_change(release, None)
    assert not snow.record("change_request", ref.id).get("backout_plan")
    assert release.window_end is not None
    later = release.window_end + timedelta(hours=5)
    release = release.model_copy(update={"records": [ref], "window_end": later})
    found = plugin.evaluate_change(release)
    assert [f.severity for f in found] == ["blocker", "blocker"]
    assert "back-out plan" in found[0].message
    assert "outside" in found[1].message and found[1].evidence["end_date"].startswith("2026-12-05")
    assert not snow.requests_to("POST", "/api/sn_chg_rest")


def test_standard_template_on_an_instance_without_the_api_needs_a_human(
    snow: ServiceNowSandbox,
    make_plugin: Callable[..., ServiceNowPlugin],
    make_release: Callable[..., Release],
) -> None:
    plugin = make_plugin(standard_template="0123456789abcdef0123456789abcdef")
    release = make_release(type="standard")
    with pytest.raises(NeedsHuman, match="standard_template"):
        plugin.create_change(release, None)
    assert changes(snow, release.id) == []
