"""The change_request against the ServiceNow sandbox over real HTTP (through pysnow)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.http import HTTPTransientError
from itsm_bridge.models import Event, Release, ReleaseState
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin

pytestmark = pytest.mark.integration

CHANGES = "/api/now/table/change_request"


def changes(snow: ServiceNowSandbox, release_id: str) -> list[dict[str, Any]]:
    return [
        row for row in snow.store.rows_of("change_request")
        if row.get("correlation_id") == release_id
    ]  # fmt: skip


def step_event(step: int, status: str, at: datetime) -> Event:
    return Event(at=at, actor="bridge", kind="step", message=f"step {step}: {status}",
                 evidence={"step": step, "status": status})  # fmt: skip


def state_event(to: ReleaseState, at: datetime) -> Event:
    return Event(at=at, actor="bridge", kind="state", message=f"-> {to.value}",
                 evidence={"to": to.value})  # fmt: skip


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
    assert "payments/rollback" in row["backout_plan"]
    plan = row["implementation_plan"].splitlines()
    assert plan == ["1. Deploy (job payments/deploy)", "2. Smoke test (job payments/smoke)"]
    assert "payments/smoke" in row["test_plan"]
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


def test_full_walk_new_to_closed(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    ref = plugin.create_change(release, None)
    release.records.append(ref)
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    seen = []

    def deliver(event: Event, state: ReleaseState, **fields: Any) -> str:
        nonlocal release
        release = release.model_copy(update={"state": state, **fields})
        plugin.release_changed(release, event)
        row = snow.record("change_request", ref.id)
        seen.append(row["state"])
        return row["state"]

    assert deliver(step_event(6, "done", at), ReleaseState.PLANNED) == "-5"
    assert (
        deliver(step_event(7, "waiting", at + timedelta(minutes=1)), ReleaseState.PLANNED) == "-3"
    )
    assert snow.record("change_request", ref.id)["approval"] == "requested"
    # not approved yet: a scheduled release cannot push the change past Authorize
    assert (
        deliver(
            state_event(ReleaseState.SCHEDULED, at + timedelta(minutes=2)), ReleaseState.SCHEDULED
        )
        == "-3"
    )
    snow.approve_change(ref.id)  # the CAB approves: the sandbox moves it to Scheduled
    assert deliver(step_event(7, "done", at + timedelta(minutes=3)), ReleaseState.SCHEDULED) == "-2"
    assert (
        deliver(
            state_event(ReleaseState.IMPLEMENTING, at + timedelta(hours=1)),
            ReleaseState.IMPLEMENTING,
        )
        == "-1"
    )
    assert (
        deliver(
            state_event(ReleaseState.SUCCEEDED, at + timedelta(hours=2)), ReleaseState.SUCCEEDED
        )
        == "0"
    )
    assert (
        deliver(state_event(ReleaseState.CLOSED, at + timedelta(hours=3)), ReleaseState.CLOSED)
        == "3"
    )
    assert seen == ["-5", "-3", "-3", "-2", "-1", "0", "3"]
    row = snow.record("change_request", ref.id)
    assert (row["close_code"], row["active"]) == ("successful", "false")
    assert release.id in row["close_notes"]
    patches = snow.requests_to("PATCH", f"{CHANGES}/{ref.id}")
    assert patches and all(r.status < 400 for r in patches)  # the sandbox refused nothing
    states = [r.json()["state"] for r in patches if "state" in (r.json() or {})]
    assert states == ["-4", "-3", "-1", "0", "3"]  # one legal step per PATCH
    notes = snow.journal(ref.id, "work_notes")
    assert len(notes) == 7  # one per event
    assert notes[1]["value"].startswith("[itsm-bridge 2026-12-01T09:01:00+00:00 step #")


def test_failed_release_closes_unsuccessful(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    ref = plugin.create_change(release, None)
    snow.insert("change_request", sys_id="x" * 32)  # another change, untouched
    snow.store.update(snow.store.get("change_request", ref.id),
                      {"state": "-1", "approval": "approved"}, user="admin")  # fmt: skip
    release = release.model_copy(
        update={
            "records": [ref],
            "state": ReleaseState.CLOSED,
            "failure_reason": "smoke test failed",
        }
    )
    plugin.release_changed(release, state_event(ReleaseState.CLOSED, datetime.now(UTC)))
    row = snow.record("change_request", ref.id)
    assert (row["state"], row["close_code"]) == ("3", "unsuccessful")
    assert "smoke test failed" in row["close_notes"]


def test_cancelled_release_cancels_the_change(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    ref = plugin.create_change(release, None)
    release = release.model_copy(update={"records": [ref], "state": ReleaseState.CANCELLED})
    plugin.release_changed(release, state_event(ReleaseState.CANCELLED, datetime.now(UTC)))
    assert snow.record("change_request", ref.id)["state"] == "4"


def test_redelivered_event_adds_no_second_work_note(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    ref = plugin.create_change(release, None)
    release.records.append(ref)
    event = step_event(6, "done", datetime(2026, 12, 1, 9, tzinfo=UTC))
    plugin.release_changed(release, event)
    plugin.release_changed(release, event)
    notes = snow.journal(ref.id, "work_notes")
    assert len(notes) == 1
    assert "step 6: done" in notes[0]["value"]
    other = step_event(6, "done", datetime(2026, 12, 1, 9, 0, 1, tzinfo=UTC))
    plugin.release_changed(release, other)
    assert len(snow.journal(ref.id, "work_notes")) == 2


def test_emergency_change_skips_assess(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release(type="emergency", reason="card fraud spike")
    ref = plugin.create_change(release, None)
    row = snow.record("change_request", ref.id)
    assert (row["type"], row["justification"]) == (
        "emergency",
        "Emergency change: card fraud spike",
    )
    release.records.append(ref)
    plugin.release_changed(release, step_event(7, "waiting", datetime.now(UTC)))
    states = [r.json()["state"] for r in snow.requests_to("PATCH", CHANGES) if r.json()]
    assert states == ["-3"]


def test_rejected_approval_carries_the_comment(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    ref = plugin.create_change(release, None)
    release.records.append(ref)
    pending = plugin.approval_status(release)
    assert pending is not None and pending.status == "pending"
    plugin.release_changed(release, step_event(7, "waiting", datetime.now(UTC)))
    snow.reject_change(ref.id, "Not during the payments peak, please")
    decision = plugin.approval_status(release)
    assert decision is not None
    assert (decision.status, decision.comment) == (
        "rejected",
        "Not during the payments peak, please",
    )
    assert decision.at is not None


def test_approved_without_approval_records(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    ref = plugin.create_change(release, None)
    release.records.append(ref)
    snow.approve_change(ref.id, "ok")
    decision = plugin.approval_status(release)
    assert decision is not None and decision.status == "approved"
    assert plugin.approval_status(make_release()) is None  # no change on that release


def test_findings_blackout_conflict_from_the_conflict_api(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    start = datetime(2026, 12, 19, 21, tzinfo=UTC)  # inside the year-end freeze
    release = make_release(window_start=start, window_end=start + timedelta(hours=2))
    ref = plugin.create_change(release, None)
    release.records.append(ref)
    found = plugin.evaluate_change(release)
    assert [f.severity for f in found] == ["blocker"]
    assert found[0].evidence["type"] == "blackout"
    assert found[0].evidence["schedule"] == "Year-end freeze"
    assert "Blackout" in found[0].message


def test_findings_clean_change_has_none(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    # Saturday 2026-12-05 22:00-23:00 Berlin: inside the weekly maintenance window
    start = datetime(2026, 12, 5, 21, tzinfo=UTC)
    release = make_release(window_start=start, window_end=start + timedelta(hours=1))
    ref = plugin.create_change(release, None)
    release.records.append(ref)
    assert plugin.evaluate_change(release) == []
    assert snow.requests_to("POST", f"/api/sn_chg_rest/change/{ref.id}/conflict")


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


def test_standard_change_without_template_walks_new_to_scheduled(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release(type="standard")
    ref = plugin.create_change(release, None)
    assert snow.record("change_request", ref.id)["type"] == "standard"
    release.records.append(ref)
    plugin.release_changed(release, step_event(7, "waiting", datetime.now(UTC)))
    assert snow.record("change_request", ref.id)["state"] == "-5"  # no Assess/Authorize
    scheduled = release.model_copy(update={"state": ReleaseState.SCHEDULED})
    plugin.release_changed(scheduled, state_event(ReleaseState.SCHEDULED, datetime.now(UTC)))
    assert snow.record("change_request", ref.id)["state"] == "-2"
    decision = plugin.approval_status(release)
    assert decision is not None and decision.status == "approved"  # pre-approved
