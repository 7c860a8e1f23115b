"""Step 14: a rolled-back release's issues go back to the backlog, each exactly once.

For every issue of the release's scope (read again by key, `status`, `issuetype` and
`fixVersions` only):
1. one comment with the reason and the change number (comments.py: a marker makes it once);
2. a transition to `backlog_status`, chosen by target status, the shortest known way where
   the workflow has no direct transition (workflow.py); the transitions of every issue are
   read before any issue moves, so each issue's position teaches the others;
3. the release's version removed from `fixVersions` with an `update` operation, which leaves
   the issue's other versions alone: `PUT /rest/api/2/issue/{key}` `{"update":
   {"fixVersions": [{"remove": {"id": "<version id>"}}]}}` ("Edit issue", Cloud v2 and Data
   Center 9: "update: A Map containing the field name and a list of operations to perform");
   sent only when the issue still has the version;
4. out of open sprints: the issues that `sprint in openSprints()` still finds are moved with
   `POST /rest/agile/1.0/backlog/issue` `{"issues": [...]}` ("Move issues to backlog", Jira
   Software REST 1.0: "equivalent to remove future and active sprints from a given set of
   issues. At most 50 issues may be moved at once"), 50 per call. A site without Jira Software
   has no Sprint field (the JQL is refused): nothing to move, said in the log.
Then the version is left unreleased (unreleased if it had been released).

Each part looks before it writes, so running the rollback again changes nothing more.
"""

from __future__ import annotations

import logging
from typing import Any

from itsm_bridge.http import HTTPRequestError
from itsm_bridge.models import BacklogItem, Release
from itsm_bridge_jira import comments, scope, versions
from itsm_bridge_jira.client import JiraClient
from itsm_bridge_jira.workflow import Mover, same

log = logging.getLogger(__name__)
FIELDS = ("summary", "status", "issuetype", "fixVersions")
MOVE_LIMIT = 50


def change_number(release: Release) -> str:
    """The ServiceNow change's number, or a plain "none" when the release has no change."""
    change = release.record("servicenow", "change_request") or release.record(
        None, "change_request"
    )
    return (change.number or change.id) if change is not None else "none"


def rollback_text(release: Release, reason: str, version: str, status: str) -> str:
    return "\n".join(
        [
            f"Release {release.title} was rolled back: {reason or 'no reason given'}",
            f"Change: {change_number(release)}",
            f"This issue is back in the backlog: status {status}, no longer in version "
            f"{version}, out of open sprints.",
        ]
    )


def _type(issue: dict[str, Any]) -> str:
    return str(((issue.get("fields") or {}).get("issuetype") or {}).get("name") or "")


def _status(issue: dict[str, Any]) -> str:
    return str(((issue.get("fields") or {}).get("status") or {}).get("name") or "")


def remove_version(client: JiraClient, issue: dict[str, Any], version_id: str) -> bool:
    """Remove the version from the issue's fixVersions (others kept); False if it had none."""
    held = [str(v.get("id")) for v in (issue.get("fields") or {}).get("fixVersions") or []]
    if version_id not in held:
        return False
    key = issue["key"]
    body = {"update": {"fixVersions": [{"remove": {"id": version_id}}]}}
    client.call("PUT", f"issue/{key}", f"remove {key} from its version", body=body)
    return True


def leave_sprints(client: JiraClient, keys: list[str]) -> list[str]:
    """Move the issues that are in open sprints to the backlog; the keys moved."""
    try:
        in_sprint = scope.by_keys(client, keys, ("summary",), also="sprint in openSprints()")
    except HTTPRequestError as exc:
        if exc.status != 400:
            raise
        log.warning("jira: no open sprints to leave (%s)", exc)
        return []
    moved = [str(issue["key"]) for issue in in_sprint]
    for start in range(0, len(moved), MOVE_LIMIT):
        chunk = moved[start : start + MOVE_LIMIT]
        client.run(
            f"move {len(chunk)} issue(s) to the backlog",
            lambda chunk=chunk: client.jira.move_to_backlog(chunk),  # type: ignore[misc]
        )
    return moved


def return_to_backlog(
    client: JiraClient, mover: Mover, release: Release, items: list[BacklogItem], reason: str
) -> None:
    """Comment, transition, drop the version, leave sprints; unrelease the version."""
    config = client.config
    name = versions.version_name(client, release)
    version = versions.find(client, name)
    keys = [item.key for item in items if item.system == scope.SYSTEM]
    issues = scope.by_keys(client, keys, FIELDS) if keys else []
    text = rollback_text(release, reason, name, config.backlog_status)
    mark = comments.marker("rollback", release.id)
    for issue in issues:
        comments.add_once(client, str(issue["key"]), mark, text)
    moving = [i for i in issues if not same(_status(i), config.backlog_status)]
    for issue in moving:
        mover.read_ahead(str(issue["key"]), _type(issue), _status(issue))
    for issue in moving:
        mover.move(str(issue["key"]), _type(issue), _status(issue), config.backlog_status)
    if version is not None:
        for issue in issues:
            remove_version(client, issue, str(version["id"]))
    if config.move_to_backlog and issues:
        leave_sprints(client, [str(i["key"]) for i in issues])
    if version is not None and version.get("released"):
        versions.unrelease(client, version)
    log.info("jira: %d issue(s) of %s returned to the backlog", len(issues), release.id)
