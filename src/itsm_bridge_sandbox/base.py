"""What every sandbox server shares: basic auth, a request log, start and stop on loopback."""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from itsm_bridge_sandbox.webapp import App, Request, Response, RunningServer


@dataclass
class LoggedRequest:
    """One request as the sandbox received it (tests assert on these)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def json(self) -> Any:
        import json

        return json.loads(self.body) if self.body else None


class SandboxServer:
    """Base of the Jira, ServiceNow and Jenkins sandboxes.

    Subclasses build their routes on `self.app` in `setup_routes()` and implement
    `unauthorized()` with the vendor's own 401 shape. State lives in memory and is guarded by
    `self.lock` (the server is threaded).
    """

    system = "sandbox"

    def __init__(self, user: str = "sandbox", password: str = "sandbox") -> None:
        self.user = user
        self.password = password
        self.lock = threading.RLock()
        self.requests: list[LoggedRequest] = []
        self.app = App(self.system)
        self.app.before.append(self._authenticate)
        self.app.after.append(self._log)
        self._server: RunningServer | None = None
        self.setup_routes()

    # -- to override -------------------------------------------------------------------
    def setup_routes(self) -> None:
        raise NotImplementedError

    def unauthorized(self, request: Request) -> Response:
        return Response(
            401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Basic realm="sandbox"'}
        )

    def is_public(self, request: Request) -> bool:
        """Paths that need no credentials (none by default)."""
        return False

    # -- shared machinery ----------------------------------------------------------------
    def credentials_ok(self, request: Request) -> bool:
        header = request.header("authorization") or ""
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, secret = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == self.user and secret == self.password

    def _authenticate(self, request: Request) -> Response | None:
        if self.is_public(request) or self.credentials_ok(request):
            return None
        return self.unauthorized(request)

    def _log(self, request: Request, response: Response) -> None:
        with self.lock:
            self.requests.append(
                LoggedRequest(
                    request.method,
                    request.path,
                    request.query,
                    request.headers,
                    request.body,
                    response.status,
                )
            )

    def requests_to(self, method: str | None = None, path_prefix: str = "") -> list[LoggedRequest]:
        """The logged requests, filtered by verb and path prefix."""
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and r.path.startswith(path_prefix)
            ]

    def clear_log(self) -> None:
        with self.lock:
            self.requests.clear()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on a background thread; returns the base URL."""
        self._server = RunningServer(self.app, host, port).start()
        return self._server.url

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{self.system} sandbox is not started")
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
