"""The `jira` poller: every issue of the project updated since the cursor, as a `scope` event.

JQL dates: a date literal without a zone (`updated >= "2026-11-28 10:00"`) is read in the
searching user's profile time zone (Jira's `JqlDateSupport.convertToDate(String)`: "It will
consider the user's time zone when parsing the date string"), and at minute precision; a
number is taken as epoch milliseconds (`convertToDate(Long)`), an instant. The poller writes
only numbers: `project = PAY AND updated >= 1764325800000 ORDER BY updated ASC, key ASC`,
so an integration user in New York misses nothing and UTC is not assumed anywhere.

The cursor is `{"updated": <epoch ms>}`: the greatest `updated` the poll saw, read from the
issues themselves (Jira's clock, not ours: the bridge's clock may be skewed), and never
moved back. Each poll starts `poll_overlap_seconds` before it, so a change indexed late or
stamped a little in the past is still seen; what the overlap reads twice has the same dedupe
key (`jira:issue:<id>:<updated ms>`) and is stored once. The first poll (no cursor) starts
from Jira's own `serverInfo.serverTime`, less the overlap, and keeps that instant as its
cursor even when nothing changed. The core stores the events and the cursor together, so a
failed poll leaves the cursor.

An event carries the issue's key and its fixVersion names: the core reads the scope of the
releases whose version is among them, or whose scope holds the key (an issue that left a
version). Timestamps come as `2026-11-28T05:30:00.000+0100`, in whatever zone the site
renders; they are parsed with their offset.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from itsm_bridge_jira.client import JiraClient, quote

SOURCE = "jira"
FIELDS = ("updated", "fixVersions")


def parse_time(value: str) -> datetime:
    """Jira's `2026-11-28T05:30:00.000+0100` (or with `Z` / `+01:00`) as an aware instant."""
    text = value.strip().replace("Z", "+00:00")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return datetime.fromisoformat(text)


def millis(value: str) -> int:
    return int(parse_time(value).timestamp() * 1000)


def read_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        return int(json.loads(cursor)["updated"])
    except (ValueError, KeyError, TypeError):
        return None  # a cursor of another format: start again from the overlap


def scope_event(issue: dict[str, Any]) -> dict[str, Any]:
    fields = issue.get("fields") or {}
    updated = millis(str(fields["updated"]))
    versions = [str(v.get("name")) for v in fields.get("fixVersions") or [] if v.get("name")]
    return {
        "source": SOURCE,
        "kind": "scope",
        "dedupe_key": f"jira:issue:{issue['id']}:{updated}",
        "payload": {"key": issue["key"], "id": str(issue["id"]), "versions": versions},
    }


class Poller:
    """`poll(cursor) -> (events, next cursor)` for `register_pollers`."""

    def __init__(self, client: JiraClient) -> None:
        self.client = client

    def server_now(self) -> int | None:
        """Jira's own clock (`serverInfo.serverTime`), in epoch ms; None if it says nothing."""
        info = self.client.call("GET", "serverInfo", "GET serverInfo") or {}
        return millis(str(info["serverTime"])) if info.get("serverTime") else None

    def jql(self, since: int | None) -> str:
        config = self.client.config
        if since is None:  # no cursor and no server time: a relative date, also Jira's clock
            window = f"-{max(1, math.ceil(config.poll_overlap_seconds / 60))}m"
        else:
            window = str(max(0, since - config.poll_overlap_seconds * 1000))
        project = quote(config.project)
        return f"project = {project} AND updated >= {window} ORDER BY updated ASC, key ASC"

    def __call__(self, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        since = read_cursor(cursor)
        if since is None:
            since = self.server_now()
        issues = self.client.search(self.jql(since), FIELDS, what="poll updated issues")
        events = [scope_event(i) for i in issues if (i.get("fields") or {}).get("updated")]
        stamps = [int(e["dedupe_key"].rsplit(":", 1)[1]) for e in events]
        newest = max([*stamps, *([since] if since is not None else [])], default=None)
        return events, json.dumps({"updated": newest}) if newest is not None else cursor
