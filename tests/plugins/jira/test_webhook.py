"""`POST /webhooks/jira`: X-Hub-Signature checked over the raw body, retried deliveries stored
once, issue events of the project's scope turned into `scope` events. Unit tests with bodies
shaped like Atlassian's webhook documentation; integration through the sandbox's webhooks,
received by a route that does what the daemon's does (`inbox.receive`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from itsm_bridge.errors import WebhookRejected
from itsm_bridge.inbox import receive
from itsm_bridge.store import Store, open_store
from itsm_bridge_jira import Settings
from itsm_bridge_jira.webhook import Handler
from itsm_bridge_sandbox.jira import JiraSandbox
from itsm_bridge_sandbox.webapp import App, Request, Response, RunningServer

SECRET = "It's a Secret to Everybody"
# "Webhooks" (Jira Cloud platform): an issue_updated event with its changelog.
UPDATED: dict[str, Any] = {
    "timestamp": 1764325800123,
    "webhookEvent": "jira:issue_updated",
    "issue_event_type_name": "issue_updated",
    "user": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Mia Krystof"},
    "issue": {
        "id": "10012",
        "self": "https://acme.atlassian.net/rest/api/2/10012",
        "key": "PAY-12",
        "fields": {
            "summary": "Fees per merchant tier",
            "project": {"id": "10000", "key": "PAY", "name": "Payments"},
            "fixVersions": [{"id": "10021", "name": "1.6.0"}],
            "updated": "2026-11-28T10:30:00.123+0000",
        },
    },
    "changelog": {
        "id": "10400",
        "items": [
            {
                "field": "Fix Version",
                "fieldtype": "jira",
                "fieldId": "fixVersions",
                "from": "10020",
                "fromString": "1.5.0",
                "to": "10021",
                "toString": "1.6.0",
            }
        ],
    },
}


def config(**overrides: Any) -> Settings:
    base = {
        "url": "https://acme.atlassian.net",
        "user": "bridge@acme.com",
        "token": "api-token",
        "project": "PAY",
        "webhook_secret": SECRET,
    }
    return Settings.model_validate({**base, **overrides})


def signed(body: bytes, secret: str = SECRET, **headers: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature": f"sha256={digest}", **headers}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path}/bridge.db")


def inbox(store: Store) -> list[dict[str, Any]]:
    with store.begin() as tx:
        return tx.inbox_pending(limit=100)


def test_a_signed_update_of_the_version_is_a_scope_event() -> None:
    body = json.dumps(UPDATED).encode()

    [event] = Handler(config())(signed(body, **{"X-Atlassian-Webhook-Identifier": "77"}), body)

    assert event == {
        "source": "jira",
        "kind": "scope",
        "dedupe_key": "jira:webhook:77",
        "payload": {
            "key": "PAY-12",
            "id": "10012",
            "versions": ["1.6.0", "1.5.0"],  # the old version too: its release lost the issue
            "event": "jira:issue_updated",
        },
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature": "sha256=" + "0" * 64},
        {"X-Hub-Signature": "sha1=" + "0" * 40},
        "wrong secret",
        "body changed",
    ],
)
def test_a_bad_signature_is_refused_and_stores_nothing(store: Store, headers: Any) -> None:
    body = json.dumps(UPDATED).encode()
    if headers == "wrong secret":
        headers = signed(body, secret="guess")
    elif headers == "body changed":
        headers = signed(body)
        body = body.replace(b"PAY-12", b"PAY-13")

    status, reason = receive(store, Handler(config()), headers, body, {})

    assert status == 401 and "X-Hub-Signature" in reason
    assert inbox(store) == []
    with pytest.raises(WebhookRejected):
        Handler(config())(headers, body)


def test_the_signature_header_name_is_case_insensitive() -> None:
    body = json.dumps(UPDATED).encode()
    digest = signed(body)["X-Hub-Signature"]

    assert Handler(config())({"x-hub-signature": digest.upper().replace("SHA256", "sha256")}, body)


def test_a_retried_delivery_is_stored_once(store: Store) -> None:
    body = json.dumps(UPDATED).encode()
    first = signed(body, **{"X-Atlassian-Webhook-Identifier": "9f2c"})
    retry = {**first, "X-Atlassian-Webhook-Retry": "1"}

    assert receive(store, Handler(config()), first, body, {}).status == 202
    again = receive(store, Handler(config()), retry, body, {})

    assert again.status == 202 and again.reason == "0 event(s) stored, 1 already known"
    assert len(inbox(store)) == 1


def test_without_the_identifier_the_body_keys_the_delivery(store: Store) -> None:
    body = json.dumps(UPDATED).encode()
    for _ in range(2):
        receive(store, Handler(config()), signed(body), body, {})

    [row] = inbox(store)
    assert row["dedupe_key"] == "jira:jira:issue_updated:10012:1764325800123"


def test_without_a_secret_unsigned_deliveries_are_accepted_and_signed_ones_refused() -> None:
    handler = Handler(config(webhook_secret=None))
    body = json.dumps(UPDATED).encode()

    assert handler({}, body)
    with pytest.raises(WebhookRejected) as refused:
        handler(signed(body), body)
    assert refused.value.status == 401


@pytest.mark.parametrize(
    ("change", "stored"),
    [
        ({"webhookEvent": "jira:issue_created", "changelog": None}, 1),
        ({"webhookEvent": "jira:issue_deleted", "changelog": None}, 1),
        ({"changelog": {"items": [{"field": "summary", "fromString": "a", "toString": "b"}]}}, 1),
        ({"changelog": {"items": [{"field": "status", "toString": "Done"}]}}, 0),
        ({"changelog": None}, 0),  # a comment-only update has no changelog
        ({"webhookEvent": "comment_created"}, 0),
        ({"webhookEvent": "jira:version_released", "issue": None}, 0),
        ({"issue": {**UPDATED["issue"], "key": "OPS-1", "fields": {"project": {"key": "OPS"}}}}, 0),
    ],
)
def test_only_changes_of_the_scope_are_stored(change: dict[str, Any], stored: int) -> None:
    body = json.dumps({**UPDATED, **change}).encode()

    assert len(Handler(config())(signed(body), body)) == stored


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"not json", 400), (b"[1, 2]", 422), (b'{"issue": {}}', 422)],
)
def test_malformed_bodies(body: bytes, status: int) -> None:
    with pytest.raises(WebhookRejected) as refused:
        Handler(config())(signed(body), body)
    assert refused.value.status == status


def test_an_issue_event_without_an_issue_is_unprocessable() -> None:
    body = json.dumps({**UPDATED, "issue": {"fields": {}}}).encode()
    with pytest.raises(WebhookRejected) as refused:
        Handler(config())(signed(body), body)
    assert refused.value.status == 422


# -- through the sandbox's webhooks --------------------------------------------------------


class BridgeRoute:
    """`POST /webhooks/jira` as the daemon serves it: `inbox.receive`, its status answered."""

    def __init__(self, store: Store, handler: Handler) -> None:
        self.answers: list[int] = []
        app = App("bridge")

        @app.route("POST", "/webhooks/jira")
        def hook(request: Request) -> Response:
            status, reason = receive(store, handler, dict(request.headers), request.body, {})
            self.answers.append(status)
            return Response(status, {"reason": reason})

        self.server = RunningServer(app)


@pytest.fixture
def route(store: Store, jira: JiraSandbox) -> Iterator[BridgeRoute]:
    bridge = BridgeRoute(store, Handler(config(url=jira.url)))
    bridge.server.start()
    yield bridge
    bridge.server.stop()


def add_to_version(jira: JiraSandbox, key: str, version: str) -> None:
    requests.put(
        f"{jira.url}/rest/api/2/issue/{key}",
        json={"update": {"fixVersions": [{"add": {"name": version}}]}},
        auth=("sandbox", "sandbox"),
        timeout=5,
    ).raise_for_status()


def delivered(jira: JiraSandbox, route: BridgeRoute, count: int) -> None:
    assert jira.wait_for_webhooks(5)
    deadline = time.time() + 5
    while len(route.answers) < count and time.time() < deadline:
        time.sleep(0.01)
    assert len(route.answers) == count


@pytest.mark.integration
def test_a_duplicate_delivery_is_processed_once(
    jira: JiraSandbox, route: BridgeRoute, store: Store
) -> None:
    jira.register_webhook(route.server.url + "/webhooks/jira", secret=SECRET)
    add_to_version(jira, "PAY-8", "1.5.0")
    delivered(jira, route, 1)

    assert jira.redeliver() == 202  # Jira retries: same body, same identifier
    delivered(jira, route, 2)

    [row] = inbox(store)
    assert row["kind"] == "scope" and row["payload"]["key"] == "PAY-8"
    assert row["payload"]["versions"] == ["1.5.0"]
    assert route.answers == [202, 202]


@pytest.mark.integration
def test_a_badly_signed_delivery_is_refused_with_401(
    jira: JiraSandbox, route: BridgeRoute, store: Store
) -> None:
    jira.register_webhook(route.server.url + "/webhooks/jira", secret="not the bridge's")
    add_to_version(jira, "PAY-8", "1.5.0")
    delivered(jira, route, 1)

    assert route.answers == [401]
    assert inbox(store) == []
