"""A small WSGI toolkit for the sandbox servers: routing, requests, responses and a threaded
loopback server.

Every route is `(method, pattern) -> handler(request)` and every handler returns a
`Response`. The server speaks HTTP/1.1 with persistent connections, as the vendors' own front
ends do (Jetty, Atlassian's and ServiceNow's proxies): a client's keep-alive connection serves
request after request, one thread per connection. The standard library's `wsgiref` server
answers HTTP/1.0 and closes every connection, which would make each call of a client pay
for a new connection and a new thread, as no real vendor does.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, unquote

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


IDLE_SECONDS = 30.0  # a connection idle this long is closed (Jetty's default idle timeout)


class _ConnectionHandler(BaseHTTPRequestHandler):
    """One client connection: its requests in turn, each handed to the WSGI app."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS
    wbufsize = -1  # buffered: an answer leaves in one write (flushed after its body)
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except OSError:  # idle too long, or closed by the client or by `stop`
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.close_connection = True
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            self.wfile.flush()
            return
        if not self.parse_request():  # it answered the error
            self.wfile.flush()
            return
        answer: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
            answer[:] = [status, headers]
            return lambda data: None

        payload = b"".join(self.server.app(self._environ(self._body()), start_response))
        status, headers = answer
        code, _, reason = str(status).partition(" ")
        self.send_response_only(int(code), reason or None)
        names = {name.lower() for name, _ in headers}
        for name, value in headers:
            self.send_header(name, value)  # "Connection: close" closes after this answer
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(payload)))
        if "date" not in names:
            self.send_header("Date", self.date_time_string())
        if self.close_connection and "connection" not in names:  # the client asked, or 1.0
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue`: the interim answer leaves at once (writes are buffered)."""
        answer = super().handle_expect_100()
        self.wfile.flush()
        return answer

    def _body(self) -> bytes:
        """The request body, by its Content-Length or its chunks."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers, up to the blank line
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _environ(self, body: bytes) -> dict[str, Any]:
        """The WSGI environ, as `wsgiref` builds it (PATH_INFO unquoted as latin-1)."""
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(path, "iso-8859-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": self.server.server_name,
            "SERVER_PORT": str(self.server.server_port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if self.headers.get("Content-Type"):
            environ["CONTENT_TYPE"] = self.headers["Content-Type"]
        for name, value in self.headers.items():
            key = "HTTP_" + name.replace("-", "_").upper()
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                continue
            environ[key] = f"{environ[key]},{value.strip()}" if key in environ else value.strip()
        return environ

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: Callable[..., Iterable[bytes]]) -> None:
        super().__init__(address, _ConnectionHandler)
        self.app = app
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._open.add(connection)
            else:
                self._open.discard(connection)

    def close_connections(self) -> None:
        """End every open connection: a stopped server answers nobody, kept alive or not."""
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):  # closed meanwhile
                connection.shutdown(socket.SHUT_RDWR)


class RunningServer:
    """A WSGI app served on a background thread; `url` is where it listens."""

    def __init__(self, app: Callable[..., Iterable[bytes]], host: str = "127.0.0.1", port: int = 0):
        self._server = _Server((host, port), app)
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
        self._server.close_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
