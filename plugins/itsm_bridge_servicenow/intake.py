"""Steps 1-2: approved demands (`dmn_demand`) and problems whose fix needs code become work.

What qualifies: demands whose `state` is the choice labelled "Approved" and problems whose
`state` is "Fix in Progress", the values read from the instance's `sys_choice` (or
`plugins.servicenow.choices`), see choices.py. The numbers vary: problem `state` is 104 on a
base instance (`servicenow.itsm` Ansible collection, `module_utils/problem.py`); one real
instance's `dmn_demand.state` export lists 1 Draft, 2 Submitted, 8 Approved, 9 Completed, -4
Qualified, and the published docs list none. A configured encoded query
(`plugins.servicenow.intake.demand_query` / `problem_query`) replaces the default as given.

Polling: records updated at or after `since`, read page by page with a keyset cursor on
(`sys_updated_on`, `sys_id`) rather than an offset, so a record updated while we page can
neither be skipped nor read twice; the core keeps the cursor (with an overlap window) and
drops duplicates by `WorkItem.source_key`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from itsm_bridge.models import BacklogItem, WorkItem
from itsm_bridge_servicenow.change_tasks import record_url
from itsm_bridge_servicenow.client import ServiceNowClient, parse_sn_datetime, sn_datetime
from itsm_bridge_servicenow.encoded import escape

if TYPE_CHECKING:
    from itsm_bridge_servicenow import Settings

SYSTEM = "servicenow"
TABLES = {"demand": "dmn_demand", "problem": "problem"}
BASE_FIELDS = (
    "sys_id",
    "number",
    "short_description",
    "description",
    "sys_updated_on",
    "cmdb_ci.name",
)
EXTRA_FIELDS = {"problem": ("fix_notes",)}
#: The state (choice meaning, see choices.py) that makes a record backlog work.
READY_STATE = {"demand": "approved", "problem": "fix_in_progress"}
ORDER = "ORDERBYsys_updated_on^ORDERBYsys_id"


def _branches(query: str) -> list[str]:
    """The `^NQ` branches of a configured query, without its own ORDERBY terms."""
    branches = []
    for branch in query.split("^NQ"):
        terms = [t for t in branch.split("^") if t and not t.startswith("ORDERBY")]
        branches.append("^".join(terms))
    return branches or [""]


def _join(*terms: str) -> str:
    return "^".join(t for t in terms if t)


def page_query(base: str, after: tuple[str, str] | None, since: datetime | None) -> str:
    """One page's encoded query: `base`, then either `sys_updated_on>=since` (first page) or
    "after the last (sys_updated_on, sys_id) read" (next pages), in cursor order.

    A condition appended after a `^NQ` would bind to the last branch only, so it is added to
    every branch of the configured query.
    """
    if after is None:
        cursor = [f"sys_updated_on>={sn_datetime(since)}" if since else ""]
    else:
        stamp, sys_id = escape(after[0]), escape(after[1])
        cursor = [f"sys_updated_on>{stamp}", f"sys_updated_on={stamp}^sys_id>{sys_id}"]
    parts = [_join(branch, c) for branch in _branches(base) for c in cursor]
    return _join("^NQ".join(parts), ORDER)


def poll(
    client: ServiceNowClient,
    table: str,
    base: str,
    fields: tuple[str, ...],
    since: datetime | None,
) -> Iterator[dict[str, Any]]:
    """Every record of `table` matching `base` updated at or after `since`, oldest first."""
    after: tuple[str, str] | None = None
    size = client.page_size
    while True:
        rows = client.query(table, page_query(base, after, since), fields, limit=size)
        yield from rows
        if len(rows) < size:
            return
        last = (str(rows[-1].get("sys_updated_on") or ""), str(rows[-1]["sys_id"]))
        if after is not None and last <= after:  # the instance ignored the cursor: stop
            return
        after = last


def _work_item(client: ServiceNowClient, kind: str, row: dict[str, Any]) -> WorkItem:
    table = TABLES[kind]
    sys_id = str(row["sys_id"])
    description = str(row.get("description") or "")
    fix = str(row.get("fix_notes") or "")
    if fix:
        description = f"{description}\n\nFix notes:\n{fix}".strip()
    return WorkItem(
        source_system=SYSTEM,
        source_kind="demand" if kind == "demand" else "problem",
        source_id=sys_id,
        number=str(row.get("number") or sys_id),
        title=str(row.get("short_description") or row.get("number") or sys_id),
        description=description,
        url=record_url(client, table, sys_id),
        service=str(row.get("cmdb_ci.name") or "") or None,
        updated_at=parse_sn_datetime(str(row.get("sys_updated_on") or "")),
    )


def base_query(client: ServiceNowClient, kind: str, configured: str | None) -> str:
    """The configured encoded query of `kind`, else `state=<value of its ready state>`."""
    if configured is not None:
        return configured
    state = client.choices.value(TABLES[kind], "state", READY_STATE[kind])
    return f"state={escape(state)}"


def collect(client: ServiceNowClient, config: Settings, since: datetime | None) -> list[WorkItem]:
    """Demands and problems selected by the intake queries, updated at or after `since`.

    Nothing when `intake.enabled` is false. Each record appears once, demands first.
    """
    if not config.intake.enabled:
        return []
    configured = {"demand": config.intake.demand_query, "problem": config.intake.problem_query}
    queries = {kind: base_query(client, kind, query) for kind, query in configured.items()}
    items: list[WorkItem] = []
    for kind, base in queries.items():
        fields = BASE_FIELDS + EXTRA_FIELDS.get(kind, ())
        seen: set[str] = set()
        for row in poll(client, TABLES[kind], base, fields, since):
            if str(row["sys_id"]) not in seen:
                seen.add(str(row["sys_id"]))
                items.append(_work_item(client, kind, row))
    return items


def note_text(backlog_item: BacklogItem) -> str:
    """The work note written on the source record."""
    where = backlog_item.url or f"in {backlog_item.system}"
    return f"{_marker(backlog_item)} {where}"


def _marker(backlog_item: BacklogItem) -> str:
    return f"Backlog item {backlog_item.key} created:"


def note_backlog_item(client: ServiceNowClient, item: WorkItem, backlog_item: BacklogItem) -> None:
    """Add a work note "Backlog item PAY-12 created: <url>" to the demand or problem.

    The journal (`sys_journal_field`) is read first: when it already holds the note for that
    key, nothing is written, so a retry adds no duplicate.
    """
    table = TABLES[item.source_kind]
    query = (
        f"element_id={escape(item.source_id)}^element=work_notes"
        f"^valueLIKE{escape(_marker(backlog_item))}"
    )
    if client.query("sys_journal_field", query, ("sys_id",), limit=1):
        return
    client.update(table, item.source_id, {"work_notes": note_text(backlog_item)}, ("sys_id",))
