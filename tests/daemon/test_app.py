"""The HTTP application around the routes: the route table and OpenAPI document, health and
readiness, the body size limit, request ids, the request log and its formats, and answers
to errors nobody handled."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon.app_harness import HOOK_TOKEN, TOKEN, AppHarness
from itsm_bridge.daemon import app as app_module
from itsm_bridge.daemon.app import BodyLimit
from itsm_bridge.daemon.logs import REQUEST_LOGGER, configure_logging

HOOK = {"Authorization": f"Bearer {HOOK_TOKEN}"}
ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/api/v1/releases"),
    ("GET", "/api/v1/releases"),
    ("GET", "/api/v1/releases/{release_id}"),
    ("GET", "/api/v1/releases/{release_id}/plan"),
    ("GET", "/api/v1/releases/{release_id}/notes"),
    ("POST", "/api/v1/releases/{release_id}/rollback"),
    ("POST", "/api/v1/releases/{release_id}/cancel"),
    ("POST", "/api/v1/releases/{release_id}/approve"),
    ("POST", "/api/v1/releases/{release_id}/task-done"),
    ("POST", "/api/v1/releases/{release_id}/retry"),
    ("POST", "/api/v1/releases/{release_id}/end-support"),
    ("POST", "/webhooks/ci"),
}


@pytest.fixture
def h(tmp_path: Path) -> AppHarness:
    return AppHarness(tmp_path)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access = logging.getLogger("uvicorn.access").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("uvicorn.access").setLevel(access)


def request_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == REQUEST_LOGGER and hasattr(r, "status")]


# -- routes and the OpenAPI document -------------------------------------------------------
def test_the_route_table_and_the_openapi_document(h: AppHarness) -> None:
    response = h.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]
    assert {(m.upper(), p) for p, ops in paths.items() for m in ops} == ROUTES
    for path, operations in paths.items():
        for operation in operations.values():
            secured = operation.get("security") == [{"server.token": []}]
            assert secured == path.startswith("/api/v1"), path
    create = document["components"]["schemas"]["CreateRelease"]
    assert set(create["required"]) == {"service", "version"}
    assert create["additionalProperties"] is False
    assert paths["/webhooks/ci"]["post"]["requestBody"]["required"] is True
    assert h.client.get("/docs").status_code == 404
    assert h.client.get("/redoc").status_code == 404


def test_a_method_a_path_does_not_serve_is_405_naming_every_method_it_does(
    h: AppHarness,
) -> None:
    for method, path, allow in (
        ("OPTIONS", "/api/v1/releases", "GET, POST"),
        ("DELETE", "/api/v1/releases/rel-1", "GET"),
        ("GET", "/api/v1/releases/rel-1/cancel", "POST"),
        ("PUT", "/webhooks/ci", "POST"),
    ):
        response = h.client.request(method, path, headers=h.auth)
        assert response.status_code == 405, (method, path)
        assert response.headers["Allow"] == allow, (method, path)


def test_healthz_answers_without_the_database(
    h: AppHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def away(*args: Any) -> Any:
        raise sa.exc.OperationalError("connect", {}, Exception("connection refused"))

    monkeypatch.setattr(h.store.engine, "connect", away)
    response = h.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_200_when_ready_and_503_with_the_daemons_reasons(h: AppHarness) -> None:
    response = h.client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready", "reasons": []})
    h.reasons.append("plugins not initialised: jira")
    response = h.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "reasons": ["plugins not initialised: jira"]}


def test_readyz_fails_while_the_database_is_unreachable_and_recovers(
    h: AppHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: Any) -> Any:
        raise sa.exc.OperationalError("connect", {}, Exception("connection refused\nmore"))

    monkeypatch.setattr(h.store.engine, "connect", refused)
    response = h.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["the database is unreachable: connection refused"]
    monkeypatch.undo()
    assert h.client.get("/readyz").status_code == 200


def test_readyz_is_bounded_in_time_and_never_piles_up_probes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "READY_TIMEOUT_SECONDS", 0.2)
    h = AppHarness(tmp_path)
    release = threading.Event()
    calls: list[int] = []

    def hangs(*args: Any) -> Any:
        calls.append(1)
        release.wait(10)
        raise sa.exc.OperationalError("connect", {}, Exception("gave up"))

    monkeypatch.setattr(h.store.engine, "connect", hangs)
    try:
        for _ in range(3):
            response = h.client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["reasons"] == ["the database did not answer within 0.2 s"]
        assert calls == [1]  # one probe in flight, the others waited for it
    finally:
        release.set()


# -- the body size limit ---------------------------------------------------------------------
@pytest.fixture
def small(tmp_path: Path) -> AppHarness:
    return AppHarness(tmp_path, server={"max_body_bytes": 64})


def body_of(size: int) -> bytes:
    text = json.dumps({"build": 7, "pad": ""})
    return json.dumps({"build": 7, "pad": "x" * (size - len(text))}).encode()


def test_a_declared_body_above_the_limit_is_413_before_anything_is_read(small: AppHarness) -> None:
    assert len(body_of(65)) == 65
    response = small.client.post("/webhooks/ci", content=body_of(65), headers=HOOK)
    assert response.status_code == 413
    assert response.json() == {"detail": "the request body is larger than 64 bytes"}
    assert len(response.headers["X-Request-ID"]) == 32  # logged like any other request
    assert not hasattr(small.hooks, "seen")  # the handler never ran
    assert small.inbox_rows() == 0
    at_limit = small.client.post("/webhooks/ci", content=body_of(64), headers=HOOK)
    assert at_limit.status_code == 202
    assert small.inbox_rows() == 1


def test_a_streamed_body_is_cut_off_past_the_limit(small: AppHarness) -> None:
    def chunks(total: int) -> Iterator[bytes]:
        data = body_of(total)
        yield from (data[i : i + 16] for i in range(0, len(data), 16))

    response = small.client.post("/webhooks/ci", content=chunks(65), headers=HOOK)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413
    assert small.inbox_rows() == 0
    assert small.client.post("/webhooks/ci", content=chunks(64), headers=HOOK).status_code == 202
    api = small.client.post(
        "/api/v1/releases",
        content=chunks(65),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert api.status_code == 413


def run_asgi(app: Any, headers: list[tuple[bytes, bytes]], bodies: list[bytes]) -> dict[str, Any]:
    """Call an ASGI app once; what it sent and how many times it read the body."""
    sent: list[dict[str, Any]] = []
    reads: list[int] = []

    async def receive() -> dict[str, Any]:
        reads.append(1)
        body = bodies.pop(0) if bodies else b""
        return {"type": "http.request", "body": body, "more_body": bool(bodies)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return {"status": sent[0]["status"], "body": sent[1]["body"], "reads": len(reads)}


async def echo(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_body_limit_reads_nothing_of_a_declared_oversize_body() -> None:
    limited = BodyLimit(echo, limit=10)
    result = run_asgi(limited, [(b"content-length", b"11")], [b"x" * 11])
    assert (result["status"], result["reads"]) == (413, 0)
    result = run_asgi(limited, [(b"content-length", b"ten")], [b"x"])
    assert (result["status"], result["reads"]) == (400, 0)
    result = run_asgi(limited, [(b"content-length", b"10")], [b"x" * 10])
    assert (result["status"], result["body"]) == (200, b"x" * 10)
    result = run_asgi(limited, [], [b"x" * 6, b"x" * 5])  # streamed: cut at the 11th byte
    assert result["status"] == 413 and result["reads"] == 2
    assert run_asgi(limited, [], [b"x" * 6, b"x" * 4])["status"] == 200


# -- request ids and the request log -----------------------------------------------------------
def test_every_request_is_logged_once_with_a_request_id(
    h: AppHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    made = h.client.get("/healthz")
    rid = made.headers["X-Request-ID"]
    assert len(rid) == 32 and int(rid, 16) >= 0
    given = h.client.get("/api/v1/releases?state=planned", headers={
        **h.auth, "X-Request-ID": "deploy-42.a:b_c"})  # fmt: skip
    assert given.headers["X-Request-ID"] == "deploy-42.a:b_c"
    missing = h.client.get("/nowhere")
    records = request_records(caplog)
    assert [(r.method, r.path, r.status) for r in records] == [  # type: ignore[attr-defined]
        ("GET", "/healthz", 200),
        ("GET", "/api/v1/releases", 200),
        ("GET", "/nowhere", 404),
    ]
    assert [r.request_id for r in records] == [  # type: ignore[attr-defined]
        rid,
        "deploy-42.a:b_c",
        missing.headers["X-Request-ID"],
    ]
    assert all(r.duration_ms >= 0 for r in records)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("given", "kept"),
    [("a" * 128, True), ("a" * 129, False), ("two words", False), ("id;rm", False), ("", False)],
)
def test_a_request_id_that_is_not_a_plain_token_is_replaced(
    h: AppHarness, given: str, kept: bool
) -> None:
    answer = h.client.get("/healthz", headers={"X-Request-ID": given})
    assert (answer.headers["X-Request-ID"] == given) is kept
    if not kept:
        assert len(answer.headers["X-Request-ID"]) == 32


def test_no_secret_reaches_the_log(h: AppHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    h.client.get("/api/v1/releases", headers=h.auth)
    h.client.get("/api/v1/releases", headers={"Authorization": "Bearer wrong-guess-777"})
    h.client.post("/webhooks/ci?token=query-secret-555", content=b'{"build": 1}', headers=HOOK)
    logged = " ".join(str(vars(r)) for r in caplog.records if not r.name.startswith("httpx"))
    assert len(request_records(caplog)) == 3
    for secret in (TOKEN, "wrong-guess-777", HOOK_TOKEN, "query-secret-555", "token="):
        assert secret not in logged


def test_an_unhandled_error_is_500_without_a_traceback_and_logged(
    h: AppHarness, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> list[str]:
        raise RuntimeError("internal state went wrong")

    h.ctx.not_ready = broken
    response = h.client.get("/readyz", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "req-500"
    assert response.json() == {"detail": "internal error; the bridge's log has it (req-500)"}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info is not None
    assert request_records(caplog)[-1].status == 500  # type: ignore[attr-defined]


def test_json_logs_carry_the_request_fields_and_lines_logged_during_it(
    h: AppHarness, restore_logging: None
) -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    configure_logging("json", stream=stream)  # again: replaces, never doubles
    response = h.client.post(
        "/webhooks/ci", content=b'{"crash": true}', headers={**HOOK, "X-Request-ID": "r-1"}
    )
    assert response.status_code == 500
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    failed = next(x for x in lines if x["message"] == "webhook handler failed")
    assert failed["request_id"] == "r-1" and "RuntimeError" in failed["exception"]
    (request,) = [x for x in lines if x["logger"] == REQUEST_LOGGER]
    assert request["request_id"] == "r-1"
    assert (request["method"], request["path"], request["status"]) == ("POST", "/webhooks/ci", 500)
    assert request["level"] == "WARNING" and request["time"].endswith("+00:00")
    assert logging.getLogger().level == logging.INFO


def test_text_logs_and_the_access_log_of_uvicorn(h: AppHarness, restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("text", verbose=True, stream=stream)
    h.client.get("/healthz", headers={"X-Request-ID": "r-2"})
    (line,) = [x for x in stream.getvalue().splitlines() if REQUEST_LOGGER in x]
    assert "[r-2] GET /healthz 200 " in line and line.endswith("ms")
    assert logging.getLogger().level == logging.DEBUG
    # uvicorn's access log writes the query string (Jenkins' token): only warnings pass
    assert logging.getLogger("uvicorn.access").getEffectiveLevel() == logging.WARNING
    logging.getLogger("uvicorn.access").info('GET /webhooks/jenkins?token=t HTTP/1.1" 202')
    assert "token=t" not in stream.getvalue()
    with pytest.raises(ValueError, match="text"):
        configure_logging("yaml")  # type: ignore[arg-type]
