"""The daemon's logs: readable text by default, one JSON object a line with `--log-format json`,
and one line per HTTP request carrying a request id.

The request log (`RequestLog`, an ASGI middleware) writes method, path, status and duration
once per request, under the id the caller sent in `X-Request-ID` (when it is a plain token)
or a new one, and echoes the id in the answer. Every other line logged while the request is
handled carries the same id. It never writes the query string (Jenkins sends its token there),
headers (Authorization) or bodies; uvicorn's own access log, which writes the query string,
is silenced by `configure_logging`.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import IO, Any, Literal

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_LOGGER = "itsm_bridge.requests"
HEADER = "X-Request-ID"
# A caller's id is kept when it is a plain token (no spaces or control characters to forge
# log lines with), else replaced.
VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Attributes of a record the JSON format writes as fields of their own, when present.
FIELDS = ("request_id", "method", "path", "status", "duration_ms", "client")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
log = logging.getLogger(REQUEST_LOGGER)


class RequestIdFilter(logging.Filter):
    """Gives every record the id of the request being handled ("-" outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, the request fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "-":
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


_installed: list[logging.Handler] = []


def configure_logging(
    format: Literal["text", "json"] = "text", verbose: bool = False, stream: IO[str] | None = None
) -> None:
    """Send every log line to `stream` (stderr) as text or JSON; INFO, or DEBUG when
    `verbose`. Calling it again replaces what an earlier call installed (only that)."""
    if format not in ("text", "json"):
        raise ValueError('the log format must be "text" or "json"')
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
    _installed.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    _installed.append(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # The request log replaces uvicorn's access log, which would write the query string.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


# A request id the client did not give: 32 hex digits like a UUID's, this process' random
# half and a counter (unique without asking the kernel for randomness on every request).
_PROCESS_PREFIX = uuid.uuid4().hex[:16]
_request_numbers = itertools.count(1)


def _take_id(scope: Scope) -> str:
    given = Headers(scope=scope).get(HEADER, "")
    if VALID_ID.match(given):
        return given
    return f"{_PROCESS_PREFIX}{next(_request_numbers):016x}"


class RequestLog:
    """ASGI middleware: one log line per request, the request id in the answer's headers.

    An exception nothing else handled is logged here (with its traceback, in the log only)
    and answered 500 with a one-line JSON reason and the request id, never a traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _take_id(scope)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if response_started:
                raise
            body = json.dumps({"detail": f"internal error; the bridge's log has it ({rid})"})
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
        finally:
            duration = round((time.perf_counter() - started) * 1000, 1)
            client = scope.get("client")
            log.log(
                logging.WARNING if status >= 500 else logging.INFO,
                "%s %s %d %.1fms",
                scope.get("method"),
                scope.get("path"),
                status,
                duration,
                extra={
                    "request_id": rid,
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": duration,
                    "client": client[0] if client else None,
                },
            )
            request_id.reset(token)
