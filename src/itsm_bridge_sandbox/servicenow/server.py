"""`ServiceNowSandbox`: the Table API and the Change Management conflict API, in memory.

Shapes and their sources (docs.servicenow.com, REST API reference, unless noted):

* "Table API": `/api/now/table/{tableName}` and `/api/now/v2/table/...`; bodies
  `{"result": ...}`; 201 + `Location` on POST, 204 on DELETE; list headers `X-Total-Count` and
  `Link: <url>;rel="first",<url>;rel="prev",<url>;rel="next",<url>;rel="last"`
  (omitted with `sysparm_suppress_pagination_header=true`); default `sysparm_limit` 10000.
* errors `{"error": {"message": ..., "detail": ...}, "status": "failure"}`: 404 "No Record
  found" / "Record doesn't exist or ACL restricts the record retrieval"; 400 "Invalid table
  <name>" with `detail: null`; 400 "Exception while reading request" / "The payload is not valid
  JSON." on a bad body; 401 "User Not Authenticated" / "Required to provide Auth information".
* "Inbound REST API rate limiting": 429 with `Retry-After`, `X-RateLimit-Limit`,
  `X-RateLimit-Reset` and an error JSON body (the body text itself is not published; ours says
  "Rate limit exceeded").
* "Change Management API" (ServiceNowDocs, markdown/api-reference/rest-apis/
  change-management-api.md, releases xanadu and australia): `POST /api/sn_chg_rest/change/
  {sys_id}/conflict` starts a check and answers `{"result": "<sys_id of the check>"}`;
  `GET .../conflict` answers `{"result": {"status": "Conflict" | "Not Run", "last_run",
  "record_count", "job_status", "conflicts": [...]}}` of the running or the last completed
  check (running on the first GET after a POST, see `conflict.py`), each conflict field a
  `{"display_value", "value"}` object; `DELETE .../conflict` cancels a running check (200, no
  body); `GET .../nextstates` answers the legal next states (`change.py`). 404 for an
  unknown change. With `change_api=False` the sandbox is an instance without this API: its
  URLs answer 400 "Requested URI does not represent any resource".
* "Batch API" (ServiceNowDocs, markdown/api-reference/rest-apis/batch-api.md): `POST
  /api/now/v1/batch`, see `batch.py`. With `batch_api=False` the sandbox is an instance
  without it: the batch URL answers 400 "Requested URI does not represent any resource", as
  the unversioned `/api/now/batch` and `/api/now/v2/batch` always do.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from itsm_bridge_sandbox.base import SandboxServer
from itsm_bridge_sandbox.servicenow import batch, change, conflict, schema
from itsm_bridge_sandbox.servicenow import seed as seeding
from itsm_bridge_sandbox.servicenow.people import SandboxPeople
from itsm_bridge_sandbox.servicenow.query import parse
from itsm_bridge_sandbox.servicenow.records import TABLE_KEY, Store
from itsm_bridge_sandbox.webapp import Handler, HTTPError, Request, Response

DEFAULT_LIMIT = 10000


def sn_error(status: int, message: str, detail: str | None) -> HTTPError:
    return HTTPError(status, {"error": {"message": message, "detail": detail}, "status": "failure"})


def not_found() -> HTTPError:
    return sn_error(
        404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
    )


@dataclass
class Fault:
    """A scripted failure for the next `count` requests matching verb and path prefix."""

    method: str
    path_prefix: str
    status: int
    count: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    after_write: bool = False


class ServiceNowSandbox(SandboxPeople, SandboxServer):
    """A local ServiceNow instance: Table API, default change model, conflict API.

    `seed` is the parsed `servicenow:` section of the sandbox seed (see `seed.py`); `now`
    replaces the clock (tests). `batch_api=False` turns the Batch API off; `batch_timeout`
    and `batch_item_limit` are its processing limits (items past them come back unserviced).
    `reset()` restores all three. `change_api=False` is an instance without the Change
    Management API (`/api/sn_chg_rest`). Helpers for tests and the demo: `approve_change`
    and `reject_change` (the approvers), `close_task`, `open_incident`, `record`, `insert`,
    `journal`, `fail_next`.
    """

    system = "servicenow"

    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        user: str = "sandbox",
        password: str = "sandbox",
        now: Callable[[], datetime] | None = None,
        batch_api: bool = True,
        change_api: bool = True,
    ) -> None:
        section = seeding.section(seed)
        user = section.get("user", user) if user == "sandbox" else user
        password = section.get("password", password) if password == "sandbox" else password
        self._seed = section
        self._now = now or (lambda: datetime.now(UTC))
        self.store = Store(self._now)
        self.faults: list[Fault] = []
        self.conflicts = conflict.ConflictChecks()
        self._change_api_default = change_api
        self.change_api = change_api
        self._batch_default = batch_api
        self.batch_api = batch_api
        self.batch_timeout = batch.TIMEOUT_SECONDS
        self.batch_item_limit: int | None = None
        super().__init__(str(user), str(password))
        self.reset()

    def reset(self) -> None:
        """Back to the seeded state: records, numbers, faults, conflict checks, Batch and
        Change Management API settings and the request log."""
        with self.lock:
            self.batch_api = self._batch_default
            self.batch_timeout = batch.TIMEOUT_SECONDS
            self.batch_item_limit = None
            self.store = Store(self._now)
            self.faults.clear()
            self.conflicts.clear()
            self.change_api = self._change_api_default
            self.requests.clear()
            seeding.load_base(self.store)
            if self._seed:
                seeding.load(self.store, self._seed)

    # -- HTTP ----------------------------------------------------------------------------
    def unauthorized(self, request: Request) -> Response:
        return Response(
            401,
            {
                "error": {
                    "message": "User Not Authenticated",
                    "detail": "Required to provide Auth information",
                },
                "status": "failure",
            },
            {"WWW-Authenticate": 'BASIC realm="Service-now"'},
        )

    def setup_routes(self) -> None:
        for prefix in ("/api/now/table", "/api/now/v2/table"):
            self.app.add_route("GET", prefix + "/{table}", self._guard(self._list))
            self.app.add_route("POST", prefix + "/{table}", self._guard(self._create))
            item = prefix + "/{table}/{sys_id}"
            self.app.add_route("GET", item, self._guard(self._get))
            self.app.add_route("PATCH|PUT", item, self._guard(self._update))
            self.app.add_route("DELETE", item, self._guard(self._delete))
        conflict = "/api/sn_chg_rest/change/{sys_id}/conflict"
        self.app.add_route("POST", conflict, self._guard(self._conflict_start))
        self.app.add_route("GET", conflict, self._guard(self._conflict_get))
        self.app.add_route("DELETE", conflict, self._guard(self._conflict_cancel))
        nextstates = "/api/sn_chg_rest/change/{sys_id}/nextstates"
        self.app.add_route("GET", nextstates, self._guard(self._next_states))
        for path in ("/api/now/v1/batch", "/api/now/batch", "/api/now/v2/batch"):
            self.app.add_route("POST", path, self._guard(self._batch))

    def _guard(self, handler: Handler) -> Handler:
        """Serialise a handler under the lock and apply any scripted fault."""

        def run(request: Request) -> Response:
            with self.lock:
                fault = self._take_fault(request)
                if fault is not None and not fault.after_write:
                    return _fault_response(fault)
                response = handler(request)
                if fault is not None:
                    return _fault_response(fault)
                return response

        return run

    def _list(self, request: Request) -> Response:
        table = _table(request)
        query = parse(request.arg("sysparm_query"))
        rows = self.store.query(table, query)
        limit = _int(request.arg("sysparm_limit"), DEFAULT_LIMIT, minimum=1)
        offset = _int(request.arg("sysparm_offset"), 0, minimum=0)
        # sysparm_limit is applied before ACL evaluation: hidden rows leave the page short
        page = [row for row in rows[offset : offset + limit] if self.store.readable(row)]
        base = _base_url(request)
        result = [self._render(row, request, base) for row in page]
        headers = {"X-Total-Count": str(len(rows))}
        if (request.arg("sysparm_suppress_pagination_header") or "").lower() != "true":
            headers["Link"] = _link_header(request, base, len(rows), limit, offset)
        return Response(200, {"result": result}, headers)

    def _get(self, request: Request) -> Response:
        table = _table(request)
        row = self.store.get(table, request.params["sys_id"])
        if row is None:
            raise not_found()
        return Response(200, {"result": self._render(row, request, _base_url(request))})

    def _create(self, request: Request) -> Response:
        table = _table(request)
        payload = _payload(request)
        sys_id = uuid.uuid4().hex
        values, journal = self.store.prepare(table, payload)
        self._rules(table, None, values, sys_id)
        row = self.store.insert(table, values, journal, user=self.user, sys_id=sys_id)
        base = _base_url(request)
        location = f"{base}/api/now/table/{table}/{sys_id}"
        return Response(201, {"result": self._render(row, request, base)}, {"Location": location})

    def _update(self, request: Request) -> Response:
        table = _table(request)
        row = self.store.get(table, request.params["sys_id"])
        if row is None:
            raise not_found()
        payload = _payload(request)
        values, journal = self.store.prepare(row[TABLE_KEY], payload, row)
        self._rules(row[TABLE_KEY], row, values, row["sys_id"])
        self.store.update(row, values, journal, user=self.user)
        return Response(200, {"result": self._render(row, request, _base_url(request))})

    def _delete(self, request: Request) -> Response:
        table = _table(request)
        row = self.store.get(table, request.params["sys_id"])
        if row is None:
            raise not_found()
        self.store.delete(row)
        return Response(204, None)

    def _change_row(self, request: Request) -> dict[str, str]:
        """The change of a Change Management API URL (400 without the API, 404 unknown)."""
        if not self.change_api:
            raise batch.no_resource()
        row = self.store.get("change_request", request.params["sys_id"])
        if row is None:
            raise not_found()
        return row

    def _conflict_start(self, request: Request) -> Response:
        """Documented answer: 200 `{"result": "<sys_id of the conflict checking process>"}`;
        the check runs in the background (`conflict.ConflictChecks`)."""
        row = self._change_row(request)
        return Response(200, {"result": self.conflicts.start(self.store, row)})

    def _conflict_get(self, request: Request) -> Response:
        row = self._change_row(request)
        return Response(200, self.conflicts.result(self.store, row, _base_url(request)))

    def _conflict_cancel(self, request: Request) -> Response:
        """Documented answer: 200 with no body; a running check is cancelled."""
        self.conflicts.cancel(self.store, self._change_row(request))
        return Response(200, None)

    def _next_states(self, request: Request) -> Response:
        return Response(200, change.next_states(self._change_row(request)))

    def _batch(self, request: Request) -> Response:
        """The Batch API; only `v1` exists (and only while `batch_api` is on)."""
        if request.path != "/api/now/v1/batch" or not self.batch_api:
            raise batch.no_resource()
        return batch.serve(
            request,
            self.app.dispatch,
            timeout=self.batch_timeout,
            item_limit=self.batch_item_limit,
        )

    def _render(self, row: dict[str, str], request: Request, base: str) -> dict[str, Any]:
        fields = [
            f.strip()
            for value in request.query.get("sysparm_fields", [])
            for f in value.split(",")
            if f.strip()
        ]
        display = (request.arg("sysparm_display_value") or "false").lower()
        links = (request.arg("sysparm_exclude_reference_link") or "false").lower() != "true"
        return self.store.render(row, base, fields=fields or None, display=display, links=links)

    def _rules(
        self, table: str, row: dict[str, str] | None, values: dict[str, str], sys_id: str
    ) -> None:
        """Business rules: the change model, and closure bookkeeping on tasks."""
        if table == "change_request":
            change.apply_change_rules(row, values, sys_id)
        if table == "change_task" and values.get("state") in ("3", "4"):
            values["active"] = "false"
        if values.get("active") == "false" and "task" in schema.lineage(table):
            values.setdefault("closed_at", self.store.timestamp())
            values.setdefault("closed_by", self.user)

    # -- faults --------------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        path_prefix: str,
        status: int,
        count: int = 1,
        headers: dict[str, str] | None = None,
        *,
        body: Any = None,
        fail_after_write: bool = False,
    ) -> None:
        """Answer the next `count` matching requests with `status`.

        429 defaults to `Retry-After: 1` and the rate-limit headers. With
        `fail_after_write=True` the request is performed first and only its answer is
        replaced (a lost response).
        """
        with self.lock:
            self.faults.append(
                Fault(
                    method.upper(),
                    path_prefix,
                    status,
                    count,
                    dict(headers or {}),
                    body,
                    fail_after_write,
                )
            )

    def _take_fault(self, request: Request) -> Fault | None:
        for fault in self.faults:
            if fault.method in (request.method, "*") and request.path.startswith(fault.path_prefix):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None


# -- module helpers ------------------------------------------------------------------------
def _table(request: Request) -> str:
    table = request.params["table"]
    if not schema.is_known(table):
        raise sn_error(400, f"Invalid table {table}", None)
    return table


def _payload(request: Request) -> dict[str, Any]:
    invalid = sn_error(400, "Exception while reading request", "The payload is not valid JSON.")
    try:
        body = request.json()
    except HTTPError as exc:
        raise invalid from exc
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise invalid
    return body


def _int(value: str | None, default: int, minimum: int) -> int:
    try:
        return max(int(value), minimum) if value not in (None, "") else default
    except ValueError:
        return default


def _base_url(request: Request) -> str:
    return f"http://{request.header('host') or 'localhost'}"


def _link_header(request: Request, base: str, total: int, limit: int, offset: int) -> str:
    """`Link` as the Table API formats it: `<url>;rel="first",<url>;rel="prev",...`.

    As captured from real instances (comments in public clients, e.g. a Kafka connector and a
    Java Table API client): order first, prev, next, last; comma separated without spaces;
    `sysparm_limit` before `sysparm_offset`; `prev` present even on the first page, with a
    negative offset (`sysparm_offset=-1` for limit 1). `next` is left out on the last page
    (clients such as pysnow stop there).
    """

    def url(at: int) -> str:
        params = [
            (k, v)
            for k, values in request.query.items()
            for v in values
            if k not in ("sysparm_offset", "sysparm_limit")
        ]
        params += [("sysparm_limit", str(limit)), ("sysparm_offset", str(at))]
        return f"<{base}{request.path}?{urlencode(params)}>"

    last = ((total - 1) // limit) * limit if total > 0 else 0
    links = [f'{url(0)};rel="first"']
    links.append(f'{url(offset - limit)};rel="prev"')
    if offset + limit < total:
        links.append(f'{url(offset + limit)};rel="next"')
    links.append(f'{url(last)};rel="last"')
    return ",".join(links)


def _fault_response(fault: Fault) -> Response:
    headers = dict(fault.headers)
    if fault.status == 429:
        headers.setdefault("Retry-After", "1")
        headers.setdefault("X-RateLimit-Limit", "100")
        headers.setdefault("X-RateLimit-Reset", str(int(datetime.now(UTC).timestamp()) + 1))
        body = fault.body or {
            "error": {
                "message": "Rate limit exceeded",
                "detail": "The number of requests exceeds the rate limit of this user",
            },
            "status": "failure",
        }
    else:
        body = fault.body or {
            "error": {
                "message": "Internal Server Error",
                "detail": f"Sandbox fault injection ({fault.status})",
            },
            "status": "failure",
        }
    return Response(fault.status, body, headers)
