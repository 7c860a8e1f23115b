"""Steps 3 and 10: the issues a release delivers.

The scope is `scope_jql` with `{project}`, `{version_id}` and `{version}` filled in; by
default `project = PAY AND fixVersion = <version id>`. The version is named by its id: JQL
accepts the id, and "searching by version ID is better than by name, since versions with the
same name can exist in different projects" ("Advanced search reference - JQL fields",
Atlassian support, Fix version). The version is created when the project has none yet
(versions.ensure), with the release's planned day.

Each issue becomes a `BacklogItem` with `kind` = its issue type's name and `url` = its browse
link, so the core's default release notes group the issues by type. Only `summary`,
`status` and `issuetype` are asked for (`fields`); the order is by key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from itsm_bridge.http import HTTPRequestError
from itsm_bridge.models import BacklogItem, Release
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_jira import versions
from itsm_bridge_jira.client import JiraClient, quote

SYSTEM = "jira"
FIELDS = ("summary", "status", "issuetype")
KEYS_PER_QUERY = 100
QUOTED = re.compile(r"'([^']+)'")


def scope_jql(client: JiraClient, version: dict[str, Any]) -> str:
    """The release's JQL, ordered by key unless the configured query orders it itself."""
    jql = client.config.scope_jql.format(
        project=quote(client.config.project),
        version_id=version["id"],
        version=quote(str(version.get("name", ""))),
    )
    return jql if "order by" in jql.lower() else f"{jql} ORDER BY key ASC"


def item(client: JiraClient, issue: dict[str, Any]) -> BacklogItem:
    fields = issue.get("fields") or {}
    return BacklogItem(
        system=SYSTEM,
        key=str(issue["key"]),
        summary=str(fields.get("summary") or issue["key"]),
        status=str((fields.get("status") or {}).get("name") or ""),
        kind=str((fields.get("issuetype") or {}).get("name") or ""),
        url=client.browse_url(str(issue["key"])),
    )


def issues(
    client: JiraClient, version: dict[str, Any], fields: tuple[str, ...] = FIELDS
) -> list[dict[str, Any]]:
    """The raw issues of the version's scope, `fields` only."""
    return client.search(scope_jql(client, version), fields, what="search release scope")


def release_scope(
    client: JiraClient, release: Release, bridge: BridgeSettings
) -> list[BacklogItem]:
    """The release's backlog items (the version is created first when it is missing)."""
    version = versions.ensure(client, release, bridge)
    return [item(client, issue) for issue in issues(client, version)]


def by_keys(
    client: JiraClient, keys: Sequence[str], fields: Sequence[str], also: str = ""
) -> list[dict[str, Any]]:
    """The issues with these keys (and matching `also`, a JQL condition), `fields` only.

    JQL refuses a whole query that names a key which no longer exists ("An issue with key
    'PAY-9' does not exist for field 'key'."): such keys are dropped and the query sent again.
    """
    found: list[dict[str, Any]] = []
    wanted = list(dict.fromkeys(keys))
    for start in range(0, len(wanted), KEYS_PER_QUERY):
        chunk = wanted[start : start + KEYS_PER_QUERY]
        while chunk:
            jql = f"key in ({', '.join(quote(k) for k in chunk)})"
            jql += f" AND {also}" if also else ""
            try:
                found += client.search(f"{jql} ORDER BY key ASC", fields, what="search issues")
                break
            except HTTPRequestError as exc:
                named = QUOTED.findall(str(exc)) if exc.status == 400 else []
                gone = {k for k in named if k in chunk}
                if not gone:
                    raise
                chunk = [k for k in chunk if k not in gone]
    return found
