"""Optional deployment silences: created when a release starts implementing, expired when it
leaves that state, never covering an alert that counts, never raising."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import responses

from itsm_bridge.models import Event, Release
from itsm_bridge_alertmanager.client import AlertmanagerClient
from itsm_bridge_alertmanager.settings import Settings
from itsm_bridge_alertmanager.silences import body, on_change
from plugins.alertmanager.conftest import URL, settings

SILENCES = f"{URL}/api/v2/silences"
NOW = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)
RELEASE = Release(id="rel-20261128-0000abcd", service="payments", version="1.4.0")
SILENCE = {"matchers": [{"name": "alertname", "value": "TargetDown|InstanceRestart",
                         "is_regex": True}], "minutes": 90}  # fmt: skip


def config(**overrides: Any) -> Settings:
    return settings(silence=SILENCE, service_map={"pay-api": "payments"}, **overrides)


def transition(old: str, new: str) -> Event:
    return Event(at=NOW, actor="itsm-bridge", kind="state", message="",
                 evidence={"from": old, "to": new})  # fmt: skip


def ours(state: str, silence_id: str = "6f1c") -> dict[str, Any]:
    return {"id": silence_id, "createdBy": "itsm-bridge", "status": {"state": state},
            "comment": f"itsm-bridge {RELEASE.id}: deployment of payments 1.4.0"}  # fmt: skip


def change(event: Event, cfg: Settings | None = None) -> None:
    cfg = cfg or config()
    on_change(AlertmanagerClient(cfg.url, sleep=lambda s: None), cfg, RELEASE, event, NOW)


def test_the_silence_never_covers_an_alert_that_counts() -> None:
    assert body(config(), RELEASE, NOW) == {
        "matchers": [
            {"name": "alertname", "value": "TargetDown|InstanceRestart", "isRegex": True,
             "isEqual": True},
            {"name": "service", "value": "payments|pay-api", "isRegex": True, "isEqual": True},
            {"name": "severity", "value": "critical", "isRegex": True, "isEqual": False},
        ],
        "startsAt": "2026-11-28T22:00:00Z",
        "endsAt": "2026-11-28T23:30:00Z",
        "createdBy": "itsm-bridge",
        "comment": "itsm-bridge rel-20261128-0000abcd: deployment of payments 1.4.0",
    }  # fmt: skip
    wider = body(config(min_severity="warning"), RELEASE, NOW)["matchers"][-1]
    assert wider["value"] == "warning|critical"


@responses.activate
def test_entering_implementing_creates_one_silence() -> None:
    responses.get(SILENCES, json=[ours("expired"), {**ours("active"), "comment": "someone else"}])
    post = responses.post(SILENCES, json={"silenceID": "9a7e"})
    change(transition("scheduled", "implementing"))
    assert post.call_count == 1
    assert json.loads(post.calls[0].request.body) == body(config(), RELEASE, NOW)
    responses.replace(responses.GET, SILENCES, json=[ours("active")])
    change(transition("scheduled", "implementing"))  # delivered again: found, not created
    assert post.call_count == 1


@responses.activate
@pytest.mark.parametrize("new", ["verifying", "failed", "cancelled"])
def test_leaving_implementing_expires_it(new: str) -> None:
    responses.get(SILENCES, json=[ours("pending", "p2"), ours("active", "a1"), ours("expired")])
    deleted = [
        responses.delete(f"{URL}/api/v2/silence/p2", status=404),  # already gone: fine
        responses.delete(f"{URL}/api/v2/silence/a1"),
    ]
    change(transition("implementing", new))
    assert [d.call_count for d in deleted] == [1, 1]
    assert len(responses.calls) == 3  # the expired one is left alone


@responses.activate
def test_other_events_and_transitions_call_nothing() -> None:
    change(transition("verifying", "failed"))
    change(Event(at=NOW, actor="x", kind="step", message="", evidence={"to": "implementing"}))
    cfg = settings()  # no silence configured: the plugin's hook does nothing either
    on_change(AlertmanagerClient(cfg.url), config(), RELEASE, transition("verifying", "succeeded"))
    assert len(responses.calls) == 0


@responses.activate
def test_a_failure_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    responses.get(SILENCES, json=[])
    responses.post(SILENCES, status=400, json="start time must be before end time")
    with caplog.at_level(logging.WARNING):
        change(transition("scheduled", "implementing"))
    assert "start time must be before end time" in caplog.text
    responses.replace(responses.GET, SILENCES, status=503, body="down")
    change(transition("implementing", "verifying"), config(retries=1))
    assert "HTTP 503" in caplog.text
