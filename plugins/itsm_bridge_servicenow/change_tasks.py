"""Steps 9 and 11: one `change_task` per release task, followed and closed.

Field values, as documented by ServiceNow ("Create a change task", ServiceNowDocs
`markdown/it-service-management/change-management/create-a-change-task.md`, Yokohama and
later) and used by Red Hat's `servicenow.itsm` Ansible collection (`change_request_task`
module and its `PAYLOAD_FIELDS_MAPPING`):

- `state`: -5 Pending, 1 Open, 2 In Progress, 3 Closed, 4 Canceled. "Set the Close code and
  Close notes fields before you move the task to Closed"; a closed task cannot be reopened.
- `close_code`: `successful`, `successful_issues`, `unsuccessful`.
- `change_task_type`: `planning`, `implementation`, `testing`, `review`. "If the task type is
  Implementation, the Planned start date and Planned end date values must fall within the
  planned dates of the change request": every task here is planned over the release window
  (the change's `start_date`/`end_date`), so it is valid for any type.

Idempotency: every task carries `correlation_id` = "<release id>:<task key>"; one query reads
the tasks the change already has, and only the missing ones are created (a create is never
retried here: a lost answer is found by that query on the next call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.models import ExternalRecord, Release, Task, TaskSpec, TaskStatus
from itsm_bridge_servicenow.client import ServiceNowClient, sn_datetime

if TYPE_CHECKING:
    from itsm_bridge_servicenow import Settings

SYSTEM = "servicenow"
TABLE = "change_task"
CLOSED, CANCELED = "3", "4"
SUCCESSFUL, UNSUCCESSFUL = "successful", "unsuccessful"
TASK_FIELDS = ("sys_id", "number", "correlation_id")
STATUS_FIELDS = ("sys_id", "number", "state", "close_code", "close_notes")
#: Task purposes whose change task is a test (`change_task_type` testing).
TEST_PURPOSES = frozenset({"smoke_test", "test"})


def escape(value: str) -> str:
    """A value safe inside an encoded query (`^` is the separator; `^^` is a literal caret)."""
    return value.replace("^", "^^")


def record_url(client: ServiceNowClient, table: str, sys_id: str) -> str:
    """The classic UI link to a record: `<instance>/nav_to.do?uri=<table>.do?sys_id=<id>`."""
    return f"{client.base_url}/nav_to.do?uri={table}.do?sys_id={sys_id}"


def change_sys_id(release: Release) -> str | None:
    """The sys_id of the release's ServiceNow change, if step 6 created one."""
    change = release.record(SYSTEM, "change_request")
    return change.id if change is not None else None


class Groups:
    """`sys_user_group` names resolved to sys_ids, once per name per call."""

    def __init__(self, client: ServiceNowClient, setting: str) -> None:
        self.client = client
        self.setting = setting
        self._ids: dict[str, str] = {}

    def sys_id(self, name: str) -> str:
        """The sys_id of the group named `name`; NeedsHuman when the instance has none."""
        if name not in self._ids:
            rows = self.client.query(
                "sys_user_group", f"name={escape(name)}", ("sys_id", "name"), limit=1
            )
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


def describe(release: Release, spec: TaskSpec) -> str:
    """The `description` of a change task: what it is and how it is completed."""
    lines = [f"Release {release.id}: {release.title}", f"Task {spec.key} ({spec.kind})."]
    if spec.kind == "automated":
        job = spec.job or spec.purpose or spec.key
        lines.append(f"Run by itsm-bridge (job {job}); closed by itsm-bridge when it finishes.")
    else:
        lines.append(
            "Done by a person: close this task with close code Successful (or Unsuccessful) "
            "and close notes; itsm-bridge follows its state."
        )
    return "\n".join(lines)


def payload(
    release: Release, spec: TaskSpec, change_id: str, group_id: str | None
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
    if release.window_start is not None and release.window_end is not None:
        body["planned_start_date"] = sn_datetime(release.window_start)
        body["planned_end_date"] = sn_datetime(release.window_end)
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
    client: ServiceNowClient, config: Settings, release: Release, tasks: list[TaskSpec]
) -> list[ExternalRecord] | None:
    """Create (or find) one change task per release task, in the order given.

    Returns None when the release has no ServiceNow change (another plugin owns tasks then).
    One query reads the change's existing tasks by `correlation_id`; only missing ones are
    created. Groups: the task's `group`, else `plugins.servicenow.assignment_group`.
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
            found = client.create(TABLE, payload(release, spec, change_id, group_id))
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
        failed = str(row.get("close_code") or "") == UNSUCCESSFUL
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
    """
    record = _own_record(task)
    if record is None or task.status not in (TaskStatus.DONE, TaskStatus.FAILED):
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
    body = {
        "state": CLOSED,
        "close_code": SUCCESSFUL if done else UNSUCCESSFUL,
        "close_notes": notes,
    }
    client.update(TABLE, record.id, body, fields=STATUS_FIELDS)
