"""The change_request's state, kept in step with the release (`release_changed`).

State values and order are the default change model ("State model and transitions",
ServiceNowDocs `it-service-management/change-management/c_ChangeStateModel.md`): New -5,
Assess -4, Authorize -3, Scheduled -2, Implement -1, Review 0, Closed 3, Canceled 4. Per type
("State progression for normal, standard, and emergency changes",
`change-management/normal-standard-emergency-states.md`): normal changes pass every state,
emergency changes skip Assess, standard (pre-authorized) changes go New -> Scheduled. The
bridge moves one legal step at a time, only forward, and never past Authorize before the
change is approved (the Scheduled state means "fully scheduled and authorized").

Every delivered event also becomes one `work_notes` entry carrying a marker
`[itsm-bridge <event.at> <event.kind> #<digest>]`; before writing, the journal
(`sys_journal_field`: `element_id`, `element`, `value`) is searched for the marker, so a
redelivered event adds nothing. The note rides on the first state PATCH when there is one.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from itsm_bridge.errors import NeedsHuman, OperationFailed
from itsm_bridge.models import Event, ExternalRecord, Release, ReleaseState, ReleaseType
from itsm_bridge_servicenow.client import Record, ServiceNowClient

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
#: The forward path of each change type (normal-standard-emergency-states.md).
PATHS = {
    ReleaseType.NORMAL: (NEW, ASSESS, AUTHORIZE, SCHEDULED, IMPLEMENT, REVIEW, CLOSED),
    ReleaseType.EMERGENCY: (NEW, AUTHORIZE, SCHEDULED, IMPLEMENT, REVIEW, CLOSED),
    ReleaseType.STANDARD: (NEW, SCHEDULED, IMPLEMENT, REVIEW, CLOSED),
}
#: Rank of every state in the normal model, to compare states across types.
RANK = {state: index for index, state in enumerate(PATHS[ReleaseType.NORMAL])}
OPEN = frozenset(PATHS[ReleaseType.NORMAL][:-1])
#: Release state -> the change state it calls for (PLANNED is decided by the event).
TARGETS = {
    ReleaseState.SCHEDULED: SCHEDULED,
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
MARKER = "[itsm-bridge"
NOTE_LIMIT = 4000  # work_notes: "Maximum length: 4,000" (change_request fields, Change API page)


def change_record(release: Release) -> ExternalRecord | None:
    """The release's ServiceNow change_request record, if step 6 made one."""
    return release.record(SYSTEM, TABLE)


def escape(value: str) -> str:
    """A value for an encoded query: `^` doubled (`^^` is a literal caret)."""
    return value.replace("^", "^^")


def read_change(client: ServiceNowClient, sys_id: str, fields: list[str]) -> Record:
    """The change by sys_id (`fields` only); NeedsHuman when it no longer exists."""
    row = client.get(TABLE, sys_id, fields)
    if row is None:
        raise NeedsHuman(
            f"change_request {sys_id} no longer exists in ServiceNow: restore it, or remove the "
            "release's change record and run step 6 again"
        )
    return row


def journal(
    client: ServiceNowClient,
    sys_id: str,
    elements: tuple[str, ...],
    *,
    like: str = "",
    limit: int = 20,
) -> list[Record]:
    """Journal entries of a record, newest first (`sys_journal_field`, narrow fields)."""
    query = f"element_id={sys_id}^elementIN{','.join(elements)}"
    if like:
        query += f"^valueLIKE{escape(like)}"
    query += "^ORDERBYDESCsys_created_on"
    fields = ["sys_id", "element", "value", "sys_created_on", "sys_created_by"]
    return client.query("sys_journal_field", query, fields, limit=limit)


def marker(event: Event) -> str:
    """The tag that identifies one event's work note (stable across redeliveries)."""
    digest = hashlib.sha256(f"{event.at.isoformat()}|{event.kind}|{event.message}".encode())
    return f"{MARKER} {event.at.isoformat()} {event.kind} #{digest.hexdigest()[:10]}]"


def work_note(release: Release, event: Event) -> str:
    """The work note for an event: marker, what happened, who, evidence and links."""
    lines = [
        marker(event),
        event.message,
        f"release {release.id} ({release.title}), now {release.state.value}; by {event.actor}",
    ]
    for key, value in sorted(event.evidence.items()):
        lines.append(f"- {key}: {value}")
    links = [rec.url for rec in release.records if rec.url and rec.kind != TABLE]
    lines += [f"- link: {url}" for url in links[:10]]
    text = "\n".join(lines)
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 15] + "\n[truncated]"


def target_state(release: Release, event: Event, current: str) -> str:
    """The state the change should reach now (never behind `current`)."""
    if release.state == ReleaseState.PLANNED:
        evidence = event.evidence
        evaluating = (
            event.kind == "step"
            and evidence.get("step") == EVALUATE_STEP
            and evidence.get("status") in ("waiting", "done")
        )
        wanted = AUTHORIZE if evaluating else current
    else:
        wanted = TARGETS.get(release.state, current)
    if wanted not in (CLOSED, CANCELED) and RANK.get(wanted, -1) <= RANK.get(current, -1):
        return current
    return wanted


def next_steps(kind: ReleaseType, current: str, target: str, approval: str) -> list[str]:
    """The legal one-step moves from `current` toward `target` for this change type."""
    if current not in OPEN or target == current:
        return []
    if target == CANCELED:
        return [CANCELED]
    path = PATHS[kind]
    if current not in path:  # e.g. an emergency change someone moved to Assess
        later = [s for s in path if RANK[s] > RANK[current]]
        path = (current, *later)
    start = path.index(current)
    steps = []
    for state in path[start + 1 :]:
        if RANK[state] > RANK.get(target, -1):
            break
        if state == SCHEDULED and approval != "approved" and kind != ReleaseType.STANDARD:
            break  # Authorize -> Scheduled needs the approval (the CAB's decision)
        steps.append(state)
    return steps


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


def already_noted(client: ServiceNowClient, sys_id: str, event: Event) -> bool:
    """Whether the event's work note is on the change already.

    An integration user without read access to `sys_journal_field` (a 403, or an instance
    that refuses the table) cannot tell: the note is written, at the cost of a possible
    duplicate on a redelivery, rather than never.
    """
    try:
        return bool(journal(client, sys_id, ("work_notes",), like=marker(event)))
    except (NeedsHuman, OperationFailed) as exc:
        log.warning("change %s: cannot read its journal, writing the note anyway: %s", sys_id, exc)
        return False


def sync(client: ServiceNowClient, config: Any, release: Release, event: Event) -> None:
    """Mirror one release event on its change: a work note (once) and the state, step by step.

    Transient errors propagate (the core redelivers the event). A move the instance refuses
    (a business rule or data policy) is logged and written as a work note instead, so one
    refused move does not hold every later event of the release back.
    """
    record = change_record(release)
    if record is None:
        return
    sys_id = record.id
    row = read_change(client, sys_id, ["state", "approval", "type"])
    current, approval = str(row.get("state") or NEW), str(row.get("approval") or "")
    note = work_note(release, event)
    pending_note = None if already_noted(client, sys_id, event) else note
    target = target_state(release, event, current)
    kind = release.type
    if str(row.get("type") or "") in {t.value for t in ReleaseType}:
        kind = ReleaseType(str(row["type"]))  # the change's own type rules its state model
    for state in next_steps(kind, current, target, approval):
        payload: dict[str, str] = {"state": state}
        if state == CLOSED:
            payload.update(closure(release))
        if pending_note is not None:
            payload["work_notes"] = pending_note
        try:
            client.update(TABLE, sys_id, payload, ("state",))
        except (NeedsHuman, OperationFailed) as exc:
            log.warning("change %s: move to %s refused: %s", record.number, LABELS[state], exc)
            if pending_note is not None:  # first delivery: say so on the record, once
                refused = f"itsm-bridge could not move the change to {LABELS[state]}: {exc}"
                text = f"{pending_note}\n{refused}"[:NOTE_LIMIT]
                client.update(TABLE, sys_id, {"work_notes": text}, ("state",))
            return
        pending_note = None
    if pending_note is not None:
        client.update(TABLE, sys_id, {"work_notes": pending_note}, ("state",))
