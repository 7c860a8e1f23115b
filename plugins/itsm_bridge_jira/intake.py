"""Step 3 (intake): one issue per demand or problem, found again before anything is created.

The source key lives in two places on the issue:
- a label `itsm-bridge:<source key>` (e.g. `itsm-bridge:servicenow:demand:DMND0001001`),
  which is what the lookup searches: labels are indexed for JQL on every site;
- an entity property `itsm-bridge` holding the source (system, kind, id, number, URL), for
  tools that read issues. Entity properties are searchable by JQL only where an app or plugin
  declares them for indexing (Cloud: the Connect "Entity Property" / Forge
  `jira:entityProperty` module; Data Center: the `index-document-configuration` plugin module),
  which a REST client cannot do, so the lookup never relies on them.

Create (`POST /rest/api/2/issue`, "Create issue", Cloud v2 and Data Center 9): project and
issue type by key and name, summary, description (v2: plain text on both deployments),
labels, and `properties: [{key, value}]` ("IssueUpdateDetails": "Details of issue properties
to be add or update"), so label and property arrive with the issue. Sent once: a retry (the
core's, after a lost answer) searches the label first. Jira Cloud's search is eventually
consistent ("search results may not reflect recent changes"), so a retry within seconds of a
lost answer could still miss the new issue; the core's step retries are spaced beyond that.

The remote link to the source record (`POST /rest/api/2/issue/{key}/remotelink`, "Create or
update remote issue link") carries `globalId` = `itsm-bridge:<source key>`: Jira updates the
link with that global id instead of adding a second one, so it is safe to send again, and an
issue found by its label gets its link (and property) repaired when an earlier attempt
stopped half-way.
"""

from __future__ import annotations

from typing import Any

from itsm_bridge.http import HTTPRequestError
from itsm_bridge.models import BacklogItem, WorkItem
from itsm_bridge_jira import scope
from itsm_bridge_jira.client import JiraClient, quote

PROPERTY = "itsm-bridge"
SUMMARY_LIMIT = 255


def label(item: WorkItem) -> str:
    """The lookup label; Jira labels may not contain spaces."""
    return f"itsm-bridge:{item.source_key}".replace(" ", "_")[:255]


def source(item: WorkItem) -> dict[str, Any]:
    return {
        "source_key": item.source_key,
        "system": item.source_system,
        "kind": item.source_kind,
        "id": item.source_id,
        "number": item.number,
        "url": item.url,
    }


def find(client: JiraClient, item: WorkItem) -> dict[str, Any] | None:
    jql = (
        f"project = {quote(client.config.project)} AND labels = {quote(label(item))} "
        "ORDER BY created ASC"
    )
    found = client.search(jql, scope.FIELDS, what=f"find the issue of {item.number}", limit=1)
    return found[0] if found else None


def summary(item: WorkItem) -> str:
    text = " ".join(f"{item.number}: {item.title}".split())
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def description(item: WorkItem) -> str:
    lines = [item.description.strip()] if item.description.strip() else []
    where = f" {item.url}" if item.url else ""
    lines.append(f"Source: {item.source_system} {item.source_kind} {item.number}{where}")
    return "\n\n".join(lines)


def create(client: JiraClient, item: WorkItem) -> dict[str, Any]:
    issue_type = getattr(client.config.issue_types, item.source_kind)
    body = {
        "fields": {
            "project": {"key": client.config.project},
            "issuetype": {"name": issue_type},
            "summary": summary(item),
            "description": description(item),
            "labels": [label(item)],
        },
        "properties": [{"key": PROPERTY, "value": source(item)}],
    }
    created = client.call(
        "POST", "issue", f"create the issue of {item.number}", body=body, retry=False
    )
    return {
        "key": created["key"],
        "id": created.get("id"),
        "fields": {"summary": summary(item), "issuetype": {"name": issue_type}},
    }


def ensure_property(client: JiraClient, key: str, item: WorkItem) -> None:
    """Put the `itsm-bridge` property when the issue lacks it (an earlier attempt stopped)."""
    path = f"issue/{key}/properties/{PROPERTY}"
    try:
        client.call("GET", path, f"GET {key} property {PROPERTY}")
        return
    except HTTPRequestError as exc:
        if exc.status != 404:
            raise
    client.call("PUT", path, f"set {key} property {PROPERTY}", body=source(item))


def link(client: JiraClient, key: str, item: WorkItem) -> None:
    """The remote link to the source record, upserted by its global id."""
    if not item.url:
        return
    body = {
        "globalId": f"itsm-bridge:{item.source_key}",
        "application": {"type": f"com.{item.source_system}", "name": item.source_system},
        "relationship": f"{item.source_kind} in {item.source_system}",
        "object": {
            "url": item.url,
            "title": item.number,
            "summary": item.title[:255],
        },
    }
    client.call("POST", f"issue/{key}/remotelink", f"link {key} to {item.number}", body=body)


def add_to_backlog(client: JiraClient, item: WorkItem) -> BacklogItem:
    """The work item's issue: found by its label, else created; linked to its source."""
    issue = find(client, item)
    if issue is None:
        issue = create(client, item)
    else:
        ensure_property(client, str(issue["key"]), item)
    link(client, str(issue["key"]), item)
    return scope.item(client, issue)
