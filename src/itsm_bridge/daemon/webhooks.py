"""`POST /webhooks/<name>`: one route per handler the plugins register (`register_webhooks`).

The route hands the plugin's handler the request's headers (names in lower case), raw body and
query parameters through `inbox.receive`, which authenticates, parses and stores the events
before the answer: 202 only once they are durable, 401/400/422 storing nothing, 503 when the
bridge cannot store (the sender retries). The answer is `{"status", "reason"}`. A 202 wakes
the worker. Every delivery is counted by route and status (`itsm_bridge_webhooks_total`); a
name no plugin registered is a plain 404, not counted (so strangers cannot add series).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from itsm_bridge import inbox
from itsm_bridge.daemon.context import DaemonContext

RETRY_AFTER_SECONDS = "5"  # what a 503 asks the sender to wait


class WebhookAnswer(BaseModel):
    status: int
    reason: str


ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {"model": WebhookAnswer, "description": "stored (or already known): durable"},
    400: {"model": WebhookAnswer, "description": "the body is not what the sender sends"},
    401: {"model": WebhookAnswer, "description": "missing or wrong credentials"},
    422: {"model": WebhookAnswer, "description": "well-formed but not a usable delivery"},
    503: {"model": WebhookAnswer, "description": "cannot store now; retry"},
}
# The body is the vendor's own document, read raw by the plugin's handler.
RAW_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def router(ctx: DaemonContext) -> APIRouter:
    """A route for every registered webhook handler (read once, when the app is made)."""
    routes = APIRouter(prefix="/webhooks", tags=["webhooks"])
    for name, handler in sorted(inbox.webhook_handlers(ctx.host).items()):
        routes.add_api_route(
            f"/{name}",
            _endpoint(ctx, name, handler),
            methods=["POST"],
            status_code=202,
            response_model=WebhookAnswer,
            responses=ANSWERS,
            summary=f"Deliveries from {name}",
            operation_id=f"webhook_{name}",
            openapi_extra=RAW_BODY,
        )
    return routes


def _endpoint(
    ctx: DaemonContext, name: str, handler: inbox.Handler
) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def deliver(request: Request) -> JSONResponse:
        body = await request.body()  # the size limit applies while it is read
        headers = dict(request.headers)
        query = dict(request.query_params)
        # storing is blocking database work: off the event loop
        status, reason = await run_in_threadpool(
            inbox.receive, ctx.store, handler, headers, body, query
        )
        ctx.metrics.webhook(name, status)
        if status == 202:
            ctx.wake()
        extra = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
        return JSONResponse({"status": status, "reason": reason}, status, headers=extra)

    deliver.__name__ = f"webhook_{name}"
    deliver.__doc__ = f"A delivery for the `{name}` webhook handler; 202 once stored."
    return deliver
