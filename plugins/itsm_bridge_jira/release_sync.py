"""`release_changed`: the release's version and issues follow the release's state.

Only two events concern Jira (the vocabulary is the `release_changed` hookspec's):
- `state` to `scheduled` (a window was chosen): the version's `releaseDate` becomes the
  window's day (versions.reschedule), while the version is unreleased;
- `state` to `succeeded` (step 15): every issue of the scope gets one comment naming the
  version and the change number (comments.py), moves to `done_status` when one is set and the
  issue is not in a done status already (by target status, workflow.py, with Resolution when
  the screen asks for it), and then the
  version is released with the day of success as `releaseDate` (versions.release).
Every other event is ignored without a request. Redelivered events change nothing more: the
comment is found by its marker, a done issue is not moved, a released version stays as it is.
"""

from __future__ import annotations

import logging
from typing import Any

from itsm_bridge.models import Event, Release
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_jira import comments, scope, versions
from itsm_bridge_jira.client import JiraClient
from itsm_bridge_jira.rollback import change_number
from itsm_bridge_jira.workflow import Mover, same

log = logging.getLogger(__name__)
FIELDS = ("summary", "status", "issuetype")


def success_text(release: Release, version: str, when: str) -> str:
    return "\n".join(
        [
            f"Released in version {version} on {when}: {release.title}",
            f"Change: {change_number(release)}",
        ]
    )


def succeeded(
    client: JiraClient, mover: Mover, release: Release, event: Event, bridge: BridgeSettings
) -> None:
    """Comment on each issue, move it to `done_status`, release the version."""
    name = versions.version_name(client, release)
    version = versions.find(client, name)
    if version is None:
        log.warning("jira: %s has no version %s to release", client.config.project, name)
        return
    when = versions.day(event.at, bridge)
    issues = scope.issues(client, version, FIELDS)
    mark = comments.marker("release", release.id)
    text = success_text(release, name, when)
    for issue in issues:
        comments.add_once(client, str(issue["key"]), mark, text)
    target = client.config.done_status
    if target:
        moving = [i for i in issues if not _finished(i, target)]
        for issue in moving:
            mover.read_ahead(str(issue["key"]), _field(issue, "issuetype"), _field(issue, "status"))
        for issue in moving:
            mover.move(
                str(issue["key"]), _field(issue, "issuetype"), _field(issue, "status"), target
            )
    versions.release(client, version, when)
    log.info("jira: version %s released with %d issue(s)", name, len(issues))


def _finished(issue: dict[str, Any], target: str) -> bool:
    """In `done_status`, or in another done status (e.g. Won't Do): left where it is."""
    status = (issue.get("fields") or {}).get("status") or {}
    category = str((status.get("statusCategory") or {}).get("key") or "")
    return same(str(status.get("name") or ""), target) or category == "done"


def _field(issue: dict[str, Any], name: str) -> str:
    return str(((issue.get("fields") or {}).get(name) or {}).get("name") or "")


def release_changed(
    client: JiraClient, mover: Mover, release: Release, event: Event, bridge: BridgeSettings
) -> None:
    """Act on the two state transitions Jira follows; ignore every other event."""
    if event.kind != "state":
        return
    to = str(event.evidence.get("to") or "")
    if to == "scheduled":
        versions.reschedule(client, release, bridge)
    elif to == "succeeded":
        succeeded(client, mover, release, event, bridge)
