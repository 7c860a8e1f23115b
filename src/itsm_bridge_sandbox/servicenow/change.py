"""The sandbox's default change model: who may move a change where, approvals, nextstates.

States ("State model and transitions", ServiceNowDocs `it-service-management/change-
management/c_ChangeStateModel.md`): New -5, Assess -4, Authorize -3, Scheduled -2,
Implement -1, Review 0, Closed 3, Canceled 4. A change can be canceled from any state but
Review and Closed.

Who moves what (`change-types.md`, same folder):
- normal: the requester asks for approval by moving New -> Assess (approval `requested`:
  the technical approvers' turn); the technical approval moves it to Authorize (the CAB's
  turn, approval `requested` again), the CAB's to Scheduled (approval `approved`);
- emergency: New -> Authorize is the request, the CAB's approval moves it to Scheduled;
- standard: pre-approved (created with approval `approved`), the requester moves it New ->
  Scheduled; no approval state.
A rejection sends a normal or emergency change back to New with approval `rejected`; "Revert
to New" (Assess or Authorize -> New by the requester) resets approval to `not requested`.
Then the requester moves Scheduled -> Implement -> Review -> Closed. A REST write of any
other move, in particular Authorize or Scheduled on a normal change, is refused the way a
business rule refuses it: 403 `{"error": {"message": "Operation Failed", "detail":
"Operation against file '<table>' was aborted by Business Rule '<name>^<sys_id>'. Business
Rule Stack:<name>"}, "status": "failure"}` (shape as seen from the Table API, ServiceNow
community "Operation Failed ... aborted by Business Rule"); the sandbox appends a sentence
saying why. Missing closure fields answer a Data Policy exception ("Data Policy Exception:
The following fields are mandatory: ...", same 403 shape). The approvers' moves are made by
the test helpers only (`approve_change`, `reject_change` on the server).

`next_states` answers `GET /api/sn_chg_rest/change/{sys_id}/nextstates` in the documented
shape ("Change Management API", `api-reference/rest-apis/change-management-api.md`):
`available_states` (the current state included), `state_label`, and `state_transitions`,
one list per target state, as for a model-driven change: the approvers' moves are listed as
automatic transitions that are not available to the caller, with a failed condition.
"""

from __future__ import annotations

import hashlib
from typing import Any

from itsm_bridge_sandbox.servicenow.schema import CHANGE_STATES
from itsm_bridge_sandbox.webapp import HTTPError

NEW, ASSESS, AUTHORIZE, SCHEDULED, IMPLEMENT, REVIEW, CLOSED, CANCELED = (
    "-5", "-4", "-3", "-2", "-1", "0", "3", "4",
)  # fmt: skip
OPEN_STATES = {NEW, ASSESS, AUTHORIZE, SCHEDULED, IMPLEMENT, REVIEW}
CANCELABLE = OPEN_STATES - {REVIEW}
CLOSE_CODES = {"successful", "successful_issues", "unsuccessful"}
STATE_RULE = "State model - Can change state?"
_IMPLEMENTATION = {SCHEDULED: {IMPLEMENT}, IMPLEMENT: {REVIEW}, REVIEW: {CLOSED}}

#: Moves the requester (a person or an integration) writes, per type; cancel is separate.
REQUESTER_MOVES: dict[str, dict[str, set[str]]] = {
    "normal": {NEW: {ASSESS}, ASSESS: {NEW}, AUTHORIZE: {NEW}, **_IMPLEMENTATION},
    "emergency": {NEW: {AUTHORIZE}, AUTHORIZE: {NEW}, **_IMPLEMENTATION},
    "standard": {NEW: {SCHEDULED}, **_IMPLEMENTATION},
}
#: Moves only an approval makes, per type: state waiting for approval -> the next one.
APPROVAL_MOVES: dict[str, dict[str, str]] = {
    "normal": {ASSESS: AUTHORIZE, AUTHORIZE: SCHEDULED},
    "emergency": {AUTHORIZE: SCHEDULED},
    "standard": {},
}
#: The state that asks for approval, per type.
REQUEST = {"normal": ASSESS, "emergency": AUTHORIZE}
APPROVERS = {ASSESS: "the technical approvers", AUTHORIZE: "the CAB"}


def change_type(row: dict[str, str]) -> str:
    kind = row.get("type") or "normal"
    return kind if kind in REQUESTER_MOVES else "normal"


def operation_failed(detail: str) -> HTTPError:
    return HTTPError(
        403, {"error": {"message": "Operation Failed", "detail": detail}, "status": "failure"}
    )


def business_rule_abort(table: str, sys_id: str, rule: str, why: str) -> HTTPError:
    return operation_failed(
        f"Operation against file '{table}' was aborted by Business Rule '{rule}^{sys_id}'. "
        f"Business Rule Stack:{rule}. {why}"
    )


def _label(state: str) -> str:
    return f"{CHANGE_STATES.get(state, state)} ({state})"


def apply_change_rules(row: dict[str, str] | None, values: dict[str, str], sys_id: str) -> None:
    """Validate a REST write of a change_request against the model; completes `values`.

    `row` is the current record (None on insert). Raises a 403 `HTTPError` when refused.
    """
    current = row or {}
    ctype = change_type({**current, **values})
    if row is None and ctype == "standard" and "approval" not in values:
        values["approval"] = "approved"  # pre-approved
    merged = {**current, **values}
    old = current.get("state", NEW)
    new = values.get("state", old)
    if new == old:
        return
    why = _refused(ctype, old, new, merged)
    if why:
        raise business_rule_abort("change_request", sys_id, STATE_RULE, why)
    if new == REQUEST.get(ctype) and old == NEW:
        values["approval"] = "requested"
    elif new == NEW:
        values["approval"] = "not requested"  # Revert to New: pending approvals cancelled
    if new == CLOSED:
        missing = []
        if merged.get("close_code") not in CLOSE_CODES:
            missing.append("Close code")
        if not merged.get("close_notes"):
            missing.append("Close notes")
        if missing:
            raise operation_failed(
                "Data Policy Exception: \n\tThe following fields are "
                f"mandatory: {', '.join(missing)}\n"
            )
    if new in (CLOSED, CANCELED):
        values["active"] = "false"


def _refused(ctype: str, old: str, new: str, merged: dict[str, str]) -> str:
    """Why the requester may not move a `ctype` change from `old` to `new` ("" if allowed)."""
    if new == CANCELED:
        return "" if old in CANCELABLE else f"a change in {_label(old)} cannot be canceled."
    if APPROVAL_MOVES[ctype].get(old) == new:
        return (
            f"Invalid state transition: only the approval of {APPROVERS[old]} moves a {ctype} "
            f"change from {_label(old)} to {_label(new)}."
        )
    if new not in REQUESTER_MOVES[ctype].get(old, set()):
        return (
            f"Invalid state transition: a {ctype} change cannot move from {_label(old)} "
            f"to {_label(new)}."
        )
    if ctype == "standard" and new == SCHEDULED and merged.get("approval") != "approved":
        return f"the standard change is not pre-approved (approval is '{merged.get('approval')}')."
    return ""


# -- the approvers ----------------------------------------------------------------------------
def approval_step(row: dict[str, str]) -> dict[str, str]:
    """The values one approval sets on a change waiting for it; ValueError when none waits."""
    nxt = APPROVAL_MOVES[change_type(row)].get(row.get("state", NEW))
    if nxt is None or row.get("approval") != "requested":
        raise ValueError(_not_waiting(row))
    return {"state": nxt, "approval": "approved" if nxt == SCHEDULED else "requested"}


def rejection(row: dict[str, str]) -> dict[str, str]:
    """The values a rejection sets: back to New, approval rejected."""
    if row.get("state") not in APPROVAL_MOVES[change_type(row)] or (
        row.get("approval") != "requested"
    ):
        raise ValueError(_not_waiting(row))
    return {"state": NEW, "approval": "rejected"}


def waiting_for(row: dict[str, str]) -> str:
    """Who must approve the change now ("" when no approval is requested)."""
    state = row.get("state", "")
    waiting = state in APPROVAL_MOVES[change_type(row)] and row.get("approval") == "requested"
    return APPROVERS[state] if waiting else ""


def _not_waiting(row: dict[str, str]) -> str:
    return (
        f"change {row.get('number', row.get('sys_id', ''))} is not waiting for an approval "
        f"(a {change_type(row)} change in {_label(row.get('state', NEW))}, approval "
        f"'{row.get('approval', '')}'): its requester must ask for approval first"
    )


# -- nextstates ----------------------------------------------------------------------------
def next_states(row: dict[str, str]) -> dict[str, Any]:
    """The body of GET /api/sn_chg_rest/change/{sys_id}/nextstates for the change."""
    ctype, state = change_type(row), row.get("state", NEW)
    targets = set(REQUESTER_MOVES[ctype].get(state, set()))
    gated = APPROVAL_MOVES[ctype].get(state)
    if gated:
        targets.add(gated)
    if state in CANCELABLE:
        targets.add(CANCELED)
    ordered = sorted(targets, key=lambda s: list(CHANGE_STATES).index(s))
    transitions = [[_transition(ctype, row, state, target)] for target in ordered]
    return {
        "result": {
            "available_states": [state, *ordered],
            "state_transitions": transitions,
            "state_label": {s: CHANGE_STATES.get(s, s) for s in [state, *ordered]},
        }
    }


def _transition(ctype: str, row: dict[str, str], old: str, new: str) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = []
    automatic = APPROVAL_MOVES[ctype].get(old) == new
    if automatic:
        conditions.append(_condition(f"Approved by {APPROVERS[old]}", False))
    elif ctype == "standard" and new == SCHEDULED:
        conditions.append(_condition("Pre-approved", row.get("approval") == "approved"))
    return {
        "sys_id": _sys_id(f"{ctype}:{old}:{new}"),
        "display_value": f"{CHANGE_STATES.get(old, old)} to {CHANGE_STATES.get(new, new)}",
        "from_state": old,
        "to_state": new,
        "transition_available": all(c["passed"] for c in conditions) and not automatic,
        "automatic_transition": automatic,
        "conditions": conditions,
    }


def _condition(name: str, passed: bool) -> dict[str, Any]:
    return {
        "passed": passed,
        "condition": {"name": name, "description": None, "sys_id": _sys_id(name)},
    }


def _sys_id(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
