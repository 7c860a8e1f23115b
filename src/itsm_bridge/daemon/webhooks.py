"""`POST /webhooks/<name>`: one route per handler the plugins register (`register_webhooks`).

The route hands the plugin's handler the request's headers (names in lower case), raw body and
query parameters; the handler authenticates and parses them into events, which are stored
before the answer: 202 only once they are durable, 401/400/422 storing nothing, 503 when the
bridge cannot store (the sender retries). The answer is `{"status", "reason"}`. A 202 wakes
the worker. Every delivery is counted by route and status (`itsm_bridge_webhooks_total`); a
name no plugin registered is a plain 404, not counted (so strangers cannot add series).

Deliveries go through a `Committer` (group commit): one thread of its own runs the handlers
(off the event loop) and stores every delivery that arrived meanwhile in one transaction, then
answers them together. Under load a transaction carries tens of deliveries, so SQLite's single
writer, PostgreSQL's commit flush and the hop between the event loop and a thread are paid
once per batch instead of once per delivery; alone, a delivery is one transaction as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from itsm_bridge import inbox
from itsm_bridge.daemon.context import DaemonContext
from itsm_bridge.store import Store

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"  # what a 503 asks the sender to wait
IDLE_SECONDS = 10.0  # the committer's thread ends after this long without a delivery


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
    committer = Committer(ctx.store)
    for name, handler in sorted(inbox.webhook_handlers(ctx.host).items()):
        routes.add_api_route(
            f"/{name}",
            _endpoint(ctx, committer, name, handler),
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
    ctx: DaemonContext, committer: Committer, name: str, handler: inbox.Handler
) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def deliver(request: Request) -> JSONResponse:
        body = await request.body()  # the size limit applies while it is read
        headers = dict(request.headers)
        query = dict(request.query_params)
        status, reason = await committer.receive(handler, headers, body, query)
        ctx.metrics.webhook(name, status)
        if status == 202:
            ctx.wake()
        extra = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
        return JSONResponse({"status": status, "reason": reason}, status, headers=extra)

    deliver.__name__ = f"webhook_{name}"
    deliver.__doc__ = f"A delivery for the `{name}` webhook handler; 202 once stored."
    return deliver


# A delivery waiting for the committer: handler, headers, body, query, the request's context
# (its log lines carry the request id), the future the request awaits, and its event loop.
Delivery = tuple[
    inbox.Handler,
    dict[str, str],
    bytes,
    dict[str, str],
    contextvars.Context,
    "asyncio.Future[inbox.Reception]",
    asyncio.AbstractEventLoop,
]


class Committer:
    """Group commit of webhook deliveries: answered only after the transaction holding them
    committed, many deliveries to a transaction.

    `receive` (on the event loop) queues a delivery and waits; the committer's thread takes
    every queued delivery, runs their handlers, stores the events of all of them with
    `inbox.store_deliveries` (one transaction, or one per delivery when one of them broke
    it) and then answers each waiting request. It never waits for company: whatever queued
    while the last transaction committed is the next batch. The thread starts with the first
    delivery and ends after `idle_seconds` without one (so an app that is dropped leaves no
    thread behind).
    """

    def __init__(self, store: Store, idle_seconds: float = IDLE_SECONDS) -> None:
        self.store = store
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._queue: list[Delivery] = []
        self._work = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches: deque[int] = deque(maxlen=100)  # deliveries per transaction, latest

    async def receive(
        self, handler: inbox.Handler, headers: dict[str, str], body: bytes, query: dict[str, str]
    ) -> inbox.Reception:
        """Authenticate, parse and store one delivery; its answer once it is durable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[inbox.Reception] = loop.create_future()
        with self._lock:
            context = contextvars.copy_context()
            self._queue.append((handler, headers, body, query, context, future, loop))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
                self._thread.start()
            self._work.set()
        return await future

    def _run(self) -> None:
        while True:
            self._work.wait(self.idle_seconds)
            with self._lock:
                batch, self._queue = self._queue, []
                self._work.clear()
                if not batch:
                    self._thread = None  # idle: a new delivery starts another
                    return
            self._commit(batch)

    def _commit(self, batch: list[Delivery]) -> None:
        """Handlers, one transaction, answers; never raises (each request gets its own).
        What is logged for a delivery is logged in its request's context."""
        parsed = [
            context.run(inbox.parse_delivery, handler, headers, body, query)
            for handler, headers, body, query, context, _future, _loop in batch
        ]
        deliveries = [events for events in parsed if not isinstance(events, inbox.Reception)]
        try:
            outcomes = iter(inbox.store_deliveries(self.store, deliveries))
        except BaseException as exc:  # a bug: each of these requests answers 500 (logged)
            outcomes = iter([exc for _ in deliveries])
        self.batches.append(len(deliveries))
        by_loop: dict[asyncio.AbstractEventLoop, list[Settled]] = {}
        for (*_, context, future, loop), result in zip(batch, parsed, strict=True):
            if isinstance(result, inbox.Reception):
                answer: inbox.Reception | BaseException = result
            else:
                answer = self._answer(context, result, next(outcomes))
            by_loop.setdefault(loop, []).append((future, answer))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # the loop is closed: nobody waits for these answers
                log.debug("webhook answers for a closed event loop dropped")

    def _answer(
        self, context: contextvars.Context, events: list[dict[str, Any]], outcome: inbox.Outcome
    ) -> inbox.Reception | BaseException:
        try:
            return context.run(inbox.stored_answer, self.store, events, outcome)
        except BaseException as exc:
            return exc


Settled = tuple["asyncio.Future[inbox.Reception]", inbox.Reception | BaseException]


def _settle(settled: list[Settled]) -> None:
    """On the event loop: hand each waiting request its answer."""
    for future, answer in settled:
        if future.done():  # the request was cancelled (the client went away)
            continue
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)
