"""Step 7 on the change_request: the approval decision and the compliance findings.

Approval: the change's `approval` field (`not requested`, `requested`, `approved`, `rejected`;
change_request field list, ServiceNowDocs `api-reference/rest-apis/change-management-api.md`).
Who decided and why live on the approval records, `sysapproval_approver` (`sysapproval` = the
change, `approver`, `state`; queried the same way by public integrations, e.g.
`sysapproval_approver?sysparm_query=sysapproval=<sys_id>^state=approved`), with the approver's
comment in their `comments` journal. Instances that hide that table from the integration user
(and the sandbox, which has none) still give the decision; the comment then comes from the
newest `comments`/`work_notes` entry on the change that the bridge did not write.

Conflicts: the Change Management API ("Change Management - POST/GET
/sn_chg_rest/change/{sys_id}/conflict", same page): POST starts a check and answers
`{"result": "<sys_id of the check>"}`; GET answers `{"result": {"status", "last_run",
"record_count", "job_status", "conflicts": [...]}}` with every conflict field a
`{"display_value", "value"}` object. The docs warn that `status` says "Conflict" even when
`conflicts` is empty, so only the array is read; "Not Run" means no check has finished yet.
An instance without the API answers 400 "Requested URI does not represent any resource" (or
404): the check is then reported as unavailable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from itsm_bridge.errors import TransientError
from itsm_bridge.http import HTTPNeedsHuman, HTTPRequestError
from itsm_bridge.models import Approval, Finding, Release
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_servicenow.change_state import (
    MARKER,
    change_record,
    journal,
    read_change,
)
from itsm_bridge_servicenow.client import Record, ServiceNowClient, parse_sn_datetime, reference

SOURCE = "servicenow"
NO_API = "Requested URI does not represent any resource"


def approval(client: ServiceNowClient, release: Release) -> Approval | None:
    """The CAB's decision on the release's change; None when it has no ServiceNow change."""
    record = change_record(release)
    if record is None:
        return None
    row = read_change(client, record.id, ["approval", "sys_updated_on"])
    status = str(row.get("approval") or "")
    if status not in ("approved", "rejected"):
        return Approval(status="pending")
    decision = _approver_record(client, record.id, status)
    by, at, comment = "", parse_sn_datetime(str(row.get("sys_updated_on") or "")), ""
    if decision is not None:
        by = str(decision.get("approver.name") or decision.get("approver.user_name") or "")
        by = by or reference(decision.get("approver"))
        at = parse_sn_datetime(str(decision.get("sys_updated_on") or "")) or at
        comment = _latest_text(client, str(decision.get("sys_id") or ""), ("comments",))
    if not comment and status == "rejected":
        comment = _latest_text(client, record.id, ("comments", "work_notes"))
    return Approval(status=status, by=by, comment=comment, at=at)  # type: ignore[arg-type]


def _approver_record(client: ServiceNowClient, change_id: str, status: str) -> Record | None:
    """The newest approval record with that decision, or None when none can be read."""
    query = f"sysapproval={change_id}^state={status}^ORDERBYDESCsys_updated_on"
    fields = ["sys_id", "approver", "approver.name", "approver.user_name", "sys_updated_on"]
    try:
        rows = client.query("sysapproval_approver", query, fields, limit=1)
    except (HTTPRequestError, HTTPNeedsHuman):
        return None  # no such table (sandbox) or no read access to it: decision only
    return rows[0] if rows else None


def _latest_text(client: ServiceNowClient, sys_id: str, elements: tuple[str, ...]) -> str:
    """The newest journal entry on a record that the bridge did not write."""
    if not sys_id:
        return ""
    for entry in journal(client, sys_id, elements, limit=10):
        text = str(entry.get("value") or "").strip()
        if text and not text.startswith(MARKER):
            return text
    return ""


def findings(
    client: ServiceNowClient, config: Any, bridge: BridgeSettings, release: Release
) -> list[Finding]:
    """Back-out plan present, window inside the change's dates, and the conflict check."""
    record = change_record(release)
    if record is None:
        return []
    label = record.number or record.id
    row = read_change(client, record.id, ["backout_plan", "start_date", "end_date"])
    found = []
    if not str(row.get("backout_plan") or "").strip():
        rollback = f"services.{release.service}.jobs.rollback"
        found.append(Finding(
            severity="blocker", source=SOURCE,
            message=f"change {label} has no back-out plan: set {rollback}, or write the plan "
            "on the change in ServiceNow",
            evidence={"change": label},
        ))  # fmt: skip
    window = _window_finding(release, row, label)
    if window is not None:
        found.append(window)
    if config.conflict_check:
        found += conflicts(client, record.id, label)
    return found


def _window_finding(release: Release, row: Record, label: str) -> Finding | None:
    start = parse_sn_datetime(str(row.get("start_date") or ""))
    end = parse_sn_datetime(str(row.get("end_date") or ""))
    if release.window_start is None or release.window_end is None:
        return None
    inside = start is not None and end is not None and start <= release.window_start
    if inside and end is not None and release.window_end <= end:
        return None
    return Finding(
        severity="blocker", source=SOURCE,
        message=f"the release window {_iso(release.window_start)} - {_iso(release.window_end)} "
        f"is outside change {label}'s planned dates ({_iso(start)} - {_iso(end)}): move the "
        "change's planned start and end dates, or reschedule the release",
        evidence={"change": label, "window_start": _iso(release.window_start),
                  "window_end": _iso(release.window_end), "start_date": _iso(start),
                  "end_date": _iso(end)},
    )  # fmt: skip


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "none"


def conflicts(client: ServiceNowClient, sys_id: str, label: str) -> list[Finding]:
    """Run the Change Management conflict check; one blocker per conflict found."""
    path = f"/api/sn_chg_rest/change/{sys_id}/conflict"
    try:
        client.api("POST", path, "POST change conflict check")
        result = client.api("GET", path, "GET change conflict check")
    except HTTPRequestError as exc:
        if exc.status == 404 or NO_API in str(exc):
            return [Finding(
                severity="info", source=SOURCE,
                message="conflict check unavailable: this instance has no Change Management "
                f"API (/api/sn_chg_rest); blackout and maintenance schedules are still read "
                f"({exc})",
                evidence={"change": label},
            )]  # fmt: skip
        raise
    if not isinstance(result, dict):
        result = {}
    if str(result.get("status") or "") == "Not Run":
        raise TransientError(f"the conflict check of change {label} has not finished yet")
    return [_conflict_finding(entry, label) for entry in result.get("conflicts") or []]


def _field(entry: dict[str, Any], name: str) -> tuple[str, str]:
    """(display value, value) of a conflict field given as {display_value, value} or plain."""
    raw = entry.get(name)
    if isinstance(raw, dict):
        return str(raw.get("display_value") or raw.get("value") or ""), str(raw.get("value") or "")
    return str(raw or ""), str(raw or "")


def _conflict_finding(entry: dict[str, Any], label: str) -> Finding:
    kind, kind_value = _field(entry, "type")
    ci, ci_id = _field(entry, "configuration_item")
    related, _ = _field(entry, "related_configuration_item")
    schedule, schedule_id = _field(entry, "schedule")
    rival, _ = _field(entry, "conflicting_change")
    where = f" on {ci}" if ci else ""
    via = f" (through {related})" if related else ""
    what = f" with schedule {schedule}" if schedule else ""
    what += f" with change {rival}" if rival else ""
    return Finding(
        severity="blocker", source=SOURCE,
        message=f"change {label} conflict: {kind or 'conflict'}{where}{via}{what}",
        evidence={"change": label, "type": kind_value or kind, "ci": ci, "ci_sys_id": ci_id,
                  "related_ci": related, "schedule": schedule, "schedule_sys_id": schedule_id,
                  "conflicting_change": rival},
    )  # fmt: skip
