"""Step 7 on the change_request: the approval decision and the compliance findings.

Approval: the change's `approval` field (`not requested`, `requested`, `approved`, `rejected`;
change_request field list, ServiceNowDocs `api-reference/rest-apis/change-management-api.md`)
read together with its `state`. Scheduled is "fully scheduled and authorized" ("State model
and transitions", `c_ChangeStateModel.md`), so the change is approved only when `approval` is
`approved` and the change reached Scheduled or a later state: a standard change is created
with `approval` approved but is not scheduled yet, and an approval field that says approved
while the change still sits in Assess or Authorize is the model between two approval levels.
Rejected: `approval` is `rejected` (the approvers send the change back to New), or someone
canceled the change in ServiceNow. Pending otherwise. Who decided and why live on the approval
records, `sysapproval_approver` (`sysapproval` = the change, `approver`, `state`), with the
approver's comment in their `comments` journal. Instances that hide that table from the
integration user (and the sandbox, which has none) still give the decision; the comment then
comes from the newest `comments`/`work_notes` entry on the change that the bridge did not
write.

Conflicts: the Change Management API (same page). `POST .../change/{sys_id}/conflict` starts
a background check and answers `{"result": "<sys_id of the check>"}`; `GET` answers
`{"result": {"status", "last_run", "record_count", "job_status", "conflicts": [...]}}` "of the
currently running ... or the last completed" check, where `last_run` is when that check
started and every conflict field a `{"display_value", "value"}` object. `status` says
"Conflict" even when `conflicts` is empty, so only the array is read. The bridge reads the
last run before its POST, then polls (`ConflictPoll`: short sleeps, a deadline) until a run
that started after the previous one has finished; past the deadline the step waits
(TransientError) and checks again later. `job_status` codes are not published: the
documented example of a finished check says "2"; the bridge reads them as the execution
tracker's states (0 pending, 1 running, 2 successful, 3 failed, 4 cancelled), an assumption
(see docs/servicenow.md). A check needs the change's CI and planned start and end dates
("Detect conflicts manually", `t_RunManualConflictDetection.md`): without them, or when the
API refuses (403: the user lacks a role of the `change.conflict.role` property, or 400),
the finding says "conflict check not run: <why>", never "no conflicts". An instance without
the API answers 400 "Requested URI does not represent any resource"; a 404 that names a
missing record is the change itself, which needs a human.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from itsm_bridge.errors import NeedsHuman, TransientError
from itsm_bridge.http import HTTPNeedsHuman, HTTPRequestError
from itsm_bridge.models import Approval, Finding, Release
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_servicenow.change_state import (
    CANCELED,
    CLOSED,
    IMPLEMENT,
    MARKER,
    NO_API,
    REVIEW,
    SCHEDULED,
    change_record,
    journal,
    read_change,
)
from itsm_bridge_servicenow.client import Record, ServiceNowClient, parse_sn_datetime, reference

SOURCE = "servicenow"
AUTHORIZED = frozenset({SCHEDULED, IMPLEMENT, REVIEW, CLOSED})
MISSING_RECORD = ("No Record found", "Record doesn't exist")
#: `job_status` of a finished check, and of checks that ended without a result (any other
#: code, e.g. "0" pending or "1" running, is waited for).
DONE, ENDED = "2", {"3": "failed", "4": "was cancelled"}


# -- approval ------------------------------------------------------------------------------
def approval(client: ServiceNowClient, release: Release) -> Approval | None:
    """The approvers' decision on the release's change; None when it has no ServiceNow change."""
    record = change_record(release)
    if record is None:
        return None
    row = read_change(client, record.id, ["approval", "state", "sys_updated_on"])
    status, state = str(row.get("approval") or ""), str(row.get("state") or "")
    at = parse_sn_datetime(str(row.get("sys_updated_on") or ""))
    if state == CANCELED and status != "rejected":
        return Approval(status="rejected", comment="the change was canceled in ServiceNow", at=at)
    if (status == "approved" and state in AUTHORIZED) or status == "rejected":
        return _decision(client, record.id, status, at)
    return Approval(status="pending")


def _decision(client: ServiceNowClient, change_id: str, status: str, at: Any) -> Approval:
    decision = _approver_record(client, change_id, status)
    by, comment = "", ""
    if decision is not None:
        by = str(decision.get("approver.name") or decision.get("approver.user_name") or "")
        by = by or reference(decision.get("approver"))
        at = parse_sn_datetime(str(decision.get("sys_updated_on") or "")) or at
        comment = _latest_text(client, str(decision.get("sys_id") or ""), ("comments",))
    if not comment and status == "rejected":
        comment = _latest_text(client, change_id, ("comments", "work_notes"))
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


# -- findings ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConflictPoll:
    """How long to wait for a conflict check: sleeps between GETs, and a deadline."""

    delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 4.0)
    deadline_seconds: float = 15.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


DEFAULT_POLL = ConflictPoll()


def findings(
    client: ServiceNowClient,
    config: Any,
    bridge: BridgeSettings,
    release: Release,
    poll: ConflictPoll | None = None,
) -> list[Finding]:
    """Back-out plan present, window inside the change's dates, and the conflict check."""
    record = change_record(release)
    if record is None:
        return []
    label = record.number or record.id
    row = read_change(client, record.id, ["backout_plan", "start_date", "end_date", "cmdb_ci"])
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
        why = _cannot_check(release, row)
        if why:
            found.append(not_run(label, why, "warning"))
        else:
            found += conflicts(client, record.id, label, poll or DEFAULT_POLL)
    return found


def _cannot_check(release: Release, row: Record) -> str:
    missing = [name for name in ("start_date", "end_date") if not row.get(name)]
    if missing:
        return f"the change has no planned {' and '.join(n.split('_')[0] for n in missing)} date"
    if not reference(row.get("cmdb_ci")) and not (release.impact and release.impact.cis):
        return "the change has no configuration item"
    return ""


def not_run(label: str, why: str, severity: str = "warning") -> Finding:
    """The finding of a conflict check that did not run: never read as "no conflicts"."""
    return Finding(
        severity=severity,  # type: ignore[arg-type]
        source=SOURCE,
        message=f"conflict check not run: {why}",
        evidence={"change": label},
    )


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


def conflicts(
    client: ServiceNowClient, sys_id: str, label: str, poll: ConflictPoll = DEFAULT_POLL
) -> list[Finding]:
    """Run the conflict check and wait for it; one blocker per conflict found."""
    path = f"/api/sn_chg_rest/change/{sys_id}/conflict"
    try:
        before = _result(client.api("GET", path, "GET change conflict check"))
        client.api("POST", path, "POST change conflict check")
        started = poll.clock()
        for delay in (0.0, *poll.delays):
            if delay:
                if poll.clock() - started + delay > poll.deadline_seconds:
                    break
                poll.sleep(delay)
            result = _result(client.api("GET", path, "GET change conflict check"))
            if not _newer(result, before):
                continue
            job = str(result.get("job_status") or "")
            if job == DONE:
                return [_conflict_finding(entry, label) for entry in result.get("conflicts") or []]
            if job in ENDED:
                return [not_run(label, f"the check {ENDED[job]} (job_status {job})")]
    except HTTPNeedsHuman as exc:
        if exc.status != 403:
            raise
        why = f"the integration user may not run it (a role of change.conflict.role): {exc}"
        return [not_run(label, why)]
    except HTTPRequestError as exc:
        return [_refused(exc, sys_id, label)]
    raise TransientError(
        f"the conflict check of change {label} has not finished after "
        f"{poll.deadline_seconds:g} s; step 7 checks again later"
    )


def _result(answer: Any) -> dict[str, Any]:
    return answer if isinstance(answer, dict) else {}


def _newer(result: dict[str, Any], before: dict[str, Any]) -> bool:
    """Whether `result` is a run that started after the one reported before the POST."""
    last, previous = str(result.get("last_run") or ""), str(before.get("last_run") or "")
    return bool(last) and last > previous  # "YYYY-MM-DD HH:MM:SS" sorts as text


def _refused(exc: HTTPRequestError, sys_id: str, label: str) -> Finding:
    text = str(exc)
    if exc.status == 404 and any(words in text for words in MISSING_RECORD):
        raise NeedsHuman(
            f"change {label} ({sys_id}) is not found by the Change Management API ({text}): "
            "check that it still exists and that the integration user may read it"
        ) from exc
    if exc.status == 404 or NO_API in text:
        why = f"this instance has no Change Management API (/api/sn_chg_rest): {text}"
        return not_run(label, why, "info")
    return not_run(label, f"the instance refused it: {text}")


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
