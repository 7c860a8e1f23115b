"""No open task on a closed change: the change tasks a release leaves behind when it ends.

When a release is cancelled, fails, is rolled back or closes (a `state` event of
`release_changed` whose evidence `to` is one of those), every change task of the release still
`active` is ended, before the change itself moves: a closed change's tasks are read-only
("Editing is not available in certain states, such as Closed", ServiceNowDocs
`it-service-management/change-management/create-a-change-task.md`).

The states, from that page: "Canceled: No longer required. The task is closed without being
completed"; "Closed: ... Set the Close code and Close notes fields before you move the task to
Closed"; a closed task cannot be reopened. `active` is false on the closed states of a task
("Task Active State Management" business rule, TaskStateUtil API), so `active=true` finds the
open ones whatever the instance calls its closed states. Per case:

- cancelled: Canceled (4): nothing was deployed, the tasks are no longer required;
- failed, rolled back: Closed (3), close code `unsuccessful`, close notes "Skipped" (not
  started) or "Incomplete" (In Progress, 2): they will not run. The rollback task stays open
  while the release is failed (it is about to run); once rolled back it is done;
- closed: nothing stays open; `successful` when the release succeeded (every task finished
  done to get there) or for the finished rollback, otherwise as for a failure.

Each PATCH also carries a work note saying why. One query finds the open tasks
(`correlation_id` STARTSWITH "<release id>:" on the change), one PATCH per task; a redelivered
event finds none open and writes nothing.
"""

from __future__ import annotations

import logging

from itsm_bridge.errors import NeedsHuman, OperationFailed
from itsm_bridge.models import Event, Release, ReleaseState
from itsm_bridge_servicenow.change_tasks import (
    CANCELED,
    CLOSED,
    ROLLBACK_KEY,
    SUCCESSFUL,
    TABLE,
    UNSUCCESSFUL,
    change_sys_id,
)
from itsm_bridge_servicenow.client import ServiceNowClient
from itsm_bridge_servicenow.encoded import escape

log = logging.getLogger(__name__)

IN_PROGRESS = "2"
OPEN_FIELDS = ("sys_id", "number", "correlation_id", "state")
#: Release states after which no task of the release will run, and how a note says it.
ENDED = {
    ReleaseState.CANCELLED: "was cancelled",
    ReleaseState.FAILED: "failed",
    ReleaseState.ROLLED_BACK: "was rolled back",
    ReleaseState.CLOSED: "closed",
}


def ending(event: Event) -> ReleaseState | None:
    """The end state a `state` event announces (cancelled, failed, rolled back, closed)."""
    if event.kind != "state":
        return None
    try:
        to = ReleaseState(str(event.evidence.get("to") or ""))
    except ValueError:
        return None
    return to if to in ENDED else None


def end_of_task(
    client: ServiceNowClient, release: Release, to: ReleaseState, key: str, state: str
) -> dict[str, str] | None:
    """The PATCH that ends one open change task when the release reaches `to` (None: leave
    it open). Close codes are the instance's own values (`client.choices`, sys_choice)."""
    what = f"release {release.id} {ENDED[to]}"
    if to == ReleaseState.CANCELLED:
        note = f"Canceled by itsm-bridge: {what}; this task is no longer required."
        return {"state": CANCELED, "work_notes": note}
    if key == ROLLBACK_KEY:
        if to == ReleaseState.FAILED:
            return None  # the rollback is about to run
        code, notes = SUCCESSFUL, f"Done: the rollback of release {release.id} finished."
    elif to == ReleaseState.CLOSED and not release.failure_reason:
        code, notes = SUCCESSFUL, f"Done: release {release.id} succeeded and closed."
    else:
        reason = f" ({release.failure_reason})" if release.failure_reason else ""
        if state == IN_PROGRESS:
            notes = f"Incomplete: {what}{reason} while this task was in progress."
        else:
            notes = f"Skipped: {what}{reason} before this task ran; it will not run."
        code = UNSUCCESSFUL
    return {
        "state": CLOSED,
        "close_code": client.choices.value(TABLE, "close_code", code),
        "close_notes": notes,
        "work_notes": f"Closed by itsm-bridge. {notes}",
    }


def close_open(client: ServiceNowClient, release: Release, event: Event) -> list[str]:
    """End the open change tasks of a release that `event` says has ended; returns the
    numbers of the tasks written ([] for any other event, or when none is open).

    A PATCH the instance refuses (an ACL, a business rule) does not stop the others; the
    refusals are raised together as NeedsHuman at the end. Transient errors propagate at once
    (the core redelivers the event; the tasks already ended are not found again).
    """
    to = ending(event)
    change_id = change_sys_id(release)
    if to is None or change_id is None:
        return []
    prefix = f"{release.id}:"
    query = (
        f"change_request={escape(change_id)}^correlation_idSTARTSWITH{escape(prefix)}"
        "^active=true^ORDERBYorder"
    )
    written, refused = [], []
    for row in client.query(TABLE, query, OPEN_FIELDS):
        state = str(row.get("state") or "")
        key = str(row.get("correlation_id") or "").removeprefix(prefix)
        ended = state in (CLOSED, CANCELED)
        body = None if ended else end_of_task(client, release, to, key, state)
        if body is None:
            continue
        number = str(row.get("number") or row["sys_id"])
        try:
            client.update(TABLE, str(row["sys_id"]), body, fields=("sys_id",))
        except (NeedsHuman, OperationFailed) as exc:
            log.warning("change task %s: could not end it: %s", number, exc)
            refused.append(f"{number}: {exc}")
            continue
        written.append(number)
    if refused:
        raise NeedsHuman(
            f"ServiceNow refused to end {len(refused)} open change task(s) of release "
            f"{release.id} ({'; '.join(refused)}): close them in ServiceNow, or let the "
            "integration user write change_task"
        )
    return written
