"""Platform REST routes other than issues: server info, fields, search, projects, versions.

Search, per deployment (sources: "Search for issues using JQL (GET/POST)" and "Search for
issues using JQL enhanced search" in the Jira Cloud REST v2/v3 issue-search group; Atlassian
changelog CHANGE-2046; Jira Server 9 REST `/rest/api/2/search`):
- Server: `/search` pages by `startAt`/`maxResults` and answers `total`; `maxResults` is capped
  (`jira.search.views.default.max`, 1000 by default).
- Cloud: `/search/jql` pages by an opaque `nextPageToken` (absent on the last page, see
  JRACLOUD-92184), answers `isLast` and no `total`; returns only `id` unless `fields` is given;
  `maxResults` up to 5000 for id/key-only requests, else capped (100 here); rejects unbounded
  JQL. The old `/search` answers **410 Gone** with "The requested API has been removed. ...".
JQL errors answer 400 `{"errorMessages": [...], "warningMessages": []}`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import date
from typing import TYPE_CHECKING, Any

from itsm_bridge_sandbox.jira import jql, shapes
from itsm_bridge_sandbox.jira.common import body, int_arg, list_arg, no_content, ok, page, route
from itsm_bridge_sandbox.jira.shapes import SPRINT_FIELD, Ctx
from itsm_bridge_sandbox.jira.store import ISSUE_TYPES, PRIORITIES, STATUSES, JiraError, jira_time
from itsm_bridge_sandbox.webapp import Request, Response

if TYPE_CHECKING:
    from itsm_bridge_sandbox.jira.server import JiraSandbox

REMOVED_SEARCH = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
UNBOUNDED = (
    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
)
SYSTEM_FIELDS = [
    ("summary", "Summary", "string"),
    ("description", "Description", "string"),
    ("issuetype", "Issue Type", "issuetype"),
    ("project", "Project", "project"),
    ("status", "Status", "status"),
    ("labels", "Labels", "array"),
    ("fixVersions", "Fix Version/s", "array"),
    ("priority", "Priority", "priority"),
    ("resolution", "Resolution", "resolution"),
    ("created", "Created", "datetime"),
    ("updated", "Updated", "datetime"),
    ("resolutiondate", "Resolved", "datetime"),
    ("reporter", "Reporter", "user"),
    ("assignee", "Assignee", "user"),
    ("comment", "Comment", "comments-page"),
    ("issuekey", "Key", "string"),
]
CLAUSES = {
    "fixVersions": ["fixVersion"],
    "issuetype": ["issuetype", "type"],
    "issuekey": ["id", "issue", "issuekey", "key"],
    "resolutiondate": ["resolved", "resolutiondate"],
}


def field_list() -> list[dict[str, Any]]:
    """`GET /field` ("Get fields"): system fields plus the Sprint custom field."""
    out = [
        {
            "id": fid,
            "key": fid,
            "name": name,
            "custom": False,
            "orderable": True,
            "navigable": True,
            "searchable": True,
            "clauseNames": CLAUSES.get(fid, [fid]),
            "schema": {"type": kind, "system": fid},
        }
        for fid, name, kind in SYSTEM_FIELDS
    ]
    out.append(
        {
            "id": SPRINT_FIELD,
            "key": SPRINT_FIELD,
            "name": "Sprint",
            "custom": True,
            "orderable": True,
            "navigable": True,
            "searchable": True,
            "clauseNames": ["cf[10020]", "Sprint"],
            "schema": {
                "type": "array",
                "items": "json",
                "custom": "com.pyxis.greenhopper.jira:gh-sprint",
                "customId": 10020,
            },
        }
    )
    return out


def _token(offset: int, query: str) -> str:
    digest = hashlib.sha1(query.encode()).hexdigest()[:10]
    raw = json.dumps({"o": offset, "q": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _untoken(token: str, query: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data["q"] != hashlib.sha1(query.encode()).hexdigest()[:10]:
            raise ValueError
        return int(data["o"])
    except (ValueError, KeyError, TypeError):
        raise JiraError(400, ["The provided next page token is invalid or expired."]) from None


def _search(sb: JiraSandbox, query: str) -> list[Any]:
    try:
        return jql.search(sb.store, query)[1]
    except JiraError as err:
        raise JiraError(err.status, err.messages) from None


def _date(value: Any, field: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)[:10]).isoformat()
    except ValueError:
        message = "Please enter the date in the following format: yyyy-MM-dd"
        raise JiraError(400, [], {field: message}) from None


def register(sb: JiraSandbox) -> None:
    store = sb.store

    @route(sb, "GET", "serverInfo")
    def server_info(req: Request, ctx: Ctx) -> Response:
        now = jira_time(store.clock())
        if sb.cloud:
            return ok(
                {
                    "baseUrl": ctx.base,
                    "version": "1001.0.0-SNAPSHOT",
                    "versionNumbers": [1001, 0, 0],
                    "deploymentType": "Cloud",
                    "buildNumber": 100282,
                    "buildDate": "2026-11-01T00:00:00.000+0000",
                    "serverTime": now,
                    "scmInfo": "0" * 40,
                    "serverTitle": "Jira",
                    "defaultLocale": {"locale": "en_US"},
                    "serverTimeZone": "Etc/UTC",
                }
            )
        return ok(
            {
                "baseUrl": ctx.base,
                "version": "9.12.15",
                "versionNumbers": [9, 12, 15],
                "deploymentType": "Server",
                "buildNumber": 9120015,
                "buildDate": "2024-10-01T00:00:00.000+0000",
                "databaseBuildNumber": 9120015,
                "serverTime": now,
                "scmInfo": "0" * 40,
                "serverTitle": "Jira Sandbox",
            }
        )

    @route(sb, "GET", "myself")
    def myself(req: Request, ctx: Ctx) -> Response:
        me = shapes.user(ctx)
        me["groups"] = {"size": 1, "items": []}
        me["applicationRoles"] = {"size": 1, "items": []}
        return ok(me)

    @route(sb, "GET", "field")
    def fields(req: Request, ctx: Ctx) -> Response:
        return ok(field_list())

    @route(sb, "GET", "issuetype")
    def issue_types(req: Request, ctx: Ctx) -> Response:
        return ok([shapes.issuetype(ctx, name) for name in ISSUE_TYPES])

    @route(sb, "GET", "status")
    def statuses(req: Request, ctx: Ctx) -> Response:
        return ok([shapes.status(ctx, st) for st in STATUSES])

    @route(sb, "GET", "priority")
    def priorities(req: Request, ctx: Ctx) -> Response:
        return ok(
            [
                {"self": f"{ctx.rest}/priority/{pid}", "id": pid, "name": name}
                for name, pid in PRIORITIES.items()
            ]
        )

    def server_search(req: Request, ctx: Ctx) -> Response:
        if sb.cloud:
            return ok({"errorMessages": [REMOVED_SEARCH], "errors": {}}, 410)
        data = body(req) if req.method == "POST" else {}
        query = str(data.get("jql") if "jql" in data else req.arg("jql", "") or "")
        start = max(int_arg(req, "startAt", 0, data), 0)
        limit = int_arg(req, "maxResults", 50, data)
        limit = min(max(limit, 0), sb.search_max_results)
        try:
            hits = _search(sb, query)
        except JiraError as err:
            return ok({"errorMessages": err.messages, "warningMessages": []}, 400)
        wanted = list_arg(req, "fields", data)
        expand = data.get("expand") if data else req.arg("expand")
        props = list_arg(req, "properties", data)
        issues = [
            shapes.issue(ctx, store, i, wanted, expand, props) for i in hits[start : start + limit]
        ]
        return ok(
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": limit,
                "total": len(hits),
                "issues": issues,
            }
        )

    route(sb, "GET", "search")(server_search)
    route(sb, "POST", "search")(server_search)

    def cloud_search(req: Request, ctx: Ctx) -> Response:
        data = body(req) if req.method == "POST" else {}
        query = str(data.get("jql") if "jql" in data else req.arg("jql", "") or "")
        wanted = list_arg(req, "fields", data) or ["id"]
        cap = 5000 if set(wanted) <= {"id", "key"} else sb.cloud_max_results
        limit = min(max(int_arg(req, "maxResults", 50, data), 1), cap)
        token = data.get("nextPageToken") if data else req.arg("nextPageToken")
        try:
            parsed = jql.parse(query)
            if not parsed.bounded:
                raise JiraError(400, [UNBOUNDED])
            hits = _search(sb, query)
        except JiraError as err:
            return ok({"errorMessages": err.messages, "warningMessages": []}, 400)
        start = _untoken(str(token), query) if token else 0
        expand = data.get("expand") if data else req.arg("expand")
        props = list_arg(req, "properties", data)
        chunk = hits[start : start + limit]
        issues = []
        for issue in chunk:
            rendered = shapes.issue(ctx, store, issue, wanted, expand, props)
            if wanted == ["id"]:
                rendered = {"id": rendered["id"]}
            issues.append(rendered)
        out: dict[str, Any] = {"issues": issues}
        last = start + len(chunk) >= len(hits)
        if not last:
            out["nextPageToken"] = _token(start + len(chunk), query)
        out["isLast"] = last
        return ok(out)

    route(sb, "GET", "search/jql", cloud_only=True)(cloud_search)
    route(sb, "POST", "search/jql", cloud_only=True)(cloud_search)

    @route(sb, "POST", "search/approximate-count", cloud_only=True)
    def approximate_count(req: Request, ctx: Ctx) -> Response:
        query = str(body(req).get("jql") or "")
        return ok({"count": len(_search(sb, query))})

    # -- projects and versions -------------------------------------------------------------
    @route(sb, "GET", "project")
    def projects(req: Request, ctx: Ctx) -> Response:
        return ok([shapes.project(ctx, p) for p in store.projects.values()])

    @route(sb, "GET", "project/{key}")
    def get_project(req: Request, ctx: Ctx) -> Response:
        return ok(shapes.project(ctx, store.project(req.params["key"]), full=True))

    @route(sb, "GET", "project/{key}/versions")
    def project_versions(req: Request, ctx: Ctx) -> Response:
        proj = store.project(req.params["key"])
        return ok(
            [shapes.version(ctx, v) for v in store.versions.values() if v.project_id == proj.id]
        )

    @route(sb, "GET", "project/{key}/version")
    def project_versions_paged(req: Request, ctx: Ctx) -> Response:
        proj = store.project(req.params["key"])
        versions = [
            shapes.version(ctx, v) for v in store.versions.values() if v.project_id == proj.id
        ]
        out = page(versions, int_arg(req, "startAt", 0), int_arg(req, "maxResults", 50))
        out["self"] = f"{ctx.rest}/project/{proj.key}/version"
        return ok(out)

    @route(sb, "POST", "version")
    def create_version(req: Request, ctx: Ctx) -> Response:
        data = body(req)
        ref = data.get("projectId") or data.get("project")
        if not data.get("name"):
            raise JiraError(400, [], {"name": "You must specify a valid version name"})
        if not ref:
            raise JiraError(400, [], {"project": "Project must be specified to create a version."})
        proj = store.project_or_none(str(ref))
        if proj is None:
            raise JiraError(404, [f"No project could be found with key '{ref}'."])
        version = store.add_version(
            proj,
            str(data["name"]),
            description=str(data.get("description") or ""),
            released=bool(data.get("released")),
            archived=bool(data.get("archived")),
            release_date=_date(data.get("releaseDate"), "releaseDate"),
            start_date=_date(data.get("startDate"), "startDate"),
        )
        return ok(shapes.version(ctx, version), 201)

    @route(sb, "GET", "version/{vid}")
    def get_version(req: Request, ctx: Ctx) -> Response:
        return ok(shapes.version(ctx, store.version(req.params["vid"])))

    @route(sb, "PUT", "version/{vid}")
    def update_version(req: Request, ctx: Ctx) -> Response:
        version = store.version(req.params["vid"])
        data = body(req)
        for key in ("releaseDate", "startDate"):
            if key in data:
                data[key] = _date(data[key], key)
        if "name" in data:
            other = store.version_by_name(store.projects[version.project_id], str(data["name"]))
            if other is not None and other is not version:
                raise JiraError(
                    400, [], {"name": "A version with this name already exists in this project."}
                )
        store.update_version(version, data)
        return ok(shapes.version(ctx, version))

    @route(sb, "DELETE", "version/{vid}")
    def delete_version(req: Request, ctx: Ctx) -> Response:
        version = store.version(req.params["vid"])
        for issue in store.issues.values():
            issue.fix_versions = [v for v in issue.fix_versions if v != version.id]
        del store.versions[version.id]
        return no_content()

    # -- odds and ends the `jira` client touches ---------------------------------------------
    @route(sb, "GET", "/rest/applinks/latest/listApplicationlinks", rest=False)
    def applinks(req: Request, ctx: Ctx) -> Response:
        return ok({"list": []})
