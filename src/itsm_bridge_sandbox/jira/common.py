"""Helpers shared by the REST and Agile route modules: routing, errors, parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from itsm_bridge_sandbox.jira.shapes import Ctx
from itsm_bridge_sandbox.jira.store import JiraError
from itsm_bridge_sandbox.webapp import HTTPError, Request, Response

if TYPE_CHECKING:
    from itsm_bridge_sandbox.jira.server import JiraSandbox

JiraHandler = Callable[[Request, Ctx], Response]
API_VERSIONS = {"2", "3", "latest"}


def ok(body: Any = None, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, body, dict(headers or {}))


def no_content() -> Response:
    return Response(204, None)


def route(
    sb: JiraSandbox, method: str, pattern: str, rest: bool = True, cloud_only: bool = False
) -> Callable[[JiraHandler], JiraHandler]:
    """Register a handler under `pattern`; REST routes are mounted on every API version.

    `/rest/api/3` only exists on Jira Cloud (Server/Data Center offers `2` and `latest`), so
    on a Server sandbox v3 paths answer 404 as the real thing does. The handler runs under
    the sandbox lock; a `JiraError` becomes Jira's `{"errorMessages", "errors"}` body.
    """

    def register(handler: JiraHandler) -> JiraHandler:
        def wrapped(request: Request) -> Response:
            api = request.params.pop("v", "2") if rest else "2"
            if rest and (api not in API_VERSIONS or (api == "3" and not sb.cloud)):
                raise HTTPError(
                    404, {"errorMessages": ["null for uri: " + request.path], "errors": {}}
                )
            if cloud_only and not sb.cloud:
                raise HTTPError(
                    404, {"errorMessages": ["null for uri: " + request.path], "errors": {}}
                )
            ctx = sb.ctx(request, "2" if api == "latest" else api)
            try:
                with sb.lock:
                    return handler(request, ctx)
            except JiraError as err:
                return Response(err.status, err.body())

        full = f"/rest/api/{{v}}/{pattern}" if rest else pattern
        sb.app.add_route(method, full, wrapped)
        return handler

    return register


def body(request: Request) -> dict[str, Any]:
    """The JSON object body; Jira's 400 for unparseable JSON."""
    try:
        data = request.json()
    except HTTPError:
        message = "Unexpected character in the request body: not valid JSON."
        raise JiraError(400, [message]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise JiraError(400, ["Can not deserialize instance of object out of START_ARRAY token"])
    return data


def int_arg(request: Request, name: str, default: int, data: dict[str, Any] | None = None) -> int:
    raw = data.get(name) if data and name in data else request.arg(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise JiraError(400, [f"The '{name}' parameter must be a number."]) from None


def list_arg(request: Request, name: str, data: dict[str, Any] | None = None) -> list[str] | None:
    """A list parameter given repeated (`?f=a&f=b`), comma-separated, or as a JSON array."""
    if data and data.get(name) is not None:
        raw = data[name]
        items = raw if isinstance(raw, list) else [raw]
    elif name in request.query:
        items = request.query[name]
    else:
        return None
    return [p.strip() for item in items for p in str(item).split(",") if p.strip()]


def page(items: list[Any], start: int, limit: int) -> dict[str, Any]:
    """Jira's offset paging envelope (`startAt`, `maxResults`, `total`, `isLast`, `values`)."""
    chunk = items[start : start + limit]
    return {
        "maxResults": limit,
        "startAt": start,
        "total": len(items),
        "isLast": start + len(chunk) >= len(items),
        "values": chunk,
    }
