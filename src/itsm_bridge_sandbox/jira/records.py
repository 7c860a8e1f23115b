"""The records of the Jira sandbox: projects, versions, boards, sprints, issues and what
hangs on an issue (comments, remote links, changelog histories). Plain data; `Store` owns
every mutation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from itsm_bridge_sandbox.jira.workflows import Transition


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Project:
    id: int
    key: str
    name: str
    next_number: int = 1
    #: issue type -> its workflow; "*" for every other type (default: workflows.DEFAULT)
    workflows: dict[str, list[Transition]] = field(default_factory=dict)


@dataclass
class Version:
    id: int
    project_id: int
    name: str
    description: str = ""
    released: bool = False
    archived: bool = False
    release_date: str | None = None  # yyyy-mm-dd
    start_date: str | None = None


@dataclass
class Board:
    id: int
    name: str
    project_id: int
    type: str = "scrum"


@dataclass
class Sprint:
    id: int
    board_id: int
    name: str
    state: str = "future"  # future | active | closed
    goal: str = ""
    start: datetime | None = None
    end: datetime | None = None
    complete: datetime | None = None


@dataclass
class Comment:
    id: int
    body: Any  # plain text or an ADF document, as given
    created: datetime
    updated: datetime


@dataclass
class RemoteLink:
    id: int
    object: dict[str, Any]
    global_id: str | None = None
    application: dict[str, Any] | None = None
    relationship: str | None = None


@dataclass
class History:
    id: int
    created: datetime
    items: list[dict[str, Any]]


@dataclass
class Issue:
    id: int
    key: str
    project_id: int
    summary: str
    issuetype: str = "Story"
    status: str = "To Do"
    description: Any = None
    labels: list[str] = field(default_factory=list)
    fix_versions: list[int] = field(default_factory=list)
    priority: str = "Medium"
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)
    resolution: str | None = None
    resolution_date: datetime | None = None
    sprint: int | None = None
    past_sprints: list[int] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    remote_links: list[RemoteLink] = field(default_factory=list)
    histories: list[History] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # fields the sandbox only stores
