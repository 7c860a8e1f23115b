"""Steps 9, 11 and 14: one `change_task` per release task, followed and closed.

Field values, as documented by ServiceNow ("Create a change task", ServiceNowDocs
`markdown/it-service-management/change-management/create-a-change-task.md`, Yokohama and
later) and used by Red Hat's `servicenow.itsm` Ansible collection (`change_request_task`
module and its `PAYLOAD_FIELDS_MAPPING`):

- `state`: -5 Pending, 1 Open, 2 In Progress, 3 Closed, 4 Canceled. "Set the Close code and
  Close notes fields before you move the task to Closed"; a closed task cannot be reopened.
- `close_code`: `successful`, `successful_issues`, `unsuccessful`.
- `change_task_type`: `planning`, `implementation`, `testing`, `review`. "If the task type is
  Implementation, the Planned start date and Planned end date values must fall within the
  planned dates of the change request": every task but the rollback is planned over the
  release window (the change's `start_date`/`end_date`), so it is valid for any type.

Idempotency: every task carries `correlation_id` = "<release id>:<task key>"; one query reads
the tasks the change already has, and only the missing ones are created (a create is never
retried here: a lost answer is found by that query on the next call).

The rollback (step 14) is a change task too, created when the rollback starts with only its
spec (key `rollback`): implementation work planned from now to the window's end, or for the
release's duration when the window is over. Not settled from the docs: whether an instance
refuses an Implementation task planned outside the change's dates (the documented rule above);
a rollback after the window is planned truthfully, and its description says so. A failed
rollback job leaves its change task open (the rollback now falls to a person, who closes it).

Tasks still open when the release ends are closed by `task_closure`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.models import ExternalRecord, Release, Task, TaskSpec, TaskStatus, utcnow
from itsm_bridge_servicenow.client import ServiceNowClient, sn_datetime
from itsm_bridge_servicenow.encoded import by_name_or_sys_id, escape

if TYPE_CHECKING:
    from itsm_bridge_servicenow import Settings

SYSTEM = "servicenow"
TABLE = "change_task"
CLOSED, CANCELED = "3", "4"
#: close_code meanings; the values come from the instance's sys_choice (choices.py).
SUCCESSFUL, UNSUCCESSFUL = "successful", "unsuccessful"
TASK_FIELDS = ("sys_id", "number", "correlation_id")
STATUS_FIELDS = ("sys_id", "number", "state", "close_code", "close_notes")
#: Task purposes whose change task is a test (`change_task_type` testing).
TEST_PURPOSES = frozenset({"smoke_test", "test"})
ROLLBACK_KEY = "rollback"
MANUAL_ROLLBACK = (
    "Roll back by hand to the last good version, then close this task: close code Successful, "
    "or Unsuccessful with close notes if the rollback failed; itsm-bridge follows its state."
)


def record_url(client: ServiceNowClient, table: str, sys_id: str) -> str:
    """The classic UI link to a record: `<instance>/nav_to.do?uri=<table>.do?sys_id=<id>`."""
    return f"{client.base_url}/nav_to.do?uri={table}.do?sys_id={sys_id}"


def change_sys_id(release: Release) -> str | None:
    """The sys_id of the release's ServiceNow change, if step 6 created one."""
    change = release.record(SYSTEM, "change_request")
    return change.id if change is not None else None


class Groups:
    """`sys_user_group` names (or sys_ids) resolved to sys_ids, once per name per call."""

    def __init__(self, client: ServiceNowClient, setting: str) -> None:
        self.client = client
        self.setting = setting
        self._ids: dict[str, str] = {}

    def sys_id(self, name: str) -> str:
        """The sys_id of the group named `name`; NeedsHuman when the instance has none."""
        if name not in self._ids:
            query = by_name_or_sys_id(name)
            rows = self.client.query("sys_user_group", query, ("sys_id", "name"), limit=1)
            if not rows:
                raise NeedsHuman(
                    f"ServiceNow has no assignment group named {name!r}: create it in "
                    f"sys_user_group or change {self.setting}"
                )
            self._ids[name] = str(rows[0]["sys_id"])
        return self._ids[name]


def task_type(spec: TaskSpec) -> str:
    """`change_task_type`: testing for a test (the smoke test), else implementation.

    Manual work before or after the deployment (stop a database, switch traffic) is carried
    out inside the change window, so it is implementation work too; planning and review tasks
    are left to the change process itself.
    """
    if spec.purpose in TEST_PURPOSES or spec.key.startswith("smoke"):
        return "testing"
    return "implementation"


def is_rollback(task: TaskSpec) -> bool:
    """Whether the task is the release's rollback (step 14)."""
    return task.key == ROLLBACK_KEY or task.purpose == "rollback"


def describe(release: Release, spec: TaskSpec) -> str:
    """The `description` of a change task: what it is and how it is completed."""
    lines = [f"Release {release.id}: {release.title}", f"Task {spec.key} ({spec.kind})."]
    if is_rollback(spec):
        if release.failure_reason:
            lines.append(f"Why: {release.failure_reason}")
        if spec.kind == "automated":
            lines.append(
                f"itsm-bridge rolls {release.service} back to the last good version with job "
                f"{spec.job or 'rollback'} and closes this task when the job finishes."
            )
        else:
            lines.append(MANUAL_ROLLBACK)
    elif spec.kind == "automated":
        job = spec.job or spec.purpose or spec.key
        lines.append(f"Run by itsm-bridge (job {job}); closed by itsm-bridge when it finishes.")
    else:
        lines.append(
            "Done by a person: close this task with close code Successful (or Unsuccessful) "
            "and close notes; itsm-bridge follows its state."
        )
    return "\n".join(lines)


def planned_dates(release: Release, spec: TaskSpec, now: datetime) -> tuple[datetime, datetime]:
    """When a task is planned: the release window; the rollback from now to the window's end,
    or for the release's duration when the window is over (or there is none)."""
    start, end = release.window_start, release.window_end
    if not is_rollback(spec) and start is not None and end is not None:
        return start, end
    if end is not None and end > now:
        return now, end
    return now, now + release.duration


def payload(
    release: Release,
    spec: TaskSpec,
    change_id: str,
    group_id: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The create body of one change task."""
    body: dict[str, Any] = {
        "change_request": change_id,
        "short_description": spec.name,
        "description": describe(release, spec),
        "change_task_type": task_type(spec),
        "correlation_id": f"{release.id}:{spec.key}",
        "correlation_display": "itsm-bridge",
        "order": spec.order,
    }
    if group_id:
        body["assignment_group"] = group_id
    if is_rollback(spec) or (release.window_start and release.window_end):
        start, end = planned_dates(release, spec, now or utcnow())
        body["planned_start_date"] = sn_datetime(start)
        body["planned_end_date"] = sn_datetime(end)
        window_end = release.window_end
        if is_rollback(spec) and window_end is not None and end > window_end:
            body["description"] += (
                f"\nPlanned after the change window, which ended {sn_datetime(window_end)} UTC."
            )
    return body


def as_record(client: ServiceNowClient, row: dict[str, Any], key: str) -> ExternalRecord:
    """A change task row as the bridge's reference to it."""
    sys_id = str(row["sys_id"])
    return ExternalRecord(
        system=SYSTEM,
        kind=TABLE,
        id=sys_id,
        number=str(row.get("number") or "") or None,
        url=record_url(client, TABLE, sys_id),
        key=key,
    )


def find_or_create(
    client: ServiceNowClient,
    config: Settings,
    release: Release,
    tasks: list[TaskSpec],
    now: datetime | None = None,
) -> list[ExternalRecord] | None:
    """Create (or find) one change task per given release task, in the order given.

    `tasks` may be any subset: step 9 passes every task, step 14 only the rollback. Returns
    None when the release has no ServiceNow change (another plugin owns tasks then). One query
    reads the change's existing tasks by `correlation_id`; only missing ones are created.
    Groups: the task's `group`, else `plugins.servicenow.assignment_group`.
    """
    change_id = change_sys_id(release)
    if change_id is None:
        return None
    prefix = f"{release.id}:"
    query = (
        f"change_request={escape(change_id)}^correlation_idSTARTSWITH{escape(prefix)}"
        "^ORDERBYsys_created_on"
    )
    existing: dict[str, dict[str, Any]] = {}
    for row in client.query(TABLE, query, TASK_FIELDS):
        existing.setdefault(str(row.get("correlation_id") or ""), row)
    groups = Groups(
        client, "the task's group (services.<name>.tasks) or plugins.servicenow.assignment_group"
    )
    records = []
    for spec in tasks:
        found = existing.get(f"{prefix}{spec.key}")
        if found is None:
            name = spec.group or config.assignment_group
            group_id = groups.sys_id(name) if name else None
            found = client.create(TABLE, payload(release, spec, change_id, group_id, now))
        records.append(as_record(client, found, spec.key))
    return records


def _own_record(task: Task) -> ExternalRecord | None:
    record = task.record
    if record is None or record.system != SYSTEM or record.kind != TABLE:
        return None
    return record


def status(client: ServiceNowClient, task: Task) -> Task | None:
    """The task with its status read from its change task (None when it is not ours).

    Closed with close code `unsuccessful` → failed; closed otherwise → done; canceled →
    failed; any other state leaves the task as it is. The close notes become `task.note`.
    """
    record = _own_record(task)
    if record is None:
        return None
    row = client.get(TABLE, record.id, STATUS_FIELDS)
    if row is None:
        raise NeedsHuman(
            f"change task {record.number or record.id} of task {task.key} no longer exists in "
            "ServiceNow: finish the task with `itsm-bridge release task-done`"
        )
    state = str(row.get("state") or "")
    notes = str(row.get("close_notes") or "")
    if state == CLOSED:
        unsuccessful = client.choices.value(TABLE, "close_code", UNSUCCESSFUL)
        failed = str(row.get("close_code") or "") == unsuccessful
        new = TaskStatus.FAILED if failed else TaskStatus.DONE
    elif state == CANCELED:
        new = TaskStatus.FAILED
        notes = notes or f"change task {record.number or record.id} was canceled"
    else:
        return task
    return task.model_copy(update={"status": new, "note": notes or task.note})


def close(client: ServiceNowClient, release: Release, task: Task) -> None:
    """Close the change task of a finished task: done → successful, failed → unsuccessful.

    No-op for a task without a ServiceNow change task, a task not finished, or a change task
    already closed or canceled (read first). One PATCH sets state, close code and notes.
    A failed rollback job is not a finished rollback: its task stays open for a person.
    """
    record = _own_record(task)
    if record is None or task.status not in (TaskStatus.DONE, TaskStatus.FAILED):
        return
    if is_rollback(task) and task.kind == "automated" and task.status == TaskStatus.FAILED:
        hand_over_rollback(client, release, task, record)
        return
    row = client.get(TABLE, record.id, STATUS_FIELDS)
    if row is None or str(row.get("state") or "") in (CLOSED, CANCELED):
        return
    done = task.status == TaskStatus.DONE
    notes = task.note or (
        f"{task.name} done (itsm-bridge, release {release.id})"
        if done
        else f"{task.name} failed (itsm-bridge, release {release.id})"
    )
    code = client.choices.value(TABLE, "close_code", SUCCESSFUL if done else UNSUCCESSFUL)
    body = {"state": CLOSED, "close_code": code, "close_notes": notes}
    client.update(TABLE, record.id, body, fields=STATUS_FIELDS)


def hand_over_rollback(
    client: ServiceNowClient, release: Release, task: Task, record: ExternalRecord
) -> None:
    """The rollback job failed: the rollback task stays open and now says to roll back by
    hand (description and one work note; nothing is written when it says so already)."""
    row = client.get(TABLE, record.id, ("sys_id", "state", "description"))
    if row is None or str(row.get("state") or "") in (CLOSED, CANCELED):
        return
    if MANUAL_ROLLBACK in str(row.get("description") or ""):
        return
    manual = task.model_copy(update={"kind": "manual"})
    why = f": {task.note}" if task.note else ""
    body = {
        "description": describe(release, manual),
        "work_notes": f"The rollback job failed{why}. {MANUAL_ROLLBACK}",
    }
    client.update(TABLE, record.id, body, fields=("sys_id",))
