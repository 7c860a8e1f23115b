"""`POST /webhooks/jenkins`: the Notification plugin's JSON, the token wherever the plugin can
carry it, FINALIZED acted on, one event per build and phase."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from itsm_bridge.errors import WebhookRejected
from itsm_bridge_jenkins import JenkinsPlugin
from itsm_bridge_jenkins.webhook import Handler

SECRET = "hook-secret-1234"
RID = "rel-20261128-0000abcd"


def payload(phase: str = "FINALIZED", number: int = 7, **build: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "full_url": f"https://ci.example.com/job/payments/job/deploy/{number}/",
        "number": number,
        "queue_id": 41,
        "timestamp": 1700000000000,
        "duration": 63400,
        "phase": phase,
        "url": f"job/payments/job/deploy/{number}/",
        "scm": {"changes": [], "culprits": []},
        "parameters": {
            "RELEASE_ID": RID,
            "SERVICE": "payments",
            "VERSION": "1.4.0",
            "CHANGE": "CHG0030001",
            "TASK": "deploy",
            "DB_PASSWORD_HINT": "not stored",
        },
        "log": "Started by user bridge\n",
        "notes": "",
        "artifacts": {},
    }
    if phase in ("COMPLETED", "FINALIZED"):
        body["status"] = "SUCCESS"
    body.update(build)
    return {
        "name": "deploy",
        "display_name": "deploy",
        "url": "job/payments/job/deploy/",
        "build": body,
    }


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.fixture
def handler(make_plugin: Callable[..., JenkinsPlugin]) -> Handler:
    registered: dict[str, Any] = {}
    make_plugin(webhook_token=SECRET).register_webhooks(
        register=lambda name, h: registered.update({name: h})
    )
    assert set(registered) == {"jenkins"}
    return registered["jenkins"]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_a_finalized_build_is_one_job_event_for_its_release(handler: Handler) -> None:
    [event] = handler({}, encode(payload()), {"token": SECRET})
    assert event == {
        "source": "jenkins",
        "kind": "job",
        "dedupe_key": "jenkins:payments/deploy:7:FINALIZED",
        "release_id": RID,
        "payload": {
            "job": "payments/deploy",
            "number": 7,
            "phase": "FINALIZED",
            "status": "SUCCESS",
            "url": "https://ci.example.com/job/payments/job/deploy/7/",
            "queue_id": 41,
            "parameters": {
                "RELEASE_ID": RID,
                "TASK": "deploy",
                "SERVICE": "payments",
                "VERSION": "1.4.0",
            },
        },
    }
    assert "not stored" not in json.dumps(event) and "Started by" not in json.dumps(event)


@pytest.mark.parametrize("phase", ["QUEUED", "STARTED", "COMPLETED"])
def test_other_phases_are_accepted_and_store_nothing(handler: Handler, phase: str) -> None:
    assert handler({}, encode(payload(phase)), {"token": SECRET}) == []


def test_one_key_per_build_and_phase(handler: Handler) -> None:
    first = handler({}, encode(payload(number=7)), {"token": SECRET})
    again = handler({}, encode(payload(number=7)), {"token": SECRET})
    other = handler({}, encode(payload(number=8)), {"token": SECRET})
    assert first[0]["dedupe_key"] == again[0]["dedupe_key"]
    assert other[0]["dedupe_key"] == "jenkins:payments/deploy:8:FINALIZED"


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, {"token": SECRET}),  # https://bridge/webhooks/jenkins?token=...
        (basic("jenkins", SECRET), {}),  # https://jenkins:<token>@bridge/webhooks/jenkins
        ({"authorization": f"Bearer {SECRET}"}, {}),  # a proxy or httpRequest step
        (basic("jenkins", SECRET), {"token": "wrong"}),  # one right offer is enough
    ],
)
def test_the_token_travels_where_the_plugin_can_carry_it(
    handler: Handler, headers: dict[str, str], query: dict[str, str]
) -> None:
    assert len(handler(headers, encode(payload()), query)) == 1


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, {}),
        ({}, {"token": "wrong"}),
        (basic("jenkins", "wrong"), {}),
        (basic(SECRET, ""), {}),  # the token as the user name is not the password
        ({"Authorization": "Basic %%%"}, {}),
        ({"Authorization": f"Token {SECRET}"}, {}),
    ],
)
def test_a_missing_or_wrong_token_is_refused(
    handler: Handler, headers: dict[str, str], query: dict[str, str]
) -> None:
    with pytest.raises(WebhookRejected) as caught:
        handler(headers, encode(payload()), query)
    assert caught.value.status == 401
    assert SECRET not in caught.value.reason


def test_without_a_webhook_token_deliveries_are_refused(
    make_plugin: Callable[..., JenkinsPlugin],
) -> None:
    with pytest.raises(WebhookRejected, match=r"set plugins\.jenkins\.webhook_token") as caught:
        Handler(make_plugin().config)({}, encode(payload()), {"token": ""})
    assert caught.value.status == 401


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"<jobState><name>deploy</name></jobState>", 400, "not JSON"),
        (b"[1, 2]", 422, "no build object"),
        (encode({"name": "deploy"}), 422, "no build object"),
        (encode(payload(phase="DONE")), 422, "build.phase 'DONE'"),
        (encode(payload(number="7")), 422, "build.number"),
        (encode(payload(number=True)), 422, "build.number"),
        (encode({"build": {"phase": "FINALIZED", "number": 3}}), 422, "the job's url"),
    ],
)
def test_a_malformed_body_is_refused_with_a_reason(
    handler: Handler, body: bytes, status: int, reason: str
) -> None:
    with pytest.raises(WebhookRejected) as caught:
        handler({}, body, {"token": SECRET})
    assert caught.value.status == status
    assert reason in caught.value.reason


def test_a_build_of_no_release_wakes_no_particular_release(handler: Handler) -> None:
    document = payload()
    document["build"]["parameters"] = {"RELEASE_ID": "nightly"}
    [event] = handler({}, encode(document), {"token": SECRET})
    assert "release_id" not in event
    del document["build"]["parameters"]
    [event] = handler({}, encode(document), {"token": SECRET})
    assert "release_id" not in event and event["payload"]["parameters"] == {}
