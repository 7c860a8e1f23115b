"""`JiraSandbox`: an in-memory Jira (Cloud or Server/Data Center) speaking REST v2/v3 and Agile.

Start it, point a Jira client at its URL with basic auth (`sandbox`/`sandbox` by default; a
bearer token equal to the password is accepted as a Server personal access token), and use the
helpers (`add_issue`, `set_status`, `issue`, `comments`, ...) to arrange and inspect state.
Fault injection for tests: `rate_limit()` (429 + `Retry-After`) and `fail_next()`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itsm_bridge_sandbox.base import SandboxServer
from itsm_bridge_sandbox.jira import agile, issues, rest, shapes, webhooks
from itsm_bridge_sandbox.jira import seed as seeding
from itsm_bridge_sandbox.jira.shapes import Ctx
from itsm_bridge_sandbox.jira.store import (
    STATUSES,
    Issue,
    Project,
    Store,
    status_by_name,
)
from itsm_bridge_sandbox.jira.webhooks import WebhookDispatcher
from itsm_bridge_sandbox.webapp import Request, Response

RATE_LIMITED = "Rate limit exceeded."


@dataclass
class _Fault:
    method: str | None
    prefix: str
    status: int
    remaining: int
    body: Any
    headers: dict[str, str]


class JiraSandbox(SandboxServer):
    """A local Jira. `deployment` is "Server" (default) or "Cloud"; a seed may set it too."""

    system = "jira"

    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        user: str = "sandbox",
        password: str = "sandbox",
        deployment: str | None = None,
        timezone: str | None = None,
    ) -> None:
        data = dict((seed or {}).get("jira", seed) or {})
        chosen = deployment or str(data.get("deployment") or "Server")
        if chosen.lower() not in ("cloud", "server", "datacenter", "data center"):
            raise ValueError(f"jira sandbox: deployment must be Cloud or Server, not {chosen!r}")
        self.deployment = "Cloud" if chosen.lower() == "cloud" else "Server"
        self.store = Store()
        self.webhooks = WebhookDispatcher()
        self.search_max_results = 1000  # Server: jira.search.views.default.max
        self.cloud_max_results = 100  # Cloud /search/jql when fields other than id/key
        self._faults: list[_Fault] = []
        self._fault_lock = threading.Lock()
        self._base = "http://localhost"
        super().__init__(str(data.get("user", user)), str(data.get("password", password)))
        self.app.before.insert(0, self._inject_faults)
        self.store.on_change = self._on_change
        if data:
            self.load_seed(data)
        self._timezone = seeding.check_timezone(timezone) if timezone else self.store.timezone
        self.store.timezone = self._timezone

    @property
    def cloud(self) -> bool:
        return self.deployment == "Cloud"

    # -- SandboxServer hooks -----------------------------------------------------------------
    def setup_routes(self) -> None:
        rest.register(self)
        issues.register(self)
        agile.register(self)
        webhooks.register_routes(self)

    def unauthorized(self, request: Request) -> Response:
        """Cloud answers a plain-text 401; Server the REST error JSON (both with a challenge)."""
        headers = {
            "WWW-Authenticate": 'Basic realm="protected-area"',
            "X-Seraph-LoginReason": "AUTHENTICATED_FAILED",
        }
        if self.cloud:
            return Response(401, "Client must be authenticated to access this resource.", headers)
        return Response(
            401,
            {
                "errorMessages": [
                    "You are not authenticated. Authentication required to perform this operation."
                ],
                "errors": {},
            },
            headers,
        )

    def credentials_ok(self, request: Request) -> bool:
        header = request.header("authorization") or ""
        if header.lower().startswith("bearer ") and not self.cloud:
            return header[7:].strip() == self.password
        return super().credentials_ok(request)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = super().start(host, port)
        self._base = url
        return url

    def stop(self) -> None:
        super().stop()
        self.webhooks.close()

    def ctx(self, request: Request | None = None, api: str = "2") -> Ctx:
        base = self._base
        if request is not None and request.header("host"):
            base = f"http://{request.header('host')}"
        return Ctx(base, api, self.cloud, self.user, self.store.timezone)

    # -- fault injection ---------------------------------------------------------------------
    def rate_limit(self, count: int = 1, retry_after: int = 1) -> None:
        """The next `count` requests answer 429 with `Retry-After` (Jira Cloud rate limiting).

        Headers as documented in "Rate limiting" (Jira Cloud platform): `Retry-After` (seconds),
        `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`, `RateLimit-Reason`.
        """
        reset = (self.store.clock() + timedelta(seconds=retry_after)).strftime("%Y-%m-%dT%H:%MZ")
        headers = {
            "Retry-After": str(retry_after),
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": reset,
            "RateLimit-Reason": "jira-burst-based",
        }
        with self._fault_lock:
            self._faults.append(
                _Fault(
                    None, "", 429, count, {"errorMessages": [RATE_LIMITED], "errors": {}}, headers
                )
            )

    def fail_next(
        self,
        method: str | None,
        path_prefix: str,
        status: int,
        count: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `count` matching requests answer `status` (with a Jira error body)."""
        payload = (
            body
            if body is not None
            else {"errorMessages": [f"Injected failure ({status})"], "errors": {}}
        )
        with self._fault_lock:
            self._faults.append(
                _Fault(
                    method.upper() if method else None,
                    path_prefix,
                    status,
                    count,
                    payload,
                    dict(headers or {}),
                )
            )

    def _inject_faults(self, request: Request) -> Response | None:
        with self._fault_lock:
            for fault in self._faults:
                if (
                    fault.remaining > 0
                    and fault.method in (None, request.method)
                    and request.path.startswith(fault.prefix)
                ):
                    fault.remaining -= 1
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    return Response(fault.status, fault.body, dict(fault.headers))
        return None

    # -- webhooks ----------------------------------------------------------------------------
    def register_webhook(
        self, url: str, secret: str | None = None, events: list[str] | None = None
    ) -> int:
        """Send Jira webhooks to `url` (signed when `secret` is set); the webhook id."""
        return self.webhooks.register(url, secret, events).id

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        return self.webhooks.wait(timeout)

    def redeliver(self, index: int = -1) -> int | None:
        """Send a recorded delivery again, as Jira retries one: the same body, signature and
        `X-Atlassian-Webhook-Identifier`, plus `X-Atlassian-Webhook-Retry`; the status."""
        return self.webhooks.redeliver(self.webhooks.deliveries[index])

    def set_timezone(self, name: str) -> None:
        """The integration user's profile time zone (JQL dates, rendered timestamps)."""
        with self.lock:
            self.store.timezone = seeding.check_timezone(name)

    def _on_change(self, event: str, data: dict[str, Any]) -> None:
        if not self.webhooks.has_listeners(event):
            return
        ctx = Ctx(self._base, "2", self.cloud, self.user, self.store.timezone)
        payload: dict[str, Any] = {
            "timestamp": int(self.store.clock().timestamp() * 1000),
            "webhookEvent": event,
        }
        if "issue" in data:
            issue: Issue = data["issue"]
            payload["issue_event_type_name"] = data.get("event_type", "issue_created")
            payload["user"] = shapes.user(ctx)
            payload["issue"] = shapes.issue(ctx, self.store, issue)
            history = data.get("history")
            if history is not None:
                payload["changelog"] = {"id": str(history.id), "items": history.items}
            if data.get("comment") is not None:
                payload["comment"] = shapes.comment(ctx, issue, data["comment"])
        if "version" in data:
            payload["version"] = shapes.version(ctx, data["version"])
        self.webhooks.publish(event, payload)

    def reset(self, seed: dict[str, Any] | None = None) -> None:
        """Back to an empty (or freshly seeded) Jira: records, faults, webhooks, request log.

        Limits set on the instance (`search_max_results`, `cloud_max_results`) go back to
        their defaults too. The deployment and credentials stay.
        """
        with self.lock:
            self.store.clear()
            self.store.timezone = self._timezone
            self.search_max_results, self.cloud_max_results = 1000, 100
            with self._fault_lock:
                self._faults.clear()
            self.webhooks.webhooks.clear()
            self.webhooks.deliveries.clear()
            self.clear_log()
            data = dict((seed or {}).get("jira", seed) or {})
            if data:
                self.load_seed(data)

    # -- seed --------------------------------------------------------------------------------
    def load_seed(self, data: dict[str, Any]) -> None:
        """Load the `jira` part of a seed (see seed.py)."""
        seeding.load(self, data)

    # -- helpers for humans and tests ------------------------------------------------------
    def add_project(
        self,
        key: str,
        name: str | None = None,
        versions: Iterable[str] = (),
        board: str | None = None,
        sprints: Iterable[tuple[str, str]] = (),
    ) -> Project:
        """Create a project with versions and (optionally) a board with `(name, state)` sprints."""
        with self.lock:
            sprint_specs = [{"name": n, "state": s} for n, s in sprints]
            seeding.seed_project(
                self,
                {
                    "key": key,
                    "name": name or key,
                    "versions": [{"name": v} for v in versions],
                    "boards": [{"name": board, "sprints": sprint_specs}] if board else [],
                },
            )
            return self.store.project(key)

    def add_issue(
        self,
        project: str,
        summary: str,
        status: str = "To Do",
        fix_versions: Iterable[str] = (),
        labels: Iterable[str] = (),
        sprint: str | int | None = None,
        issue_type: str = "Story",
        description: Any = None,
        priority: str = "Medium",
        properties: dict[str, Any] | None = None,
    ) -> str:
        """Create an issue directly (no REST round trip); its key."""
        with self.lock:
            proj = self.store.project(project)
            version_ids = []
            for name in fix_versions:
                version = self.store.version_by_name(proj, str(name))
                if version is None:
                    raise KeyError(f"{proj.key} has no version {name!r}")
                version_ids.append(version.id)
            sprint_id = None
            if sprint is not None:
                found = (
                    self.store.sprint_by_name(str(sprint))
                    if not isinstance(sprint, int)
                    else self.store.sprint(sprint)
                )
                if found is None:
                    raise KeyError(f"no sprint {sprint!r}")
                sprint_id = found.id
            issue = self.store.create_issue(
                proj,
                summary,
                status=status_by_name(status).name,
                fix_versions=version_ids,
                labels=list(labels),
                sprint=sprint_id,
                issuetype=issue_type,
                description=description,
                priority=priority,
                properties=dict(properties or {}),
            )
            return issue.key

    def issue(self, key: str) -> dict[str, Any]:
        """The issue as REST v2 renders it (`fields.status.name`, `fields.labels`, ...)."""
        with self.lock:
            return shapes.issue(
                self.ctx(),
                self.store,
                self.store.issue(key),
                expand="changelog",
                properties=["*all"],
            )

    def issue_keys(self, jql_query: str) -> list[str]:
        """Keys of the issues matching a JQL query, in result order."""
        from itsm_bridge_sandbox.jira import jql

        with self.lock:
            return [i.key for i in jql.search(self.store, jql_query)[1]]

    def set_status(self, key: str, status: str) -> None:
        """Move an issue to `status` directly (any status, no transition rules)."""
        with self.lock:
            self.store.set_status(self.store.issue(key), status)

    def comments(self, key: str) -> list[str]:
        """The comment bodies of an issue, as plain text, oldest first."""
        with self.lock:
            return [shapes.adf_to_text(c.body) for c in self.store.issue(key).comments]

    def properties(self, key: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.store.issue(key).properties)

    def remote_links(self, key: str) -> list[dict[str, Any]]:
        with self.lock:
            issue = self.store.issue(key)
            return [shapes.remote_link(self.ctx(), issue, link) for link in issue.remote_links]

    def version(self, project: str, name: str) -> dict[str, Any] | None:
        """The version as REST renders it (`released`, `releaseDate`, ...), or None."""
        with self.lock:
            found = self.store.version_by_name(self.store.project(project), name)
            return shapes.version(self.ctx(), found) if found else None

    def sprint_of(self, key: str) -> str | None:
        """The name of the issue's current (open) sprint, or None when in the backlog."""
        with self.lock:
            issue = self.store.issue(key)
            return self.store.sprints[issue.sprint].name if issue.sprint else None

    def sprint_id(self, name: str) -> int:
        with self.lock:
            found = self.store.sprint_by_name(name)
            if found is None:
                raise KeyError(name)
            return found.id

    @staticmethod
    def statuses() -> list[str]:
        return [s.name for s in STATUSES]
