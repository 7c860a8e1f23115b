"""`POST /webhooks/alertmanager`: the captured notifications, authentication, malformed bodies,
and what is stored (through `inbox.receive`, as the daemon calls it)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from itsm_bridge.errors import WebhookRejected
from itsm_bridge.inbox import receive
from itsm_bridge.models import Signal
from itsm_bridge.store import Store, open_store
from itsm_bridge.store import schema as t
from itsm_bridge_alertmanager.settings import Settings
from itsm_bridge_alertmanager.webhook import Handler
from plugins.alertmanager.conftest import TOKEN, delivery, settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def call(config: Settings, body: Any, headers: dict[str, str] | None = None) -> list[dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Handler(config)(AUTH if headers is None else headers, raw, {})


def rejected(config: Settings, body: Any, headers: dict[str, str] | None = None) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        call(config, body, headers)
    return caught.value


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path}/bridge.db")


def inbox(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(t.inbox.c.dedupe_key)).scalars())


def test_the_captured_firing_notification_is_one_signal(config: Settings) -> None:
    headers, body = delivery()
    events = call(config, body, headers)  # the headers as Alertmanager sent them
    assert len(events) == 1  # HighLatency is a warning: below min_severity (critical)
    event = events[0]
    key = "1d31034106d44412:2026-11-28T05:27:57.100Z"
    assert event["source"] == "alertmanager"
    assert event["kind"] == "signal"
    assert event["dedupe_key"] == f"alertmanager:{key}:firing"
    assert "release_id" not in event
    signal = Signal.model_validate(event["payload"])
    assert signal.key == key
    assert signal.service == "payments"
    assert signal.severity == "critical"
    assert signal.at.isoformat() == "2026-11-28T05:27:57.100000+00:00"
    assert signal.summary == "HighErrorRate: 5xx ratio above 5% for 2m"
    assert signal.evidence == {
        "status": "firing",
        "alertname": "HighErrorRate",
        "fingerprint": "1d31034106d44412",
        "severity": "critical",
        "labels": {
            "alertname": "HighErrorRate",
            "env": "prod",
            "service": "payments",
            "severity": "critical",
        },
        "summary": "5xx ratio above 5% for 2m",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=rate",
        "runbook": "https://runbooks.example/payments/5xx",
        "startsAt": "2026-11-28T05:27:57.100Z",
        "receiver": "bridge",
        "externalURL": "http://vm:19093",
    }


def test_the_resolved_notification_shares_the_signal_key_not_the_dedupe_key(
    config: Settings,
) -> None:
    firing = call(config, delivery()[1])[0]
    resolved = call(config, delivery("webhook-resolved.json")[1])[0]
    assert resolved["payload"]["key"] == firing["payload"]["key"]
    assert resolved["dedupe_key"] == firing["dedupe_key"].replace(":firing", ":resolved")
    assert resolved["payload"]["evidence"]["status"] == "resolved"
    assert resolved["payload"]["evidence"]["endsAt"] == "2026-11-28T05:28:00.000Z"
    assert "endsAt" not in firing["payload"]["evidence"]  # the zero time of a firing alert


def test_min_severity_and_an_ordered_list_of_severities() -> None:
    body = delivery()[1]
    assert [e["payload"]["evidence"]["alertname"] for e in call(settings(), body)] == [
        "HighErrorRate"
    ]
    warning = call(settings(min_severity="warning"), body)
    assert [e["payload"]["severity"] for e in warning] == ["critical", "warning"]
    custom = settings(severities=["warning", "error", "critical", "page"], min_severity="error")
    body["alerts"][0]["labels"]["severity"] = "page"
    body["alerts"][1]["labels"]["severity"] = "error"
    assert [e["payload"]["severity"] for e in call(custom, body)] == ["critical", "warning"]
    body["alerts"][0]["labels"]["severity"] = "unknown"
    del body["alerts"][1]["labels"]["severity"]
    assert call(custom, body) == []  # an unknown or missing severity never counts


def test_service_label_map_and_environment() -> None:
    body = delivery()[1]
    mapped = call(settings(service_label="app", service_map={"pay-api": "payments"}), body)
    assert mapped == []  # no `app` label: nothing names a service
    for alert in body["alerts"]:
        alert["labels"]["app"] = "pay-api"
    mapped = call(settings(service_label="app", service_map={"pay-api": "payments"}), body)
    assert [e["payload"]["service"] for e in mapped] == ["payments"]
    unmapped = call(settings(service_label="app"), body)
    assert [e["payload"]["service"] for e in unmapped] == ["pay-api"]
    assert len(call(settings(env="prod"), body)) == 1
    assert call(settings(env="staging"), body) == []
    del body["alerts"][0]["labels"]["env"]
    assert call(settings(env="prod"), body) == []  # no env label: not that environment


@pytest.mark.parametrize(
    ("headers", "configured"),
    [
        ({}, TOKEN),
        ({"Authorization": "Bearer wrong-token"}, TOKEN),
        ({"Authorization": f"Bearer {TOKEN}x"}, TOKEN),
        ({"Authorization": f"Basic {TOKEN}"}, TOKEN),
        ({"Authorization": TOKEN}, TOKEN),
        (AUTH, None),  # no webhook_token: webhooks are refused
        ({"Authorization": "Bearer "}, ""),
    ],
)
def test_missing_or_wrong_token_is_401(headers: dict[str, str], configured: str | None) -> None:
    error = rejected(settings(webhook_token=configured), delivery()[1], headers)
    assert error.status == 401
    assert TOKEN not in error.reason


def test_the_scheme_and_header_name_are_case_insensitive(config: Settings) -> None:
    assert len(call(config, delivery()[1], {"authorization": f"bearer {TOKEN}"})) == 1


def test_a_body_that_is_not_json_is_400(config: Settings) -> None:
    assert rejected(config, b"receiver=bridge&status=firing").status == 400
    assert rejected(config, b"\xff\xfe").status == 400


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda b: b.pop("alerts"), "alerts: Field required"),
        (lambda b: b["alerts"][0].pop("fingerprint"), "alerts.0.fingerprint"),
        (lambda b: b["alerts"][1].pop("startsAt"), "alerts.1.startsAt"),
        (lambda b: b["alerts"][0].pop("labels"), "alerts.0.labels"),
        (lambda b: b["alerts"][0].update(status="pending"), "alerts.0.status"),
        (lambda b: b["alerts"][0].update(startsAt="2026-11-28T05:27:57"), "alerts.0.startsAt"),
        (lambda b: b["alerts"][0]["labels"].update(severity=2), "alerts.0.labels.severity"),
        (lambda b: b.update(alerts={"status": "firing"}), "alerts:"),
    ],
)
def test_a_notification_missing_what_it_needs_is_422(
    config: Settings, change: Any, where: str
) -> None:
    body = delivery()[1]
    change(body)
    error = rejected(config, body)
    assert error.status == 422
    assert error.reason.startswith(f"not an Alertmanager notification: {where}")
    assert "05:27:57" not in error.reason  # the location, never the value


def test_json_that_is_not_an_object_is_422(config: Settings) -> None:
    error = rejected(config, [delivery()[1]])
    assert error.status == 422
    assert error.reason.startswith("not an Alertmanager notification: the body: ")


def test_the_key_is_the_instant_in_utc_whatever_the_zone(config: Settings) -> None:
    body = delivery()[1]
    body["alerts"][0]["startsAt"] = "2026-11-28T07:27:57.100823157+02:00"  # e.g. Grafana's
    (event,) = call(config, body)
    assert event["payload"]["key"] == "1d31034106d44412:2026-11-28T05:27:57.100Z"


def test_unknown_fields_are_tolerated_and_optional_ones_may_be_absent(config: Settings) -> None:
    body = delivery()[1]
    body["notification_reason"] = "repeat_interval"
    body["alerts"][0]["silenceURL"] = "http://vm:19093/#/silences/new"
    for key in ("receiver", "groupLabels", "commonLabels", "externalURL", "version", "groupKey"):
        body.pop(key)
    for key in ("annotations", "endsAt", "generatorURL"):
        body["alerts"][0].pop(key)
    (event,) = call(config, body)
    assert event["payload"]["summary"] == "HighErrorRate"
    assert event["payload"]["evidence"]["runbook"] == ""


def test_truncated_alerts_are_logged(config: Settings, caplog: pytest.LogCaptureFixture) -> None:
    body = delivery()[1]
    body["truncatedAlerts"] = 3
    with caplog.at_level(logging.WARNING):
        call(config, body)
    assert "left 3 alert(s) out" in caplog.text
    caplog.clear()
    call(config, delivery()[1])
    assert "left" not in caplog.text


def test_the_same_payload_twice_is_stored_once(config: Settings, store: Store) -> None:
    headers, body = delivery()
    raw = json.dumps(body).encode()
    handler = Handler(config)
    assert receive(store, handler, headers, raw) == (202, "1 event(s) stored, 0 already known")
    assert receive(store, handler, headers, raw) == (202, "0 event(s) stored, 1 already known")
    resolved = json.dumps(delivery("webhook-resolved.json")[1]).encode()
    assert receive(store, Handler(config), headers, resolved).status == 202
    assert sorted(inbox(store)) == [
        "alertmanager:1d31034106d44412:2026-11-28T05:27:57.100Z:firing",
        "alertmanager:1d31034106d44412:2026-11-28T05:27:57.100Z:resolved",
    ]


def test_refused_deliveries_store_nothing(config: Settings, store: Store) -> None:
    headers, body = delivery()
    raw = json.dumps(body).encode()
    assert receive(store, Handler(config), {}, raw).status == 401
    assert receive(store, Handler(config), headers, b"{").status == 400
    assert receive(store, Handler(config), headers, b'{"alerts": [{}]}').status == 422
    assert inbox(store) == []
