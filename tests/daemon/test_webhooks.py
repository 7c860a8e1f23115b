"""`POST /webhooks/<name>`: stored once before 202, refused deliveries store nothing, the
worker woken, the delivery counted; the Jenkins plugin's token in the query string."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon.app_harness import HOOK_TOKEN, AppHarness

HOOK = {"Authorization": f"Bearer {HOOK_TOKEN}"}


@pytest.fixture
def h(tmp_path: Path) -> AppHarness:
    return AppHarness(tmp_path)


def deliver(
    h: AppHarness, body: Any = None, headers: dict[str, str] | None = None, **kw: Any
) -> Any:
    content = kw.pop("content", None)
    if content is None:
        content = json.dumps({"build": 7} if body is None else body).encode()
    return h.client.post(
        "/webhooks/ci", content=content, headers=HOOK if headers is None else headers, **kw
    )


def test_a_delivery_is_stored_once_then_answered_202_and_wakes_the_worker(h: AppHarness) -> None:
    first = deliver(h)
    assert first.status_code == 202
    assert first.json() == {"status": 202, "reason": "1 event(s) stored, 0 already known"}
    assert h.inbox_rows() == 1
    assert h.wakes == 1
    again = deliver(h)  # the sender retried: known, not stored twice
    assert again.status_code == 202
    assert again.json()["reason"] == "0 event(s) stored, 1 already known"
    assert h.inbox_rows() == 1
    with h.store.begin() as tx:
        (row,) = tx.inbox_pending()
    assert (row["source"], row["kind"], row["dedupe_key"]) == ("ci", "job", "ci:7")
    assert row["payload"] == {"build": 7}


@pytest.mark.parametrize(
    ("headers", "content", "status"),
    [
        ({}, b'{"build": 7}', 401),
        ({"Authorization": "Bearer wrong"}, b'{"build": 7}', 401),
        (HOOK, b'{"build": ', 400),
        (HOOK, b"<xml/>", 400),
        (HOOK, b'{"job": "x"}', 422),
        (HOOK, b"[7]", 422),
    ],
)
def test_a_refused_delivery_stores_nothing_and_wakes_nobody(
    h: AppHarness, headers: dict[str, str], content: bytes, status: int
) -> None:
    response = deliver(h, headers=headers, content=content)
    assert response.status_code == status
    assert response.json()["status"] == status
    assert response.json()["reason"]
    assert h.inbox_rows() == 0
    assert h.wakes == 0


def test_the_handler_gets_headers_raw_body_and_query(h: AppHarness) -> None:
    body = b'{"build": 8,  "extra": "kept as sent"}'
    deliver(h, content=body, params={"token": "abc", "x": "1"})
    headers, raw, query = h.hooks.seen
    assert raw == body
    assert query == {"token": "abc", "x": "1"}
    assert headers["authorization"] == f"Bearer {HOOK_TOKEN}"  # names in lower case
    assert h.hooks.on_event_loop is False  # handled (and stored) off the event loop


def test_a_bridge_that_cannot_store_answers_503_with_retry_after(
    h: AppHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> bool:
        raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr("itsm_bridge.store.queues.QueueRows.inbox_add_many", broken)
    response = deliver(h)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "retry" in response.json()["reason"]
    assert h.wakes == 0
    monkeypatch.undo()
    assert h.inbox_rows() == 0


def test_an_unknown_webhook_is_404_and_not_counted(h: AppHarness) -> None:
    response = h.client.post("/webhooks/nobody", content=b"{}", headers=HOOK)
    assert response.status_code == 404
    assert h.client.get("/webhooks/ci").status_code == 405
    assert b"nobody" not in h.metrics.render()[0]
    assert h.inbox_rows() == 0


def test_deliveries_are_counted_by_source_and_status(h: AppHarness) -> None:
    deliver(h)
    deliver(h)
    deliver(h, headers={})
    text = h.client.get("/metrics").text
    assert 'itsm_bridge_webhooks_total{source="ci",status="202"} 2.0' in text
    assert 'itsm_bridge_webhooks_total{source="ci",status="401"} 1.0' in text


def test_jenkins_notifications_with_the_token_in_the_query_never_log_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "jenkins-hook-secret-4242"
    h = AppHarness(
        tmp_path,
        plugins={
            "enabled": ["jenkins"],
            "jenkins": {
                "url": "https://ci.example.com",
                "user": "bridge",
                "token": "api-token",
                "webhook_token": secret,
            },
        },
    )
    note = {
        "name": "build",
        "url": "job/payments/job/build/",
        "build": {"number": 7, "phase": "FINALIZED", "status": "SUCCESS",
                  "parameters": {"RELEASE_ID": "rel-20261128-1f3a9c2e"}},
    }  # fmt: skip
    caplog.set_level(logging.DEBUG)
    wrong = h.client.post("/webhooks/jenkins", json=note, params={"token": "guess"})
    assert wrong.status_code == 401
    assert h.inbox_rows() == 0
    response = h.client.post("/webhooks/jenkins", json=note, params={"token": secret})
    assert response.status_code == 202, response.text
    assert h.inbox_rows() == 1
    paths = [getattr(r, "path", None) for r in caplog.records if r.name == "itsm_bridge.requests"]
    assert paths == ["/webhooks/jenkins", "/webhooks/jenkins"]
    # every server-side record, with its fields (httpx, the test's client, logs its own URLs)
    logged = " ".join(str(vars(r)) for r in caplog.records if not r.name.startswith("httpx"))
    assert "itsm_bridge.requests" in logged
    assert secret not in logged and "guess" not in logged
