"""Jira Software (Agile 1.0) routes: boards, sprints, sprint issues and the backlog.

Source: "Jira Software Cloud REST API" (developer.atlassian.com/cloud/jira/software/rest/),
groups Board, Sprint and Backlog. Lists of boards and sprints page with
`{maxResults, startAt, total, isLast, values}`; lists of issues with
`{expand, startAt, maxResults, total, issues}`. "Move issues to backlog" and "Move issues to
sprint" take `{"issues": [...]}`, answer 204, and accept "at most 50 issues" per call (more is
a 400). Issues can only be moved to an open (active or future) sprint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from itsm_bridge_sandbox.jira import jql, shapes
from itsm_bridge_sandbox.jira.common import body, int_arg, list_arg, no_content, ok, page, route
from itsm_bridge_sandbox.jira.shapes import Ctx
from itsm_bridge_sandbox.jira.store import Issue, JiraError, status_by_name
from itsm_bridge_sandbox.webapp import Request, Response

if TYPE_CHECKING:
    from itsm_bridge_sandbox.jira.server import JiraSandbox

AGILE = "/rest/agile/1.0"
MAX_MOVE = 50


def register(sb: JiraSandbox) -> None:
    store = sb.store

    def agile_route(method: str, pattern: str) -> Any:
        return route(sb, method, AGILE + pattern, rest=False)

    def issues_page(req: Request, ctx: Ctx, issues: list[Issue]) -> Response:
        query = req.arg("jql")
        if query:
            parsed, hits = jql.search(store, query)
            allowed = {i.id for i in hits}
            order = {i.id: n for n, i in enumerate(hits)}
            issues = [i for i in issues if i.id in allowed]
            if parsed.order:
                issues.sort(key=lambda i: order[i.id])
        start = int_arg(req, "startAt", 0)
        limit = min(int_arg(req, "maxResults", 50), sb.search_max_results)
        wanted = list_arg(req, "fields")
        rendered = []
        for issue in issues[start : start + limit]:
            data = shapes.issue(ctx, store, issue, wanted, req.arg("expand"))
            data["self"] = f"{ctx.base}{AGILE}/issue/{issue.id}"
            if "fields" in data and wanted is None:
                current = store.sprints.get(issue.sprint) if issue.sprint else None
                data["fields"]["sprint"] = shapes.sprint(ctx, current) if current else None
                data["fields"]["closedSprints"] = [
                    shapes.sprint(ctx, store.sprints[s]) for s in issue.past_sprints
                ]
                data["fields"]["flagged"] = False
            rendered.append(data)
        return ok(
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": limit,
                "total": len(issues),
                "issues": rendered,
            }
        )

    def move_list(data: dict[str, Any]) -> list[Issue]:
        keys = data.get("issues")
        if not isinstance(keys, list) or not keys:
            raise JiraError(400, [], {"issues": "Issues must be specified."})
        if len(keys) > MAX_MOVE:
            raise JiraError(
                400,
                [
                    f"The number of issues to move ({len(keys)}) exceeds the "
                    f"maximum of {MAX_MOVE} issues per request."
                ],
            )
        return [store.issue(k) for k in keys]

    @agile_route("GET", "/board")
    def boards(req: Request, ctx: Ctx) -> Response:
        ref = req.arg("projectKeyOrId")
        found = list(store.boards.values())
        if ref:
            proj = store.project(ref)
            found = [b for b in found if b.project_id == proj.id]
        if req.arg("type"):
            found = [b for b in found if b.type == req.arg("type")]
        if req.arg("name"):
            found = [b for b in found if str(req.arg("name")).lower() in b.name.lower()]
        values = [shapes.board(ctx, store, b) for b in found]
        return ok(page(values, int_arg(req, "startAt", 0), int_arg(req, "maxResults", 50)))

    @agile_route("GET", "/board/{bid}")
    def get_board(req: Request, ctx: Ctx) -> Response:
        return ok(shapes.board(ctx, store, store.board(req.params["bid"])))

    @agile_route("GET", "/board/{bid}/sprint")
    def board_sprints(req: Request, ctx: Ctx) -> Response:
        board = store.board(req.params["bid"])
        states = {s.strip().lower() for s in (req.arg("state") or "").split(",") if s.strip()}
        bad = states - {"active", "future", "closed"}
        if bad:
            raise JiraError(400, [f"The state '{bad.pop()}' is not a valid sprint state."])
        found = [
            s
            for s in store.sprints.values()
            if s.board_id == board.id and (not states or s.state in states)
        ]
        values = [shapes.sprint(ctx, s) for s in found]
        return ok(page(values, int_arg(req, "startAt", 0), int_arg(req, "maxResults", 50)))

    @agile_route("GET", "/board/{bid}/backlog")
    def board_backlog(req: Request, ctx: Ctx) -> Response:
        board = store.board(req.params["bid"])
        found = [
            i
            for i in store.issues.values()
            if i.project_id == board.project_id
            and i.sprint is None
            and status_by_name(i.status).category != "done"
        ]
        return issues_page(req, ctx, found)

    @agile_route("GET", "/board/{bid}/issue")
    def board_issues(req: Request, ctx: Ctx) -> Response:
        board = store.board(req.params["bid"])
        return issues_page(
            req, ctx, [i for i in store.issues.values() if i.project_id == board.project_id]
        )

    @agile_route("POST", "/sprint")
    def create_sprint(req: Request, ctx: Ctx) -> Response:
        data = body(req)
        if not data.get("name") or not data.get("originBoardId"):
            raise JiraError(400, [], {"name": "Sprint name and originBoardId are required."})
        sprint = store.add_sprint(
            store.board(data["originBoardId"]), str(data["name"]), goal=str(data.get("goal") or "")
        )
        return ok(shapes.sprint(ctx, sprint), 201)

    @agile_route("GET", "/sprint/{sid}")
    def get_sprint(req: Request, ctx: Ctx) -> Response:
        return ok(shapes.sprint(ctx, store.sprint(req.params["sid"])))

    def update_sprint(req: Request, ctx: Ctx) -> Response:
        sprint = store.sprint(req.params["sid"])
        data = body(req)
        new_state = str(data.get("state", sprint.state)).lower()
        order = ["future", "active", "closed"]
        if new_state not in order or order.index(new_state) < order.index(sprint.state):
            raise JiraError(
                400, [f"Sprint cannot be moved from state '{sprint.state}' to '{new_state}'."]
            )
        if new_state == "active" and sprint.state == "future":
            sprint.start = store.clock()
        if new_state == "closed" and sprint.state != "closed":
            sprint.complete = store.clock()
            for issue in store.issues.values():  # the sprint stays in the issue's history
                if issue.sprint == sprint.id:
                    issue.past_sprints.append(sprint.id)
                    issue.sprint = None
        sprint.state = new_state
        sprint.name = str(data.get("name", sprint.name))
        sprint.goal = str(data.get("goal", sprint.goal))
        return ok(shapes.sprint(ctx, sprint))

    agile_route("POST", "/sprint/{sid}")(update_sprint)
    agile_route("PUT", "/sprint/{sid}")(update_sprint)

    @agile_route("GET", "/sprint/{sid}/issue")
    def sprint_issues(req: Request, ctx: Ctx) -> Response:
        sprint = store.sprint(req.params["sid"])
        return issues_page(
            req,
            ctx,
            [
                i
                for i in store.issues.values()
                if i.sprint == sprint.id or sprint.id in i.past_sprints
            ],
        )

    @agile_route("POST", "/sprint/{sid}/issue")
    def move_to_sprint(req: Request, ctx: Ctx) -> Response:
        sprint = store.sprint(req.params["sid"])
        issues = move_list(body(req))
        if sprint.state == "closed":
            raise JiraError(400, [f"Cannot move issues to the closed sprint '{sprint.name}'."])
        for issue in issues:
            store.record(issue, store.move_to_sprint(issue, sprint.id))
        return no_content()

    @agile_route("POST", "/backlog/issue")
    def move_to_backlog(req: Request, ctx: Ctx) -> Response:
        for issue in move_list(body(req)):
            store.record(issue, store.move_to_sprint(issue, None))
        return no_content()

    @agile_route("POST", "/backlog/{bid}/issue")
    def move_to_board_backlog(req: Request, ctx: Ctx) -> Response:
        board = store.board(req.params["bid"])
        for issue in move_list(body(req)):
            if issue.project_id != board.project_id:
                raise JiraError(400, [f"Issue {issue.key} is not on board {board.id}."])
            store.record(issue, store.move_to_sprint(issue, None))
        return no_content()
