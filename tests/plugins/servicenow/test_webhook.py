"""`POST /webhooks/servicenow`: the handler the daemon calls, tested directly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from itsm_bridge.errors import WebhookRejected
from itsm_bridge_servicenow import ServiceNowPlugin, Settings
from itsm_bridge_servicenow.webhook import Handler

TOKEN = "s3cret-token-value"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
TASK = {
    "sys_id": "a" * 32,
    "sys_class_name": "change_task",
    "number": "CTASK0010001",
    "state": "3",
    "close_code": "successful",
    "sys_updated_on": "2026-12-05 21:30:00",
    "sys_mod_count": "4",
}


def handler(token: str | None = TOKEN) -> Handler:
    return Handler(
        Settings.model_validate(
            {
                "url": "https://acme.service-now.com",
                "user": "u",
                "password": "p",
                "webhook_token": token,
            }
        )
    )


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def rejected(call: Any) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        call()
    return info.value


def test_a_stored_record_becomes_one_inbox_event() -> None:
    events = handler()(AUTH, body(TASK))
    assert events == [
        {
            "source": "servicenow",
            "kind": "change_task",
            "dedupe_key": f"servicenow:change_task:{'a' * 32}:4",
            "payload": TASK,
        }
    ]


def test_the_bridge_s_correlation_id_names_the_release() -> None:
    task = {**TASK, "correlation_id": "rel-20261205-1a2b3c4d:stop-database"}
    change = {**TASK, "sys_class_name": "change_request", "correlation_id": "rel-20261205-9f"}
    incident = {**TASK, "sys_class_name": "incident", "correlation_id": "rel-20261205-9f"}
    foreign = {**TASK, "correlation_id": "JIRA-12"}
    assert handler()(AUTH, body(task), {})[0]["release_id"] == "rel-20261205-1a2b3c4d"
    assert handler()(AUTH, body(change), {})[0]["release_id"] == "rel-20261205-9f"
    assert "release_id" not in handler()(AUTH, body(incident), {})[0]  # not ours to name
    assert "release_id" not in handler()(AUTH, body(foreign), {})[0]


@pytest.mark.parametrize(
    ("record", "version"),
    [
        ({"sys_updated_on": "2026-12-05 21:30:00"}, "2026-12-05 21:30:00"),
        ({"sys_mod_count": {"value": "7", "display_value": "7"}}, "7"),
    ],
)
def test_the_dedupe_key_takes_the_record_version(record: dict[str, Any], version: str) -> None:
    doc = {"sys_id": "b" * 32, "sys_class_name": "incident", **record}
    [event] = handler()(AUTH, body({"result": doc}))
    assert event["dedupe_key"] == f"servicenow:incident:{'b' * 32}:{version}"
    assert event["payload"] == doc


def test_a_record_without_a_version_is_keyed_by_its_content() -> None:
    doc = {
        "sys_id": "c" * 32,
        "sys_class_name": {"value": "change_request", "display_value": "Change Request"},
    }
    first = handler()(AUTH, body(doc))[0]["dedupe_key"]
    assert first.startswith(f"servicenow:change_request:{'c' * 32}:")
    assert handler()(AUTH, body(doc))[0]["dedupe_key"] == first
    assert handler()(AUTH, body({**doc, "state": "3"}))[0]["dedupe_key"] != first


def test_header_names_are_case_insensitive() -> None:
    assert handler()({"authorization": f"bearer {TOKEN}"}, body(TASK))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_bad_credentials_are_401_without_the_token_in_the_reason(
    headers: dict[str, str],
) -> None:
    error = rejected(lambda: handler()(headers, body(TASK)))
    assert error.status == 401
    assert TOKEN not in error.reason and TOKEN not in str(error)


@pytest.mark.parametrize("token", [None, ""])
def test_without_a_configured_token_every_call_is_401(token: str | None) -> None:
    error = rejected(lambda: handler(token)({"Authorization": "Bearer "}, body(TASK)))
    assert error.status == 401
    assert "plugins.servicenow.webhook_token" in error.reason


def test_authentication_comes_before_parsing() -> None:
    assert rejected(lambda: handler()({}, b"not json")).status == 401


@pytest.mark.parametrize("raw", [b"not json", b"{", b"\xff\xfe"])
def test_a_body_that_is_not_json_is_400(raw: bytes) -> None:
    error = rejected(lambda: handler()(AUTH, raw))
    assert (error.status, error.reason) == (400, "the body is not JSON")


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ([TASK], "not an object"),
        ({**TASK, "sys_class_name": "sys_user"}, "'sys_user' is not supported"),
        ({k: v for k, v in TASK.items() if k != "sys_class_name"}, "sys_class_name is missing"),
        ({**TASK, "sys_id": ""}, "has no sys_id"),
        ({"result": []}, "sys_class_name is missing"),
    ],
)
def test_json_that_is_not_a_supported_record_is_422(document: Any, words: str) -> None:
    error = rejected(lambda: handler()(AUTH, body(document)))
    assert error.status == 422
    assert words in error.reason


def test_the_plugin_registers_the_handler_under_its_name() -> None:
    config = Settings.model_validate(
        {
            "url": "https://acme.service-now.com",
            "user": "u",
            "password": "p",
            "webhook_token": TOKEN,
        }
    )
    from itsm_bridge.settings import settings_from_mapping

    plugin = ServiceNowPlugin(config, settings_from_mapping({}))
    registered: dict[str, Any] = {}
    plugin.register_webhooks(lambda name, fn: registered.setdefault(name, fn))
    assert list(registered) == ["servicenow"]
    assert registered["servicenow"](AUTH, body(TASK))[0]["kind"] == "change_task"
