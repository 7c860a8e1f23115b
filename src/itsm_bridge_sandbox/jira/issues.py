"""Issue routes: create, get, edit, transitions, comments, remote links, entity properties.

Shapes and status codes follow "The Jira Cloud platform REST API" (issues, issue comments,
issue remote links, issue properties groups) and the Jira Server 9 REST reference:
create answers 201 `{id, key, self}`; edit and transition answer 204; an unknown transition
is 400 "Transition id 'N' is not valid for this issue."; POST remotelink with the `globalId`
of an existing link updates it (200) instead of creating one (201); PUT of a property answers
201 when created and 200 when updated. A create may carry `properties` (`[{key, value}]`,
"IssueUpdateDetails"), set with the issue. A transition may set only the fields of its
screen and must set the required ones (see workflows.py).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from itsm_bridge_sandbox.jira import shapes
from itsm_bridge_sandbox.jira.common import body, list_arg, no_content, ok, route
from itsm_bridge_sandbox.jira.shapes import SPRINT_FIELD, Ctx
from itsm_bridge_sandbox.jira.store import (
    ISSUE_TYPES,
    PRIORITIES,
    Issue,
    JiraError,
    Project,
    Store,
)
from itsm_bridge_sandbox.webapp import Request, Response

if TYPE_CHECKING:
    from itsm_bridge_sandbox.jira.server import JiraSandbox

SETTABLE = {
    "summary",
    "description",
    "labels",
    "fixVersions",
    "priority",
    SPRINT_FIELD,
    "assignee",
    "duedate",
    "environment",
    "components",
    "issuetype",
    "project",
    "reporter",
}


def _named(value: Any, table: dict[str, str], field: str) -> str:
    if isinstance(value, dict):
        for name, ident in table.items():
            if value.get("id") == ident or str(value.get("name", "")).lower() == name.lower():
                return name
    raise JiraError(400, [], {field: f"valid {field} is required"})


def _version_ids(store: Store, project: Project, values: Any) -> list[int]:
    if not isinstance(values, list):
        values = [values]
    out = []
    for value in values:
        if not isinstance(value, dict):
            raise JiraError(400, [], {"fixVersions": "Operation value must be an object."})
        if "id" in value:
            version = store.versions.get(int(value["id"])) if str(value["id"]).isdigit() else None
            if version is None or version.project_id != project.id:
                message = f"Version id '{value['id']}' is not valid"
                raise JiraError(400, [], {"fixVersions": message})
        else:
            version = store.version_by_name(project, str(value.get("name")))
            if version is None:
                message = f"Version name '{value.get('name')}' is not valid"
                raise JiraError(400, [], {"fixVersions": message})
        out.append(version.id)
    return out


def _sprint_id(store: Store, value: Any) -> int | None:
    if value is None:
        return None
    sprint_id = value.get("id") if isinstance(value, dict) else value
    sprint = store.sprint(str(sprint_id))
    if sprint.state == "closed":
        message = "Issue can be assigned only active or future sprints."
        raise JiraError(400, [], {SPRINT_FIELD: message})
    return sprint.id


def apply_fields(store: Store, issue: Issue, fields: dict[str, Any]) -> list[dict[str, Any]]:
    """Set `fields` on an existing issue; the changelog items."""
    project = store.projects[issue.project_id]
    items: list[dict[str, Any]] = []
    for name, value in fields.items():
        if name not in SETTABLE:
            raise JiraError(
                400,
                [],
                {
                    name: f"Field '{name}' cannot be set. It is not on the "
                    "appropriate screen, or unknown."
                },
            )
        if name == "summary":
            if not value or "\n" in str(value):
                raise JiraError(400, [], {"summary": "You must specify a summary of the issue."})
            if value != issue.summary:
                items.append(store.item("summary", issue.summary, value))
                issue.summary = str(value)
        elif name == "description":
            items.append(
                store.item(
                    "description", shapes.adf_to_text(issue.description), shapes.adf_to_text(value)
                )
            )
            issue.description = value
        elif name == "labels":
            items += store.set_labels(issue, [str(v) for v in value or []])
        elif name == "fixVersions":
            items += store.set_fix_versions(issue, _version_ids(store, project, value or []))
        elif name == "priority":
            new = _named(value, PRIORITIES, "priority")
            if new != issue.priority:
                items.append(store.item("priority", issue.priority, new))
                issue.priority = new
        elif name == SPRINT_FIELD:
            items += store.move_to_sprint(issue, _sprint_id(store, value))
        elif name == "issuetype":
            issue.issuetype = _named(value, ISSUE_TYPES, "issuetype")
        elif name not in ("project", "reporter"):
            issue.extra[name] = value
    return items


def apply_update(store: Store, issue: Issue, update: dict[str, Any]) -> list[dict[str, Any]]:
    """Apply the `update` operations (`add`, `remove`, `set`, `edit`)."""
    items: list[dict[str, Any]] = []
    project = store.projects[issue.project_id]
    for name, operations in update.items():
        if not isinstance(operations, list):
            raise JiraError(400, [], {name: "Operations must be a list."})
        for operation in operations:
            if not isinstance(operation, dict) or len(operation) != 1:
                raise JiraError(400, [], {name: "Each operation must have exactly one verb."})
            verb, value = next(iter(operation.items()))
            if name == "comment" and verb == "add":
                store.add_comment(issue, (value or {}).get("body"))
            elif name == "labels" and verb in ("add", "remove", "set"):
                labels = list(issue.labels)
                if verb == "add":
                    labels.append(str(value))
                elif verb == "remove":
                    labels = [label for label in labels if label != value]
                else:
                    labels = [str(v) for v in value or []]
                items += store.set_labels(issue, labels)
            elif name == "fixVersions" and verb in ("add", "remove", "set"):
                current = list(issue.fix_versions)
                ids = _version_ids(store, project, value or [])
                if verb == "add":
                    current += [i for i in ids if i not in current]
                elif verb == "remove":
                    current = [i for i in current if i not in ids]
                else:
                    current = ids
                items += store.set_fix_versions(issue, current)
            elif verb == "set":
                items += apply_fields(store, issue, {name: value})
            else:
                message = f"Field '{name}' does not support operation '{verb}'."
                raise JiraError(400, [], {name: message})
    return items


def _properties(values: Any) -> dict[str, Any]:
    """The `properties` of a create request: `[{"key", "value"}]` (IssueUpdateDetails)."""
    if values is None:
        return {}
    if not isinstance(values, list) or not all(
        isinstance(v, dict) and v.get("key") and "value" in v for v in values
    ):
        raise JiraError(400, ["Entity properties must be a list of objects with key and value."])
    for value in values:
        if len(str(value["key"])) > 255:
            raise JiraError(400, ["The property key cannot be longer than 255 characters."])
        if len(json.dumps(value["value"])) > 32768:
            raise JiraError(400, ["The property value cannot be longer than 32768 bytes."])
    return {str(v["key"]): v["value"] for v in values}


def create(store: Store, data: dict[str, Any]) -> Issue:
    fields = data.get("fields")
    if not isinstance(fields, dict):
        raise JiraError(
            400,
            [],
            {
                "project": "project is required",
                "summary": "You must specify a summary of the issue.",
                "issuetype": "issue type is required",
            },
        )
    errors: dict[str, str] = {}
    proj_ref = fields.get("project") or {}
    proj = store.project_or_none(str(proj_ref.get("key") or proj_ref.get("id") or ""))
    if proj is None:
        errors["project"] = "valid project is required" if proj_ref else "project is required"
    if not fields.get("summary"):
        errors["summary"] = "You must specify a summary of the issue."
    if not fields.get("issuetype"):
        errors["issuetype"] = "issue type is required"
    if errors:
        raise JiraError(400, [], errors)
    assert proj is not None
    issuetype = _named(fields["issuetype"], ISSUE_TYPES, "issuetype")
    rest = {k: v for k, v in fields.items() if k not in ("project", "summary", "issuetype")}
    unknown = [k for k in rest if k not in SETTABLE]
    if unknown:
        raise JiraError(
            400,
            [],
            {
                k: f"Field '{k}' cannot be set. It is not on the appropriate screen, or unknown."
                for k in unknown
            },
        )
    listener, store.on_change = store.on_change, None  # one "created" event, after the fields
    try:
        issue = store.create_issue(proj, str(fields["summary"]), issuetype=issuetype)
        try:
            apply_fields(store, issue, rest)
            issue.properties.update(_properties(data.get("properties")))
        except JiraError:
            del store.issues[issue.id]
            proj.next_number -= 1
            raise
        apply_update(store, issue, data.get("update") or {})
    finally:
        store.on_change = listener
    store._emit("jira:issue_created", issue=issue)
    return issue


def register(sb: JiraSandbox) -> None:
    store = sb.store

    @route(sb, "POST", "issue")
    def create_issue(req: Request, ctx: Ctx) -> Response:
        issue = create(store, body(req))
        return ok(
            {"id": str(issue.id), "key": issue.key, "self": f"{ctx.rest}/issue/{issue.id}"}, 201
        )

    @route(sb, "GET", "issue/{key}")
    def get_issue(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        return ok(
            shapes.issue(
                ctx,
                store,
                issue,
                list_arg(req, "fields"),
                req.arg("expand"),
                list_arg(req, "properties"),
            )
        )

    @route(sb, "PUT", "issue/{key}")
    def edit_issue(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        data = body(req)
        items = apply_fields(store, issue, data.get("fields") or {})
        items += apply_update(store, issue, data.get("update") or {})
        store.record(issue, items)
        return no_content()

    @route(sb, "DELETE", "issue/{key}")
    def delete_issue(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        del store.issues[issue.id]
        return no_content()

    @route(sb, "GET", "issue/{key}/transitions")
    def get_transitions(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        wanted = req.arg("transitionId")
        found = [t for t in store.transitions_for(issue) if wanted in (None, t.id)]
        with_fields = "transitions.fields" in (req.arg("expand") or "").split(",")
        return ok(
            {
                "expand": "transitions",
                "transitions": [shapes.transition(ctx, t, with_fields) for t in found],
            }
        )

    @route(sb, "POST", "issue/{key}/transitions")
    def do_transition(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        data = body(req)
        ident = (data.get("transition") or {}).get("id")
        if ident is None:
            raise JiraError(400, ["Missing 'transition' identifier"])
        items = store.transition(issue, str(ident), data.get("fields") or {})
        items += apply_update(store, issue, data.get("update") or {})
        store.record(issue, items, "issue_generic")
        return no_content()

    @route(sb, "GET", "issue/{key}/comment")
    def list_comments(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        comments = [shapes.comment(ctx, issue, c) for c in issue.comments]
        if req.arg("orderBy") == "-created":
            comments.reverse()
        start = int(req.arg("startAt") or 0)
        limit = int(req.arg("maxResults") or 5000)
        return ok(
            {
                "startAt": start,
                "maxResults": limit,
                "total": len(comments),
                "comments": comments[start : start + limit],
            }
        )

    @route(sb, "POST", "issue/{key}/comment")
    def add_comment(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        text = body(req).get("body")
        if not shapes.adf_to_text(text).strip():
            raise JiraError(400, [], {"comment": "Comment body can not be empty!"})
        return ok(shapes.comment(ctx, issue, store.add_comment(issue, text)), 201)

    @route(sb, "GET", "issue/{key}/comment/{cid}")
    def get_comment(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        for c in issue.comments:
            if str(c.id) == req.params["cid"]:
                return ok(shapes.comment(ctx, issue, c))
        raise JiraError(404, [f"Can not find a comment for the id: {req.params['cid']}."])

    @route(sb, "GET", "issue/{key}/remotelink")
    def list_links(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        global_id = req.arg("globalId")
        if global_id is not None:
            for link in issue.remote_links:
                if link.global_id == global_id:
                    return ok(shapes.remote_link(ctx, issue, link))
            raise JiraError(404, ["No remote link with the given global id was found"])
        return ok([shapes.remote_link(ctx, issue, link) for link in issue.remote_links])

    @route(sb, "POST", "issue/{key}/remotelink")
    def upsert_link(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        link, created = store.upsert_remote_link(issue, body(req))
        return ok(
            {"id": link.id, "self": f"{ctx.rest}/issue/{issue.key}/remotelink/{link.id}"},
            201 if created else 200,
        )

    @route(sb, "GET", "issue/{key}/remotelink/{lid}")
    def get_link(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        for link in issue.remote_links:
            if str(link.id) == req.params["lid"]:
                return ok(shapes.remote_link(ctx, issue, link))
        raise JiraError(404, ["No remote link with the given id was found"])

    @route(sb, "DELETE", "issue/{key}/remotelink/{lid}")
    def delete_link(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        before = len(issue.remote_links)
        issue.remote_links = [lk for lk in issue.remote_links if str(lk.id) != req.params["lid"]]
        if len(issue.remote_links) == before:
            raise JiraError(404, ["No remote link with the given id was found"])
        return no_content()

    @route(sb, "GET", "issue/{key}/properties")
    def list_properties(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        return ok(
            {
                "keys": [
                    {"self": f"{ctx.rest}/issue/{issue.id}/properties/{k}", "key": k}
                    for k in issue.properties
                ]
            }
        )

    @route(sb, "GET", "issue/{key}/properties/{prop}")
    def get_property(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        prop = req.params["prop"]
        if prop not in issue.properties:
            raise JiraError(404, [f"The property with key '{prop}' does not exist."])
        return ok({"key": prop, "value": issue.properties[prop]})

    @route(sb, "PUT", "issue/{key}/properties/{prop}")
    def put_property(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        prop = req.params["prop"]
        if len(prop) > 255:
            raise JiraError(400, ["The property key cannot be longer than 255 characters."])
        try:
            value = json.loads(req.body)
        except (ValueError, UnicodeDecodeError):
            raise JiraError(400, ["The property value must be a valid JSON."]) from None
        if len(req.body) > 32768:
            raise JiraError(400, ["The property value cannot be longer than 32768 bytes."])
        created = prop not in issue.properties
        issue.properties[prop] = value
        return ok(None, 201 if created else 200)

    @route(sb, "DELETE", "issue/{key}/properties/{prop}")
    def delete_property(req: Request, ctx: Ctx) -> Response:
        issue = store.issue(req.params["key"])
        if issue.properties.pop(req.params["prop"], None) is None:
            raise JiraError(404, [f"The property with key '{req.params['prop']}' does not exist."])
        return no_content()
