"""The daemon's HTTP application: `create_app(ctx)` gives the FastAPI app uvicorn serves.

Routes (DESIGN.md, "HTTP endpoints"): the REST API under `/api/v1` (`api.py`, bearer
`server.token`), `POST /webhooks/<name>` for each plugin's handler (`webhooks.py`),
`GET /healthz` (the process answers), `GET /readyz` (the database answers a cheap query in
time and `ctx.not_ready()` has no reason), `GET /metrics` (Prometheus text) and
`GET /openapi.json` (generated from the code). No interactive docs pages are served.

Around every route: the request log with its request id (outermost, `logs.RequestLog`) and
the body size limit (`server.max_body_bytes`): a declared `Content-Length` above it answers
413 at once, before any of the body is read; a body sent without one is cut off with 413
as soon as it passes the limit. A JSON body that does not parse answers 400, one that
parses but does not fit the model 422.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import Future

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from itsm_bridge import __version__
from itsm_bridge.daemon import api, webhooks
from itsm_bridge.daemon.context import DaemonContext
from itsm_bridge.daemon.logs import RequestLog
from itsm_bridge.store import Store
from itsm_bridge.store.engine import database_reason

READY_TIMEOUT_SECONDS = 2.0  # /readyz waits this long for the database


def create_app(ctx: DaemonContext) -> FastAPI:
    """The FastAPI application of the daemon, on the shared context."""
    app = FastAPI(
        title="itsm-bridge",
        version=__version__,
        summary="Releases across ITSM, backlog and CI/CD tools: REST API, webhooks, health",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.include_router(_health(ctx))
    app.include_router(api.router(ctx))
    app.include_router(webhooks.router(ctx))
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(405, _MethodNotAllowed(app))
    app.add_middleware(BodyLimit, limit=ctx.settings.server.max_body_bytes)
    app.add_middleware(RequestLog)  # added last: outermost, so it sees every answer
    return app


async def _invalid(request: Request, exc: Exception) -> Response:
    """400 for a body that is not JSON at all; FastAPI's 422 for the rest."""
    assert isinstance(exc, RequestValidationError)
    if any(error.get("type") == "json_invalid" for error in exc.errors()):
        return JSONResponse({"detail": "the body is not valid JSON"}, status_code=400)
    return await request_validation_exception_handler(request, exc)


class _MethodNotAllowed:
    """405 with every method the path serves in `Allow` (Starlette names only those of the
    first route that matched the path, e.g. POST alone for `/api/v1/releases`)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.paths: list[tuple[re.Pattern[str], set[str]]] | None = None

    async def __call__(self, request: Request, exc: Exception) -> Response:
        if self.paths is None:  # the routes are all there by the first request
            self.paths = [
                (compile_path(path)[0], {method.upper() for method in operations})
                for path, operations in self.app.openapi()["paths"].items()
            ]
        allowed = set().union(*(m for regex, m in self.paths if regex.match(request.url.path)))
        return JSONResponse(
            {"detail": "Method Not Allowed"},
            status_code=405,
            headers={"Allow": ", ".join(sorted(allowed))},
        )


# -- health, readiness, metrics -------------------------------------------------------------
def _health(ctx: DaemonContext) -> APIRouter:
    routes = APIRouter(tags=["operations"])
    probe = DatabaseProbe(ctx.store, READY_TIMEOUT_SECONDS)

    @routes.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive and serving (no dependency is checked)."""
        return {"status": "ok"}

    @routes.get("/readyz", responses={503: {"description": "not ready; `reasons` says why"}})
    def readyz() -> JSONResponse:
        """Ready for traffic: the database answers in time and the daemon has no reason not to
        be (plugins initialised ...); else 503 with the reasons."""
        reasons = list(ctx.not_ready())
        problem = probe.check()
        if problem:
            reasons.append(problem)
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready", "reasons": []})

    @routes.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """Prometheus text exposition (releases by state and inbox depth read now)."""
        body, content_type = ctx.metrics.render()
        return Response(body, media_type=content_type)

    return routes


class DatabaseProbe:
    """`SELECT 1` against the store, bounded by `timeout` seconds.

    One query at a time runs on a daemon thread of its own: probes that come while it runs
    wait for that one, so a hung database never piles up threads (or holds up exit).
    """

    def __init__(self, store: Store, timeout: float) -> None:
        self.store = store
        self.timeout = timeout
        self._lock = threading.Lock()
        self._running: Future[None] | None = None

    def check(self) -> str:
        """'' when the database answered in time, else why not (no password)."""
        with self._lock:
            if self._running is None or self._running.done():
                self._running = Future()
                threading.Thread(
                    target=self._query, args=(self._running,), name="readyz-db", daemon=True
                ).start()
            running = self._running
        try:
            running.result(timeout=self.timeout)
        except TimeoutError:
            return f"the database did not answer within {self.timeout:g} s"
        except sa.exc.SQLAlchemyError as exc:
            return f"the database is unreachable: {database_reason(exc, self.store.url)}"
        return ""

    def _query(self, future: Future[None]) -> None:
        try:
            with self.store.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)


# -- the body size limit ------------------------------------------------------------------
class BodyTooLarge(HTTPException):
    """Raised while the body is read, past the limit (FastAPI answers it as 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware: at most `limit` bytes of request body (`server.max_body_bytes`)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            status = 413 if declared.isdigit() else 400
            reason = (
                BodyTooLarge(self.limit).detail
                if status == 413
                else "the Content-Length header is not a number"
            )
            await JSONResponse({"detail": reason}, status_code=status)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except BodyTooLarge as exc:  # read outside a route (FastAPI answers it inside one)
            if started:
                raise
            await JSONResponse({"detail": exc.detail}, status_code=413)(scope, receive, send)
