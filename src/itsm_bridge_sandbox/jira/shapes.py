"""JSON shapes of Jira resources, as the real REST API renders them.

Sources (Atlassian developer documentation, "The Jira Cloud platform REST API" v2/v3 and
"Jira Server platform REST API reference" 9.x; "Jira Software Cloud REST API" agile 1.0):
- issue: "Get issue" (`expand`, `id`, `self`, `key`, `fields`); timestamps as
  `2026-11-28T05:30:00.000+0000`; `status.statusCategory`; `fixVersions` are version beans.
- v3 rich-text fields (description, comment body) are Atlassian Document Format documents
  ("Atlassian Document Format" page); v2 renders them as plain strings.
- sprint field: Cloud `customfield_10020` is a list of sprint objects; Server renders each
  sprint as the greenhopper `Sprint@hash[id=..,rapidViewId=..,state=..,name=..]` string.
- user: Cloud users are identified by `accountId` (GDPR migration), Server ones by `name`/`key`.
- version: "Get version" (`self`, `id` as a string, `name`, `archived`, `released`,
  `releaseDate`, `projectId`).
- board / sprint: Jira Software "Get board", "Get sprint".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from itsm_bridge_sandbox.jira.store import (
    ISSUE_TYPES,
    PRIORITIES,
    STATUS_CATEGORIES,
    Board,
    Comment,
    Issue,
    Project,
    RemoteLink,
    Sprint,
    Status,
    Store,
    Transition,
    Version,
    agile_time,
    jira_time,
    status_by_name,
)
from itsm_bridge_sandbox.jira.workflows import field_meta

ACCOUNT_ID = "5b10ac8d82e05b22cc7d4ef5"
SPRINT_FIELD = "customfield_10020"
ISSUE_EXPAND = "operations,versionedRepresentations,editmeta,changelog,renderedFields"


@dataclass
class Ctx:
    """How to render: where the server is, which REST version, which deployment."""

    base: str
    api: str = "2"
    cloud: bool = False
    user: str = "sandbox"
    tz: str = "UTC"  # the user's profile time zone: timestamps are rendered in it

    def time(self, moment: datetime) -> str:
        return jira_time(moment, self.tz)

    @property
    def rest(self) -> str:
        return f"{self.base}/rest/api/{self.api}"


# -- rich text -----------------------------------------------------------------------------
def adf_to_text(value: Any) -> str:
    """Flatten an ADF document (or anything) to plain text; paragraphs become lines."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if value.get("type") == "text":
            return str(value.get("text", ""))
        parts = [adf_to_text(child) for child in value.get("content", [])]
        sep = "\n" if value.get("type") in ("doc", "bulletList", "orderedList") else ""
        return sep.join(parts)
    if isinstance(value, list):
        return "".join(adf_to_text(v) for v in value)
    return str(value)


def text_to_adf(text: str) -> dict[str, Any]:
    paragraphs = [
        {"type": "paragraph", "content": [{"type": "text", "text": line}] if line else []}
        for line in text.split("\n")
    ]
    return {"type": "doc", "version": 1, "content": paragraphs}


def rich(ctx: Ctx, value: Any) -> Any:
    if value is None:
        return None
    if ctx.api == "3":
        return value if isinstance(value, dict) else text_to_adf(str(value))
    return adf_to_text(value)


# -- small beans ---------------------------------------------------------------------------
def user(ctx: Ctx) -> dict[str, Any]:
    avatars = {
        size: f"{ctx.base}/secure/useravatar?size={size}"
        for size in ("48x48", "24x24", "16x16", "32x32")
    }
    if ctx.cloud:
        return {
            "self": f"{ctx.rest}/user?accountId={ACCOUNT_ID}",
            "accountId": ACCOUNT_ID,
            "accountType": "atlassian",
            "emailAddress": f"{ctx.user}@example.com",
            "avatarUrls": avatars,
            "displayName": "Sandbox User",
            "active": True,
            "timeZone": ctx.tz,
            "locale": "en_US",
        }
    return {
        "self": f"{ctx.rest}/user?username={ctx.user}",
        "key": "JIRAUSER10000",
        "name": ctx.user,
        "emailAddress": f"{ctx.user}@example.com",
        "avatarUrls": avatars,
        "displayName": "Sandbox User",
        "active": True,
        "deleted": False,
        "timeZone": ctx.tz,
        "locale": "en_US",
    }


def status(ctx: Ctx, st: Status) -> dict[str, Any]:
    cat_id, key, color, name = STATUS_CATEGORIES[st.category]
    return {
        "self": f"{ctx.rest}/status/{st.id}",
        "description": "",
        "iconUrl": f"{ctx.base}/images/icons/statuses/generic.png",
        "name": st.name,
        "id": st.id,
        "statusCategory": {
            "self": f"{ctx.rest}/statuscategory/{cat_id}",
            "id": cat_id,
            "key": key,
            "colorName": color,
            "name": name,
        },
    }


def issuetype(ctx: Ctx, name: str) -> dict[str, Any]:
    type_id = ISSUE_TYPES.get(name, "10001")
    return {
        "self": f"{ctx.rest}/issuetype/{type_id}",
        "id": type_id,
        "description": "",
        "iconUrl": f"{ctx.base}/images/icons/issuetypes/{name.lower()}.svg",
        "name": name,
        "subtask": False,
        "hierarchyLevel": 1 if name == "Epic" else 0,
    }


def project(ctx: Ctx, proj: Project, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
        "self": f"{ctx.rest}/project/{proj.id}",
        "id": str(proj.id),
        "key": proj.key,
        "name": proj.name,
        "avatarUrls": {"48x48": f"{ctx.base}/secure/projectavatar?pid={proj.id}"},
        "projectTypeKey": "software",
        "simplified": False,
    }
    if full:
        out.update(
            {
                "description": "",
                "lead": user(ctx),
                "components": [],
                "issueTypes": [issuetype(ctx, n) for n in ISSUE_TYPES],
                "assigneeType": "UNASSIGNED",
                "roles": {},
                "archived": False,
            }
        )
    return out


def version(ctx: Ctx, v: Version) -> dict[str, Any]:
    out: dict[str, Any] = {
        "self": f"{ctx.rest}/version/{v.id}",
        "id": str(v.id),
        "description": v.description,
        "name": v.name,
        "archived": v.archived,
        "released": v.released,
    }
    if v.start_date:
        out["startDate"] = v.start_date
    if v.release_date:
        out["releaseDate"] = v.release_date
    out["projectId"] = v.project_id
    return out


def transition(ctx: Ctx, t: Transition, with_fields: bool = False) -> dict[str, Any]:
    """A transition; its screen's fields only with `expand=transitions.fields`."""
    out: dict[str, Any] = {
        "id": t.id,
        "name": t.name,
        "to": status(ctx, status_by_name(t.to)),
        "hasScreen": bool(t.screen),
        "isGlobal": False,
        "isInitial": False,
        "isAvailable": True,
        "isConditional": False,
        "isLooped": False,
    }
    if with_fields:
        out["fields"] = {f: field_meta(ctx.rest, f, f in t.required) for f in t.screen}
    return out


def comment(ctx: Ctx, issue: Issue, c: Comment) -> dict[str, Any]:
    author = user(ctx)
    return {
        "self": f"{ctx.rest}/issue/{issue.id}/comment/{c.id}",
        "id": str(c.id),
        "author": author,
        "body": rich(ctx, c.body),
        "updateAuthor": author,
        "created": ctx.time(c.created),
        "updated": ctx.time(c.updated),
        "jsdPublic": True,
    }


def remote_link(ctx: Ctx, issue: Issue, link: RemoteLink) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": link.id,
        "self": f"{ctx.rest}/issue/{issue.key}/remotelink/{link.id}",
    }
    if link.global_id:
        out["globalId"] = link.global_id
    if link.application:
        out["application"] = link.application
    if link.relationship:
        out["relationship"] = link.relationship
    out["object"] = link.object
    return out


def board(ctx: Ctx, store: Store, b: Board) -> dict[str, Any]:
    proj = store.projects[b.project_id]
    return {
        "id": b.id,
        "self": f"{ctx.base}/rest/agile/1.0/board/{b.id}",
        "name": b.name,
        "type": b.type,
        "location": {
            "projectId": proj.id,
            "displayName": f"{proj.name} ({proj.key})",
            "projectName": proj.name,
            "projectKey": proj.key,
            "projectTypeKey": "software",
            "name": f"{proj.name} ({proj.key})",
            "avatarURI": f"/secure/projectavatar?size=small&pid={proj.id}",
        },
    }


def sprint(ctx: Ctx, s: Sprint) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": s.id,
        "self": f"{ctx.base}/rest/agile/1.0/sprint/{s.id}",
        "state": s.state,
        "name": s.name,
    }
    if s.start:
        out["startDate"] = agile_time(s.start)
    if s.end:
        out["endDate"] = agile_time(s.end)
    if s.complete:
        out["completeDate"] = agile_time(s.complete)
    out["originBoardId"] = s.board_id
    out["goal"] = s.goal
    return out


def sprint_field(ctx: Ctx, store: Store, issue: Issue) -> list[Any] | None:
    ids = [*issue.past_sprints, *([issue.sprint] if issue.sprint else [])]
    if not ids:
        return None
    out: list[Any] = []
    for sid in ids:
        s = store.sprints[sid]
        if ctx.cloud:
            bean = {
                "id": s.id,
                "name": s.name,
                "state": s.state,
                "boardId": s.board_id,
                "goal": s.goal,
            }
            if s.start:
                bean["startDate"] = agile_time(s.start)
            if s.end:
                bean["endDate"] = agile_time(s.end)
            out.append(bean)
        else:
            out.append(
                f"com.atlassian.greenhopper.service.sprint.Sprint@{s.id:x}[id={s.id},"
                f"rapidViewId={s.board_id},state={s.state.upper()},name={s.name},"
                f"goal={s.goal or '<null>'},sequence={s.id}]"
            )
    return out


# -- issues --------------------------------------------------------------------------------
def issue_fields(ctx: Ctx, store: Store, issue: Issue) -> dict[str, Any]:
    proj = store.projects[issue.project_id]
    priority_id = PRIORITIES.get(issue.priority, "3")
    fields: dict[str, Any] = {
        "summary": issue.summary,
        "issuetype": issuetype(ctx, issue.issuetype),
        "project": project(ctx, proj),
        "status": status(ctx, status_by_name(issue.status)),
        "description": rich(ctx, issue.description),
        "labels": list(issue.labels),
        "fixVersions": [version(ctx, store.versions[v]) for v in issue.fix_versions],
        "versions": [],
        "components": [],
        "priority": {
            "self": f"{ctx.rest}/priority/{priority_id}",
            "id": priority_id,
            "name": issue.priority,
            "iconUrl": f"{ctx.base}/images/icons/priorities/{issue.priority.lower()}.svg",
        },
        "resolution": None
        if issue.resolution is None
        else {
            "self": f"{ctx.rest}/resolution/10000",
            "id": "10000",
            "description": "",
            "name": issue.resolution,
        },
        "resolutiondate": ctx.time(issue.resolution_date) if issue.resolution_date else None,
        "created": ctx.time(issue.created),
        "updated": ctx.time(issue.updated),
        "statuscategorychangedate": ctx.time(issue.updated),
        "reporter": user(ctx),
        "creator": user(ctx),
        "assignee": None,
        SPRINT_FIELD: sprint_field(ctx, store, issue),
        "comment": {
            "comments": [comment(ctx, issue, c) for c in issue.comments],
            "maxResults": len(issue.comments),
            "total": len(issue.comments),
            "startAt": 0,
        },
    }
    fields.update(issue.extra)
    return fields


def select_fields(all_fields: dict[str, Any], wanted: list[str] | None) -> dict[str, Any]:
    """Apply Jira's `fields` parameter: `*all`, `*navigable`, names, `-name` exclusions."""
    if wanted is None:
        return all_fields
    names = [w.strip() for item in wanted for w in item.split(",") if w.strip()]
    include_all = any(n in ("*all", "*navigable") for n in names)
    chosen = (
        dict(all_fields) if include_all else {n: all_fields[n] for n in names if n in all_fields}
    )
    for n in names:
        if n.startswith("-"):
            chosen.pop(n[1:], None)
    return chosen


def issue(
    ctx: Ctx,
    store: Store,
    iss: Issue,
    fields: list[str] | None = None,
    expand: str | None = None,
    properties: list[str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "expand": ISSUE_EXPAND,
        "id": str(iss.id),
        "self": f"{ctx.rest}/issue/{iss.id}",
        "key": iss.key,
    }
    if fields != []:
        out["fields"] = select_fields(issue_fields(ctx, store, iss), fields)
    expands = {e.strip() for e in (expand or "").split(",")}
    if "changelog" in expands:
        histories = [
            {
                "id": str(h.id),
                "author": user(ctx),
                "created": ctx.time(h.created),
                "items": h.items,
            }
            for h in reversed(iss.histories)
        ]
        out["changelog"] = {
            "startAt": 0,
            "maxResults": len(histories),
            "total": len(histories),
            "histories": histories,
        }
    if expands & {"transitions", "transitions.fields"}:
        with_fields = "transitions.fields" in expands
        out["transitions"] = [transition(ctx, t, with_fields) for t in store.transitions_for(iss)]
    if "names" in expands:
        out["names"] = {k: k for k in out.get("fields", {})}
    if properties:
        names = [p.strip() for item in properties for p in item.split(",") if p.strip()]
        wanted = (
            iss.properties
            if "*all" in names
            else {k: v for k, v in iss.properties.items() if k in names}
        )
        out["properties"] = dict(wanted)
    return out
