"""What the people around a ServiceNow instance do, for tests and the demo: approvers walk
a change through the model, assignees close their tasks, users raise incidents. These are
not REST calls: the bridge never sees them except through the Table API afterwards.
"""

from __future__ import annotations

import threading
from typing import Any

from itsm_bridge_sandbox.servicenow import change, schema
from itsm_bridge_sandbox.servicenow.records import TABLE_KEY, Store


def public(row: dict[str, str]) -> dict[str, str]:
    """A row without the sandbox's own bookkeeping key."""
    return {key: value for key, value in row.items() if key != TABLE_KEY}


class SandboxPeople:
    """Part of `ServiceNowSandbox`: its test helpers (the server's `lock` and `store`)."""

    lock: threading.RLock
    store: Store

    def record(self, table: str, key: str) -> dict[str, str]:
        """A copy of a row by sys_id, number or display value; KeyError when absent."""
        with self.lock:
            return public(self._find(table, key))

    def insert(self, table: str, **fields: Any) -> dict[str, str]:
        """Add a raw row (any field, references by name, no model checks)."""
        with self.lock:
            if not schema.is_known(table):
                raise KeyError(f"unknown table {table}")
            sys_id = fields.pop("sys_id", None)
            values, journal = self.store.prepare(table, fields, strict=False)
            return public(self.store.insert(table, values, journal, user="admin", sys_id=sys_id))

    def approve_change(
        self, key: str, comment: str = "", *, levels: int | None = None
    ) -> dict[str, str]:
        """The approvers approve, as the change model walks them: on a normal change the
        technical approvers (Assess -> Authorize) then the CAB (Authorize -> Scheduled,
        approval `approved`); on an emergency change the CAB. `levels` approves only that
        many levels (None: every level until Scheduled). `comment` goes to the change's
        `comments`. ValueError when the change is not waiting for an approval (its requester
        never asked, or it was rejected)."""
        with self.lock:
            row = self._find("change_request", key)
            steps = [change.approval_step(row)]  # raises when nothing waits
            journal = [("comments", comment)] if comment else []
            while True:
                approver = change.APPROVERS[row["state"]]
                user = "cab.manager" if "CAB" in approver else "tech.approver"
                self.store.update(row, steps[-1], journal, user=user)
                journal = []
                if (levels is not None and len(steps) >= levels) or not change.waiting_for(row):
                    return public(row)
                steps.append(change.approval_step(row))

    def reject_change(self, key: str, comment: str) -> dict[str, str]:
        """The approvers reject: the change goes back to New with approval `rejected`, and
        `comment` in its `comments`. ValueError when no approval is requested."""
        with self.lock:
            row = self._find("change_request", key)
            values = change.rejection(row)
            approver = change.APPROVERS[row["state"]]
            user = "cab.manager" if "CAB" in approver else "tech.approver"
            journal = [("comments", comment)] if comment else []
            return public(self.store.update(row, values, journal, user=user))

    def close_task(
        self, key: str, close_code: str = "successful", notes: str = ""
    ) -> dict[str, str]:
        """Close a change_task (state 3) as its assignee would; `close_code` is one of
        successful, successful_issues, unsuccessful (the change_task choices)."""
        with self.lock:
            row = self._find("change_task", key)
            values = {
                "state": "3",
                "close_code": close_code,
                "close_notes": notes,
                "active": "false",
                "closed_at": self.store.timestamp(),
                "closed_by": "task.assignee",
            }
            return public(self.store.update(row, values, user="task.assignee"))

    def open_incident(self, **fields: Any) -> dict[str, str]:
        """Raise an incident (e.g. `caused_by=<change number>`, `cmdb_ci="payments-api"`)."""
        fields.setdefault("short_description", "Sandbox incident")
        return self.insert("incident", **fields)

    def journal(
        self, key: str, element: str | None = None, table: str = "task"
    ) -> list[dict[str, str]]:
        """The journal entries (work_notes, comments) of a record, oldest first."""
        with self.lock:
            row = self._find(table, key)
            return [public(entry) for entry in self.store.journal(row["sys_id"], element)]

    def _find(self, table: str, key: str) -> dict[str, str]:
        row = self.store.find(table, key)
        if row is None:
            raise KeyError(f"no {table} record {key!r}")
        return row
