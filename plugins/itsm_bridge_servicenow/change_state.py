"""The change_request's state, kept in step with the release (`release_changed`).

States ("State model and transitions", ServiceNowDocs `it-service-management/change-
management/c_ChangeStateModel.md`): New -5, Assess -4 ("peer review and technical approval"),
Authorize -3 ("Change Management and the CAB ... provide final authorization"), Scheduled -2
("fully scheduled and authorized"), Implement -1, Review 0 (cannot be canceled), Closed 3,
Canceled 4. Normal changes pass every state; emergency changes go from New straight to
Authorize for the CAB ("Change types", `change-types.md`); standard changes are
pre-authorized and "bypass the Assess and Authorize states that trigger approval records".

Approvals belong to the approvers. The bridge, as the change's requester, only asks:
- normal: New -> Assess when step 7 waits for approval (the `approval` event with status
  pending; also a `step` 7 waiting event, the same moment, so an older core still asks);
  the technical approvers move it to Authorize and the CAB to Scheduled;
- emergency: New -> Authorize is the request; the CAB's approval moves it to Scheduled;
- standard: New -> Scheduled is the requester's own move (nothing to approve: the change
  is created pre-approved, and the standard model has no approval state in between).
After a rejection the approvers send the change back to New with approval `rejected`; the
bridge asks again only when a person retries the release (`retry` event) or the core asks
for approval again, never on a redelivered event. Then the bridge moves Scheduled ->
Implement (the release is implementing), Implement -> Review (verified, or rolled back),
Review -> Closed with `close_code`/`close_notes` (closed), and any open state but Review ->
Canceled (cancelled). The change's own `type` picks the model, not the release's.

Before each move, where the instance has the Change Management API, `GET
/api/sn_chg_rest/change/{sys_id}/nextstates` ("Change Management API", `api-reference/
rest-apis/change-management-api.md`) answers `{"result": {"available_states": [...],
"state_label": {...}, "state_transitions": [[{"to_state", "transition_available",
"automatic_transition", "conditions": [{"passed", "condition": {"name"}}]}]]}}`;
`available_states` includes the current state, and `state_transitions` is only filled for
model-driven changes. A move is made when its state is available and, when transitions are
listed for it, one of them is available; otherwise the note says which conditions failed.
An instance without the endpoint (400 "Requested URI does not represent any resource", or
404) is remembered for the client's lifetime and the built-in model above is used; a 403
(a missing role) uses the built-in model for that call only. Work notes: `change_notes`.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from itsm_bridge.errors import NeedsHuman, OperationFailed
from itsm_bridge.http import HTTPNeedsHuman, HTTPRequestError
from itsm_bridge.models import Event, ExternalRecord, Release, ReleaseState, ReleaseType
from itsm_bridge_servicenow.change_notes import (
    MARKER,
    NOTE_LIMIT,
    already_noted,
    clip,
    count_line,
    journal,
    marker,
    noteworthy,
    work_note,
)
from itsm_bridge_servicenow.client import Record, ServiceNowClient

__all__ = [
    "LABELS", "MARKER", "NEW", "NOTE_LIMIT", "SYSTEM", "TABLE", "change_record",
    "journal", "marker", "read_change", "sync", "work_note",
]  # fmt: skip

log = logging.getLogger(__name__)

SYSTEM = "servicenow"
TABLE = "change_request"
NEW, ASSESS, AUTHORIZE, SCHEDULED, IMPLEMENT, REVIEW, CLOSED, CANCELED = (
    "-5", "-4", "-3", "-2", "-1", "0", "3", "4",
)  # fmt: skip
LABELS = {
    NEW: "New", ASSESS: "Assess", AUTHORIZE: "Authorize", SCHEDULED: "Scheduled",
    IMPLEMENT: "Implement", REVIEW: "Review", CLOSED: "Closed", CANCELED: "Canceled",
}  # fmt: skip
NORMAL, EMERGENCY, STANDARD = ReleaseType.NORMAL, ReleaseType.EMERGENCY, ReleaseType.STANDARD
#: The forward path of each change type.
PATHS = {
    NORMAL: (NEW, ASSESS, AUTHORIZE, SCHEDULED, IMPLEMENT, REVIEW, CLOSED),
    EMERGENCY: (NEW, AUTHORIZE, SCHEDULED, IMPLEMENT, REVIEW, CLOSED),
    STANDARD: (NEW, SCHEDULED, IMPLEMENT, REVIEW, CLOSED),
}
#: Rank of every state in the normal model, to compare states across types.
RANK = {state: index for index, state in enumerate(PATHS[NORMAL])}
OPEN = frozenset(PATHS[NORMAL][:-1])
CANCELABLE = OPEN - {REVIEW}  # "You cannot cancel the change request if it is in Review"
#: The state that asks for approval, per type (the requester's move out of New).
REQUEST = {NORMAL: ASSESS, EMERGENCY: AUTHORIZE, STANDARD: SCHEDULED}
_AFTER_SCHEDULED = {(SCHEDULED, IMPLEMENT), (IMPLEMENT, REVIEW), (REVIEW, CLOSED)}
#: Every forward move the bridge writes itself; all others belong to approvers and the model.
BRIDGE_MOVES = {kind: {(NEW, REQUEST[kind]), *_AFTER_SCHEDULED} for kind in PATHS}
#: Release state -> the change state it calls for (planned and scheduled: the approvers').
TARGETS = {
    ReleaseState.IMPLEMENTING: IMPLEMENT,
    ReleaseState.VERIFYING: IMPLEMENT,
    ReleaseState.FAILED: IMPLEMENT,
    ReleaseState.ROLLING_BACK: IMPLEMENT,
    ReleaseState.SUCCEEDED: REVIEW,
    ReleaseState.EARLY_LIFE_SUPPORT: REVIEW,
    ReleaseState.ROLLED_BACK: REVIEW,
    ReleaseState.CLOSED: CLOSED,
    ReleaseState.CANCELLED: CANCELED,
}
EVALUATE_STEP = 7
NO_API = "Requested URI does not represent any resource"
#: Clients of instances that showed they have no `nextstates` endpoint.
_NO_NEXTSTATES: weakref.WeakSet[ServiceNowClient] = weakref.WeakSet()


def change_record(release: Release) -> ExternalRecord | None:
    """The release's ServiceNow change_request record, if step 6 made one."""
    return release.record(SYSTEM, TABLE)


def read_change(client: ServiceNowClient, sys_id: str, fields: list[str]) -> Record:
    """The change by sys_id (`fields` only); NeedsHuman when it no longer exists."""
    row = client.get(TABLE, sys_id, fields)
    if row is None:
        raise NeedsHuman(
            f"change_request {sys_id} no longer exists in ServiceNow: restore it, or remove the "
            "release's change record and run step 6 again"
        )
    return row


def change_type(row: Record, release: Release) -> ReleaseType:
    """The change's own type (its model rules), else the release's."""
    value = str(row.get("type") or "")
    return ReleaseType(value) if value in {t.value for t in ReleaseType} else release.type


# -- what to move -------------------------------------------------------------------------
def asks_for_approval(event: Event) -> bool:
    """Whether the event may be the moment to ask the approvers (see `requests_approval`)."""
    evidence = event.evidence
    if event.kind == "approval":
        return str(evidence.get("status") or "") == "pending"
    if event.kind == "step":
        step_waits = str(evidence.get("status") or "") == "waiting"
        return step_waits and str(evidence.get("step") or "") == str(EVALUATE_STEP)
    return event.kind == "retry"


def requests_approval(event: Event, current: str, approval: str, first: bool) -> bool:
    """Whether to ask for approval now: the change is in New and the event asks for it.

    A rejected change is asked again only on the first delivery of a `retry` or of an
    `approval` pending event (a person retried the release); never on a redelivery of an
    older event, which would overrule the approvers.
    """
    if current != NEW or not asks_for_approval(event):
        return False
    rejected = approval == "rejected"
    if event.kind == "retry":
        return rejected and first
    if event.kind == "approval":
        return first or not rejected
    return not rejected  # step 7 waiting: only a change that was never rejected


def planned_moves(kind: ReleaseType, current: str, release: Release, request: bool) -> list[str]:
    """The bridge's own one-step moves from `current`, in order (maybe none)."""
    target = TARGETS.get(release.state)
    if target == CANCELED:
        return [CANCELED] if current in CANCELABLE else []
    moves: list[str] = []
    state = current
    if request and state == NEW:
        state = REQUEST[kind]
        moves.append(state)
    if target is None or state not in PATHS[kind]:
        return moves
    path = PATHS[kind]
    for nxt in path[path.index(state) + 1 :]:
        if RANK[nxt] > RANK[target] or (state, nxt) not in BRIDGE_MOVES[kind]:
            break
        moves.append(nxt)
        state = nxt
    return moves


def refusal(client: ServiceNowClient, sys_id: str, state: str) -> str:
    """Why the instance would not take the move to `state` now ("" when it would).

    Asks `nextstates` where the instance has it; the moves `planned_moves` picks are the
    built-in model's, so without the endpoint there is nothing to refuse.
    """
    if client in _NO_NEXTSTATES:
        return ""
    path = f"/api/sn_chg_rest/change/{sys_id}/nextstates"
    try:
        result = client.api("GET", path, "GET change next states")
    except HTTPRequestError as exc:
        if exc.status == 404 or NO_API in str(exc):
            log.info("servicenow: no nextstates endpoint (%s); built-in change model", exc)
            _NO_NEXTSTATES.add(client)
            return ""
        raise
    except HTTPNeedsHuman as exc:
        if exc.status != 403:
            raise
        log.warning("servicenow: nextstates refused (%s); built-in change model", exc)
        return ""
    return _refusal_in(result if isinstance(result, dict) else {}, state)


def _refusal_in(result: dict[str, Any], state: str) -> str:
    raw_labels = result.get("state_label")
    labels: dict[str, Any] = raw_labels if isinstance(raw_labels, dict) else {}
    available = [str(s) for s in result.get("available_states") or []]
    label = LABELS.get(state, state)
    if state not in available:
        named = ", ".join(str(labels.get(s) or LABELS.get(s, s)) for s in available)
        return f"{label} is not among the states the instance allows now ({named or 'none'})"
    groups = result.get("state_transitions") or []
    transitions = [
        t
        for group in groups
        for t in (group if isinstance(group, list) else [group])
        if isinstance(t, dict) and str(t.get("to_state")) == state
    ]
    if not transitions or any(t.get("transition_available") is True for t in transitions):
        return ""
    failed = [
        str((c.get("condition") or {}).get("name") or "a condition")
        for t in transitions
        for c in t.get("conditions") or []
        if isinstance(c, dict) and not c.get("passed")
    ]
    return f"the move to {label} is not available: {', '.join(failed) or 'no reason given'}"


def closure(release: Release) -> dict[str, str]:
    """`close_code` and `close_notes` for Closed (mandatory by data policy on the model)."""
    if release.failure_reason:
        return {
            "close_code": "unsuccessful",
            "close_notes": f"Release {release.id} failed and was rolled back: "
            f"{release.failure_reason}",
        }
    return {
        "close_code": "successful",
        "close_notes": f"Release {release.id} ({release.title}) was deployed and verified.",
    }


# -- the hook -----------------------------------------------------------------------------
def sync(client: ServiceNowClient, config: Any, release: Release, event: Event) -> None:
    """Mirror one release event on its change: a work note (once) and the bridge's moves.

    Progress chatter costs no call at all. Transient errors propagate (the core redelivers
    the event). A move the instance refuses (nextstates, a business rule or a data policy)
    is logged and said in the note instead, so one refused move does not hold every later
    event of the release back.
    """
    record = change_record(release)
    wanted = noteworthy(event)
    if record is None or not (wanted or asks_for_approval(event)):
        return
    sys_id = record.id
    row = read_change(client, sys_id, ["state", "approval", "type"])
    current, approval = str(row.get("state") or NEW), str(row.get("approval") or "")
    first = wanted and not already_noted(client, sys_id, event)
    note = work_note(release, event) if first else None
    request = requests_approval(event, current, approval, first)
    moves = planned_moves(change_type(row, release), current, release, request)
    if note is not None and CLOSED in moves:
        note = clip("\n".join(line for line in (note, count_line(client, sys_id)) if line))
    for state in moves:
        why = refusal(client, sys_id, state)
        if not why:
            payload = {"state": state, **(closure(release) if state == CLOSED else {})}
            if note is not None:
                payload["work_notes"] = note
            try:
                client.update(TABLE, sys_id, payload, ("state",))
                note = None
                continue
            except (NeedsHuman, OperationFailed) as exc:
                why = str(exc)
        log.warning("change %s: move to %s not made: %s", record.number, LABELS[state], why)
        if note is not None:  # first delivery: say so on the record, once
            note = clip(f"{note}\nitsm-bridge could not move the change to {LABELS[state]}: {why}")
        break
    if note is not None:
        client.update(TABLE, sys_id, {"work_notes": note}, ("state",))
