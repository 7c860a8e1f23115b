"""The Jira version of a release: found by name, created with the planned date, released.

Requests (Jira Cloud REST v2/v3 "Project versions"; Jira Data Center REST 9 "version"):
- `GET /rest/api/2/project/{key}/versions`: every version of the project (not paged).
- `POST /rest/api/2/version` `{name, projectId, releaseDate, description}`: `projectId` is
  "Required when creating a version" on Cloud and accepted by Data Center; `releaseDate` is
  ISO 8601 `yyyy-mm-dd`. Sent once: a name already taken (another bridge, a person, a lost
  answer) is a 400, after which the version is read again.
- `PUT /rest/api/2/version/{id}` `{released, releaseDate}`: "If the version is released a
  request to release again is ignored"; `released: false` unreleases it.
Creating and releasing need the Administer Projects permission (a 403 asks a person).

The version's name is `version_name` with `{service}` and `{version}` filled in. Dates are
days in the bridge's `windows.timezone` (the zone its calendar and people use).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from itsm_bridge.http import HTTPRequestError
from itsm_bridge.models import Release
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_jira.client import JiraClient

log = logging.getLogger(__name__)
Version = dict[str, Any]


def version_name(client: JiraClient, release: Release) -> str:
    return client.config.version_name.format(service=release.service, version=release.version)


def day(moment: datetime, bridge: BridgeSettings) -> str:
    """The calendar day of an instant in the bridge's time zone, `yyyy-mm-dd`."""
    return moment.astimezone(ZoneInfo(bridge.windows.timezone)).date().isoformat()


def planned_day(release: Release, bridge: BridgeSettings) -> str | None:
    """The release's planned day: its window's start, else its not-before date."""
    moment = release.window_start or release.not_before
    return day(moment, bridge) if moment is not None else None


def find(client: JiraClient, name: str) -> Version | None:
    """The project's version called `name` (exact name), or None."""
    key = client.config.project
    for version in client.call("GET", f"project/{key}/versions", f"GET {key} versions") or []:
        if version.get("name") == name:
            return dict(version)
    return None


def ensure(client: JiraClient, release: Release, bridge: BridgeSettings) -> Version:
    """The release's version, created (with its planned day) when the project has none."""
    name = version_name(client, release)
    found = find(client, name)
    if found is not None:
        return found
    body: dict[str, Any] = {
        "name": name,
        "projectId": int(client.project_id()),
        "description": f"{release.title} (itsm-bridge {release.id})"[:255],
    }
    planned = planned_day(release, bridge)
    if planned:
        body["releaseDate"] = planned
    try:
        created = client.call("POST", "version", f"create version {name}", body=body, retry=False)
    except HTTPRequestError as exc:
        again = find(client, name) if exc.status == 400 else None
        if again is None:
            raise
        return again  # created meanwhile (or our answer was lost): use it
    log.info("jira: version %s created in %s", name, client.config.project)
    return dict(created)


def update(client: JiraClient, version: Version, changes: dict[str, Any]) -> Version:
    """PUT the fields that differ; nothing when the version already holds them."""
    wanted = {k: v for k, v in changes.items() if version.get(k) != v}
    if not wanted:
        return version
    name = version.get("name")
    answer = client.call("PUT", f"version/{version['id']}", f"update version {name}", body=wanted)
    return dict(answer or {**version, **wanted})


def release(client: JiraClient, version: Version, when: date | str) -> Version:
    """Mark the version released on `when` (once; a released version is left as it is)."""
    if version.get("released"):
        return version
    return update(client, version, {"released": True, "releaseDate": str(when)})


def unrelease(client: JiraClient, version: Version) -> Version:
    """Mark the version unreleased (rollback: the release did not ship)."""
    return update(client, version, {"released": False})


def reschedule(client: JiraClient, release_: Release, bridge: BridgeSettings) -> Version | None:
    """Keep an unreleased version's releaseDate on the release's chosen window."""
    planned = planned_day(release_, bridge)
    version = ensure(client, release_, bridge)
    if planned is None or version.get("released"):
        return version
    return update(client, version, {"releaseDate": planned})
