"""A small WSGI toolkit: routing, requests, responses and a threaded loopback server.

The daemon's HTTP server and the sandbox servers are both built on it. It exists so that the
project needs no web framework: every route is `(method, pattern) -> handler(request)` and
every handler returns a `Response`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

Handler = Callable[["Request"], "Response"]
StartResponse = Callable[..., Any]


class HTTPError(Exception):
    """Raised by a handler to answer with an error status and a JSON or text body."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class Request:
    """One inbound HTTP request, read fully into memory."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    raw_query: str = ""

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter `name`, or `default`."""
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        """A request header, case-insensitively."""
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body parsed as JSON; a 400 `HTTPError` when it is not valid JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, {"error": f"body is not valid JSON: {exc}"}) from exc

    def form(self) -> dict[str, list[str]]:
        """The body parsed as `application/x-www-form-urlencoded`."""
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)


@dataclass
class Response:
    """An HTTP answer; `body` may be bytes, str, or anything JSON-serialisable."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.body is None:
            payload = b""
        elif isinstance(self.body, bytes):
            payload = self.body
        elif isinstance(self.body, str):
            payload = self.body.encode("utf-8")
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            payload = json.dumps(self.body, default=str).encode("utf-8")
            headers.setdefault("Content-Type", "application/json;charset=UTF-8")
        return payload, headers


_PARAM = re.compile(r"\{(\w+)(:path)?\}")


def _compile(pattern: str) -> re.Pattern[str]:
    """`/a/{id}/b/{rest:path}` -> a regex with named groups; `:path` spans slashes."""
    out, pos = [], 0
    for match in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[pos : match.start()]))
        name, is_path = match.group(1), match.group(2)
        out.append(f"(?P<{name}>.+)" if is_path else f"(?P<{name}>[^/]+)")
        pos = match.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(out) + "$")


class App:
    """A WSGI application made of routes.

    `before` hooks run before every handler (authentication, request logging); one that
    returns a `Response` answers instead of the handler.
    """

    def __init__(self, name: str = "app") -> None:
        self.name = name
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.before: list[Callable[[Request], Response | None]] = []
        self.after: list[Callable[[Request, Response], None]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add_route(method, pattern, handler)
            return handler

        return register

    def add_route(self, method: str, pattern: str, handler: Handler) -> None:
        for verb in method.upper().split("|"):
            self._routes.append((verb, _compile(pattern), handler))

    def dispatch(self, request: Request) -> Response:
        """Route one request; unknown paths are 404, known paths with another verb 405."""
        path_matched = False
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if not match:
                continue
            path_matched = True
            if method != request.method:
                continue
            request.params = match.groupdict()
            try:
                for hook in self.before:
                    early = hook(request)
                    if early is not None:
                        return early
                return handler(request)
            except HTTPError as err:
                return Response(err.status, err.body, err.headers)
        if path_matched:
            return Response(405, {"error": "method not allowed"})
        return Response(404, {"error": f"no route for {request.path}"})

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = request_from_environ(environ)
        response = self.dispatch(request)
        for hook in self.after:
            hook(request, response)
        payload, headers = response.encoded()
        headers["Content-Length"] = str(len(payload))
        reason = (
            HTTPStatus(response.status).phrase
            if response.status in HTTPStatus._value2member_map_
            else ""
        )
        start_response(f"{response.status} {reason}", list(headers.items()))
        return [payload] if request.method != "HEAD" else [b""]


def request_from_environ(environ: dict[str, Any]) -> Request:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = environ["CONTENT_LENGTH"]
    raw_path = environ.get("PATH_INFO", "/")
    # wsgiref decodes PATH_INFO as latin-1; undo that so UTF-8 paths survive.
    path = raw_path.encode("latin-1").decode("utf-8", "replace")
    raw_query = environ.get("QUERY_STRING", "")
    return Request(
        method=environ["REQUEST_METHOD"].upper(),
        path=path,
        query=parse_qs(raw_query, keep_blank_values=True),
        headers=headers,
        body=body,
        raw_query=raw_query,
    )


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class RunningServer:
    """A WSGI app served on a background thread; `url` is where it listens."""

    def __init__(self, app: Callable[..., Iterable[bytes]], host: str = "127.0.0.1", port: int = 0):
        self._server = make_server(
            host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> RunningServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
