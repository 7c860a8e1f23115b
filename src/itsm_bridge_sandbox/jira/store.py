"""The in-memory state of the Jira sandbox: projects, versions, boards, sprints, issues.

Everything here is plain data plus the mutations the REST layer needs; every mutation of an
issue records a changelog history the way Jira does (`field`, `fieldtype`, `from`,
`fromString`, `to`, `toString` items — "Get changelogs", Jira Cloud REST v3, issues group)
and notifies `Store.on_change` so that webhooks can be sent.

The workflow deliberately names its transitions differently from its statuses, as real
workflows do, so that clients must look transitions up by their target status.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from itsm_bridge_sandbox.jira.records import (
    Board,
    Comment,
    History,
    Issue,
    Project,
    RemoteLink,
    Sprint,
    Version,
    utcnow,
)
from itsm_bridge_sandbox.jira.workflows import DEFAULT, Transition, resolution_name


def jira_time(moment: datetime, tz: str = "UTC") -> str:
    """Jira's timestamp format in a user's zone, e.g. `2026-11-28T05:30:00.000+0000`."""
    moment = moment.astimezone(ZoneInfo(tz))
    millis = f"{moment.microsecond // 1000:03d}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + millis + moment.strftime("%z")


def agile_time(moment: datetime) -> str:
    """Jira Software's sprint date format, e.g. `2026-11-28T05:30:00.000Z`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JiraError(Exception):
    """A failure with Jira's error shape: `{"errorMessages": [...], "errors": {...}}`."""

    def __init__(
        self, status: int, messages: Iterable[str] = (), errors: dict[str, str] | None = None
    ):
        self.status = status
        self.messages = list(messages)
        self.errors = dict(errors or {})
        super().__init__(f"{status}: {self.messages} {self.errors}")

    def body(self) -> dict[str, Any]:
        return {"errorMessages": self.messages, "errors": self.errors}


# -- workflow ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Status:
    id: str
    name: str
    category: str  # "new" | "indeterminate" | "done"


STATUS_CATEGORIES = {
    # id, key, colorName, name — "Get all status categories" (REST v2 statuscategory)
    "new": (2, "new", "blue-gray", "To Do"),
    "indeterminate": (4, "indeterminate", "yellow", "In Progress"),
    "done": (3, "done", "green", "Done"),
}

STATUSES = [
    Status("10000", "To Do", "new"),
    Status("3", "In Progress", "indeterminate"),
    Status("10001", "In Review", "indeterminate"),
    Status("10002", "Done", "done"),
]


TRANSITIONS = DEFAULT  # the default workflow (see workflows.py)

ISSUE_TYPES = {"Epic": "10000", "Story": "10001", "Task": "10002", "Bug": "10003"}
PRIORITIES = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}


def status_by_name(name: str) -> Status:
    for status in STATUSES:
        if status.name.lower() == name.lower() or status.id == name:
            return status
    raise KeyError(name)


ChangeListener = Callable[[str, dict[str, Any]], None]


class Store:
    """All Jira state. Not thread-safe by itself: the server holds its lock around calls."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self.clock = clock
        self.on_change: ChangeListener | None = None
        #: the integration user's profile time zone: JQL dates without a zone are read in
        #: it and REST renders timestamps in it
        self.timezone = "UTC"
        self.clear()

    def clear(self) -> None:
        """Forget every record (the listener and clock stay)."""
        self.projects: dict[int, Project] = {}
        self.versions: dict[int, Version] = {}
        self.boards: dict[int, Board] = {}
        self.sprints: dict[int, Sprint] = {}
        self.issues: dict[int, Issue] = {}
        self._ids = itertools.count(10000)
        self._board_ids = itertools.count(1)
        self._sprint_ids = itertools.count(1)
        self._small_ids = itertools.count(10000)

    def _emit(self, event: str, **data: Any) -> None:
        if self.on_change is not None:
            self.on_change(event, data)

    # -- lookups ---------------------------------------------------------------------------
    def project(self, key_or_id: str | int) -> Project:
        text = str(key_or_id)
        for project in self.projects.values():
            if project.key.upper() == text.upper() or str(project.id) == text:
                return project
        raise JiraError(404, [f"No project could be found with key '{text}'."])

    def project_or_none(self, key_key_or_name: str) -> Project | None:
        for project in self.projects.values():
            if key_key_or_name.upper() in (project.key, str(project.id), project.name.upper()):
                return project
        return None

    def issue_or_none(self, key_or_id: str | int) -> Issue | None:
        try:
            return self.issue(key_or_id)
        except JiraError:
            return None

    def issue(self, key_or_id: str | int) -> Issue:
        text = str(key_or_id).upper()
        for issue in self.issues.values():
            if issue.key == text or str(issue.id) == text:
                return issue
        raise JiraError(404, ["Issue does not exist or you do not have permission to see it."])

    def version(self, version_id: str | int) -> Version:
        try:
            return self.versions[int(version_id)]
        except (KeyError, ValueError):
            raise JiraError(404, [f"Could not find version for id '{version_id}'"]) from None

    def version_by_name(self, project: Project, name: str) -> Version | None:
        for version in self.versions.values():
            if version.project_id == project.id and version.name == name:
                return version
        return None

    def sprint(self, sprint_id: str | int) -> Sprint:
        try:
            return self.sprints[int(sprint_id)]
        except (KeyError, ValueError):
            raise JiraError(404, [f"Sprint with id {sprint_id} does not exist"]) from None

    def sprint_by_name(self, name: str) -> Sprint | None:
        return next((s for s in self.sprints.values() if s.name == name), None)

    def board(self, board_id: str | int) -> Board:
        try:
            return self.boards[int(board_id)]
        except (KeyError, ValueError):
            message = f"Board {board_id} does not exist or you do not have permission to see it."
            raise JiraError(404, [message]) from None

    # -- creation --------------------------------------------------------------------------
    def add_project(self, key: str, name: str) -> Project:
        project = Project(next(self._ids), key.upper(), name)
        self.projects[project.id] = project
        return project

    def add_version(self, project: Project, name: str, **attrs: Any) -> Version:
        if self.version_by_name(project, name) is not None:
            message = "A version with this name already exists in this project."
            raise JiraError(400, [], {"name": message})
        version = Version(next(self._ids), project.id, name, **attrs)
        self.versions[version.id] = version
        self._emit("jira:version_created", version=version)
        return version

    def add_board(self, project: Project, name: str) -> Board:
        board = Board(next(self._board_ids), name, project.id)
        self.boards[board.id] = board
        return board

    def add_sprint(self, board: Board, name: str, state: str = "future", **attrs: Any) -> Sprint:
        sprint = Sprint(next(self._sprint_ids), board.id, name, state.lower(), **attrs)
        if sprint.state in ("active", "closed") and sprint.start is None:
            sprint.start = self.clock()
        self.sprints[sprint.id] = sprint
        return sprint

    def create_issue(self, project: Project, summary: str, **attrs: Any) -> Issue:
        now = self.clock()
        key = f"{project.key}-{project.next_number}"
        project.next_number += 1
        issue = Issue(next(self._ids), key, project.id, summary, created=now, updated=now, **attrs)
        if status_by_name(issue.status).category == "done" and issue.resolution is None:
            issue.resolution, issue.resolution_date = "Done", now
        self.issues[issue.id] = issue
        self._emit("jira:issue_created", issue=issue)
        return issue

    # -- mutations -------------------------------------------------------------------------
    def record(
        self,
        issue: Issue,
        items: list[dict[str, Any]],
        event_type: str = "issue_updated",
        **extra: Any,
    ) -> History | None:
        """Stamp `updated`, append a changelog history and notify listeners."""
        if not items and not extra:
            return None
        now = self.clock()
        issue.updated = now
        history = History(next(self._small_ids), now, items) if items else None
        if history is not None:
            issue.histories.append(history)
        self._emit(
            "jira:issue_updated", issue=issue, history=history, event_type=event_type, **extra
        )
        return history

    @staticmethod
    def item(
        name: str, old: Any, new: Any, old_id: Any = None, new_id: Any = None, custom: bool = False
    ) -> dict[str, Any]:
        return {
            "field": name,
            "fieldtype": "custom" if custom else "jira",
            "from": None if old_id is None else str(old_id),
            "fromString": old,
            "to": None if new_id is None else str(new_id),
            "toString": new,
        }

    def set_status(
        self, issue: Issue, target: str, record: bool = True, resolution: str | None = None
    ) -> list[dict[str, Any]]:
        old, new = status_by_name(issue.status), status_by_name(target)
        if old == new:
            return []
        items = [self.item("status", old.name, new.name, old.id, new.id)]
        issue.status = new.name
        if new.category == "done" and issue.resolution is None:
            name = resolution or "Done"
            issue.resolution, issue.resolution_date = name, self.clock()
            items.append(self.item("resolution", None, name, None, "10000"))
        elif new.category != "done" and issue.resolution is not None:
            items.append(self.item("resolution", issue.resolution, None, "10000", None))
            issue.resolution, issue.resolution_date = None, None
        if record:
            self.record(issue, items, "issue_generic")
        return items

    def workflow(self, issue: Issue) -> list[Transition]:
        """The transitions of the issue's workflow (its project's, by issue type)."""
        chosen = self.projects[issue.project_id].workflows
        return chosen.get(issue.issuetype) or chosen.get("*") or DEFAULT

    def transitions_for(self, issue: Issue) -> list[Transition]:
        return [t for t in self.workflow(issue) if issue.status in t.sources]

    def transition(
        self, issue: Issue, transition_id: str, fields: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Take a transition; `fields` may hold only its screen's fields, and the required
        ones ("Field 'x' cannot be set. It is not on the appropriate screen, or unknown.")."""
        match = next((t for t in self.transitions_for(issue) if t.id == str(transition_id)), None)
        if match is None:
            raise JiraError(400, [f"Transition id '{transition_id}' is not valid for this issue."])
        given = dict(fields or {})
        errors = {
            name: f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
            for name in given
            if name not in match.screen
        }
        errors.update(
            {
                name: f"{name.capitalize()} is required."
                for name in match.required
                if given.get(name) in (None, "", {})
            }
        )
        resolution = resolution_name(given.get("resolution")) if "resolution" in given else None
        if "resolution" in given and "resolution" not in errors and resolution is None:
            errors["resolution"] = "Resolution value is not valid."
        if errors:
            raise JiraError(400, [], errors)
        return self.set_status(issue, match.to, record=False, resolution=resolution)

    def set_labels(self, issue: Issue, labels: list[str]) -> list[dict[str, Any]]:
        for label in labels:
            if " " in label:
                message = f"The label '{label}' contains spaces which is invalid."
                raise JiraError(400, [], {"labels": message})
        if labels == issue.labels:
            return []
        old = " ".join(issue.labels)
        issue.labels = list(dict.fromkeys(labels))
        return [self.item("labels", old, " ".join(issue.labels))]

    def set_fix_versions(self, issue: Issue, version_ids: list[int]) -> list[dict[str, Any]]:
        items = []
        for vid in issue.fix_versions:
            if vid not in version_ids:
                items.append(self.item("Fix Version", self.versions[vid].name, None, vid, None))
        for vid in version_ids:
            if vid not in issue.fix_versions:
                items.append(self.item("Fix Version", None, self.versions[vid].name, None, vid))
        issue.fix_versions = list(dict.fromkeys(version_ids))
        return items

    def move_to_sprint(self, issue: Issue, sprint_id: int | None) -> list[dict[str, Any]]:
        if issue.sprint == sprint_id:
            return []
        old = self.sprints[issue.sprint] if issue.sprint else None
        new = self.sprints[sprint_id] if sprint_id else None
        if old is not None and old.state == "closed":
            issue.past_sprints.append(old.id)
        issue.sprint = sprint_id
        return [
            self.item(
                "Sprint",
                old.name if old else "",
                new.name if new else "",
                old.id if old else None,
                new.id if new else None,
                custom=True,
            )
        ]

    def add_comment(self, issue: Issue, body: Any) -> Comment:
        now = self.clock()
        comment = Comment(next(self._small_ids), body, now, now)
        issue.comments.append(comment)
        self.record(issue, [], "issue_commented", comment=comment)
        return comment

    def upsert_remote_link(self, issue: Issue, data: dict[str, Any]) -> tuple[RemoteLink, bool]:
        """Create a remote link, or update the one with the same `globalId` (as Jira does)."""
        obj = data.get("object")
        if not isinstance(obj, dict) or not obj.get("url") or not obj.get("title"):
            errors = {}
            if not isinstance(obj, dict) or not obj.get("url"):
                errors["url"] = "'url' is required."
            if not isinstance(obj, dict) or not obj.get("title"):
                errors["title"] = "'title' is required."
            raise JiraError(400, [], errors)
        global_id = data.get("globalId")
        for link in issue.remote_links:
            if global_id and link.global_id == global_id:
                link.object = obj
                link.application = data.get("application", link.application)
                link.relationship = data.get("relationship", link.relationship)
                return link, False
        link = RemoteLink(
            next(self._small_ids), obj, global_id, data.get("application"), data.get("relationship")
        )
        issue.remote_links.append(link)
        return link, True

    def update_version(self, version: Version, data: dict[str, Any]) -> None:
        was_released = version.released
        for key, attr in (
            ("name", "name"),
            ("description", "description"),
            ("releaseDate", "release_date"),
            ("startDate", "start_date"),
            ("archived", "archived"),
            ("released", "released"),
        ):
            if key in data:
                setattr(version, attr, data[key])
        if version.released and not was_released:
            if not version.release_date:
                version.release_date = self.clock().date().isoformat()
            self._emit("jira:version_released", version=version)
        elif was_released and not version.released:
            self._emit("jira:version_unreleased", version=version)
        else:
            self._emit("jira:version_updated", version=version)
