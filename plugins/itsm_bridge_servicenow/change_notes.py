"""The work notes a change manager reads on the release's change_request.

One note per meaningful event of the release (`release_changed`): a state transition, an
approval requested or decided, the findings of step 7, the task list (once, with the links
to the change tasks), a task finished, a failure with its evidence, an emergency exception,
a cancel, a retry, a failed step. Progress chatter (`step` events other than failed) writes
nothing. The event vocabulary is the `release_changed` hook's docstring
(`itsm_bridge.hookspecs`).

Every note starts with a marker `[itsm-bridge <event.at> <event.kind> #<digest>]`. Before
writing, the journal (`sys_journal_field`: `element_id`, `element`, `value`) is searched for
the marker, so a redelivered event adds nothing. `work_notes` holds at most 4,000 characters
(change_request field list, ServiceNowDocs `api-reference/rest-apis/change-management-api.md`).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from itsm_bridge.errors import NeedsHuman, OperationFailed
from itsm_bridge.models import Event, Release
from itsm_bridge_servicenow.client import Record, ServiceNowClient
from itsm_bridge_servicenow.encoded import escape

log = logging.getLogger(__name__)

MARKER = "[itsm-bridge"
NOTE_LIMIT = 4000
#: Notes counted at most when the closing note says how many the bridge wrote.
COUNT_LIMIT = 500


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


def noteworthy(event: Event) -> bool:
    """Whether the event deserves a note: everything but running/waiting/done step chatter."""
    if event.kind == "step":
        return str(event.evidence.get("status") or "") == "failed"
    return True


def marker(event: Event) -> str:
    """The tag that identifies one event's work note (stable across redeliveries)."""
    digest = hashlib.sha256(f"{event.at.isoformat()}|{event.kind}|{event.message}".encode())
    return f"{MARKER} {event.at.isoformat()} {event.kind} #{digest.hexdigest()[:10]}]"


def work_note(release: Release, event: Event) -> str:
    """The work note for an event: marker, what happened, who, and the event's details."""
    lines = [
        marker(event),
        event.message,
        f"release {release.id} ({release.title}); by {event.actor}",
    ]
    lines += _details(event)
    return clip("\n".join(lines))


def clip(text: str) -> str:
    """`text` cut to the 4,000 characters a journal entry holds."""
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 12] + "\n[truncated]"


def _details(event: Event) -> list[str]:
    evidence = event.evidence
    if event.kind == "tasks" and isinstance(evidence.get("tasks"), list):
        return [_task_line(task) for task in evidence["tasks"] if isinstance(task, dict)]
    if event.kind == "findings" and isinstance(evidence.get("findings"), list):
        return [_finding_line(f) for f in evidence["findings"] if isinstance(f, dict)] or [
            "- no findings"
        ]
    shown = ((key, _plain(value)) for key, value in sorted(evidence.items()))
    # what the message already says (a state, a task's name and note) is not repeated
    return [f"- {key}: {text}" for key, text in shown if text and text not in event.message]


def _task_line(task: dict[str, Any]) -> str:
    """`- Stop database (manual, Database Administration): CTASK0010001 <url>`."""
    how = ", ".join(str(part) for part in (task.get("kind"), task.get("group")) if part)
    line = f"- {task.get('name') or task.get('key')}" + (f" ({how})" if how else "")
    record = task.get("record")
    if isinstance(record, dict):
        where = " ".join(str(record[k]) for k in ("number", "url") if record.get(k))
        line += f": {where or record.get('id', '')}"
    return line


def _finding_line(finding: dict[str, Any]) -> str:
    return f"- {finding.get('severity', '?')} ({finding.get('source', '?')}): " + str(
        finding.get("message", "")
    )


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(_plain(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    return str(value)


def already_noted(client: ServiceNowClient, sys_id: str, event: Event) -> bool:
    """Whether the event's work note is on the change already.

    An integration user without read access to `sys_journal_field` (a 403, or an instance
    that refuses the table) cannot tell: the note is written, at the cost of a possible
    duplicate on a redelivery, rather than never.
    """
    try:
        return bool(journal(client, sys_id, ("work_notes",), like=marker(event), limit=1))
    except (NeedsHuman, OperationFailed) as exc:
        log.warning("change %s: cannot read its journal, writing the note anyway: %s", sys_id, exc)
        return False


def count_line(client: ServiceNowClient, sys_id: str) -> str:
    """For the closing note: how many notes the bridge wrote on the change, this one included."""
    try:
        written = journal(client, sys_id, ("work_notes",), like=MARKER, limit=COUNT_LIMIT)
    except (NeedsHuman, OperationFailed):
        return ""
    return f"work notes written by itsm-bridge on this change: {len(written) + 1}"
