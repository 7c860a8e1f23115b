"""The sandboxes' HTTP server: HTTP/1.1 persistent connections, as the vendors' front ends
speak, bodies by length or in chunks, and a stop that ends kept-alive connections too."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest
import requests

from itsm_bridge_sandbox.webapp import App, Request, Response, RunningServer


@pytest.fixture
def server() -> Iterator[RunningServer]:
    app = App()

    def echo(request: Request) -> Response:
        return Response(200, {"path": request.path, "body": request.body.decode(),
                              "agent": request.headers.get("user-agent", "")})  # fmt: skip

    app.add_route("GET", "/echo/{rest:path}", echo)
    app.add_route("POST", "/echo/{rest:path}", echo)
    running = RunningServer(app).start()
    yield running
    running.stop()


def test_one_connection_serves_request_after_request(server: RunningServer) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    peers = set()
    for number in range(3):
        conn.request("GET", f"/echo/{number}")
        answer = conn.getresponse()
        assert answer.status == 200 and answer.version == 11
        assert answer.getheader("Connection") is None  # not "close"
        assert answer.read() == f'{{"path": "/echo/{number}", "body": "", "agent": ""}}'.encode()
        assert conn.sock is not None
        peers.add(conn.sock.getsockname())
    assert len(peers) == 1  # the same connection each time
    conn.close()


def test_a_client_s_session_reuses_its_connection(server: RunningServer) -> None:
    session = requests.Session()
    local = []
    for path in ("a", "b"):
        answer = session.get(f"{server.url}/echo/{path}", stream=True)
        local.append(answer.raw.connection.sock.getsockname())
        assert answer.json()["path"] == f"/echo/{path}"  # read whole: back to the pool
    assert local[0] == local[1]
    session.close()


def test_bodies_by_length_and_in_chunks(server: RunningServer) -> None:
    session = requests.Session()
    assert session.post(f"{server.url}/echo/x", data=b"a=1").json()["body"] == "a=1"
    chunked = session.post(f"{server.url}/echo/x", data=iter([b"first,", b"second"]))
    assert chunked.json()["body"] == "first,second"
    after = session.get(f"{server.url}/echo/after")  # the connection is still in step
    assert after.json()["path"] == "/echo/after"


def test_utf8_paths_and_headers_arrive_as_sent(server: RunningServer) -> None:
    answer = requests.get(f"{server.url}/echo/caf%C3%A9", headers={"User-Agent": "probe/1"})
    assert answer.json() == {"path": "/echo/café", "body": "", "agent": "probe/1"}


def test_http_1_0_and_connection_close_are_answered_then_closed(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        raw.sendall(b"GET /echo/old HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := raw.recv(4096):  # the server closes after its answer
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b'"agent": ""}')
    assert b"Connection: close" in data
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/echo/last", headers={"Connection": "close"})
    assert conn.getresponse().read().endswith(b'"agent": ""}')
    assert conn.sock is None  # http.client saw the server close it


def test_stop_ends_connections_kept_alive(server: RunningServer) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/echo/1")
    conn.getresponse().read()
    server.stop()
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected, OSError)):
        conn.request("GET", "/echo/2")
        conn.getresponse().read()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/echo/3", timeout=2)
    server.start = lambda: server  # type: ignore[method-assign]
    server.stop = lambda: None  # type: ignore[method-assign]  # already stopped


def test_a_malformed_request_is_refused_and_the_server_goes_on(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        raw.sendall(b"NONSENSE\r\n\r\n")
        data = b""
        while chunk := raw.recv(4096):  # answered (as HTTP/0.9: no status line), then closed
            data += chunk
    assert b"400" in data
    assert requests.get(f"{server.url}/echo/fine").status_code == 200
