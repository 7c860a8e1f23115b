"""Every hook of the Alertmanager plugin called the way the core calls it: through pluggy, with
the plugin loaded from its entry point and configured from the bridge settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import responses

from itsm_bridge.inbox import webhook_handlers
from itsm_bridge.models import Event, Release
from itsm_bridge.plugins import PluginHost, load_plugins
from itsm_bridge.pollers import registered_pollers
from itsm_bridge.settings import settings_from_mapping
from plugins.alertmanager.conftest import TOKEN, URL, delivery, sample


def host(**section: Any) -> PluginHost:
    return load_plugins(
        settings_from_mapping(
            {
                "plugins": {
                    "enabled": ["alertmanager"],
                    "alertmanager": {"url": URL, "webhook_token": TOKEN, **section},
                },
                "services": {"payments": {"ci": "payments-api"}},
            }
        )
    )


def test_hook_register_webhooks() -> None:
    handler = webhook_handlers(host())["alertmanager"]
    headers, body = delivery()
    events = handler(headers, json.dumps(body).encode(), {})
    assert [e["kind"] for e in events] == ["signal"]


@responses.activate
def test_hook_register_pollers() -> None:
    (poller,) = registered_pollers(host(poll_seconds=15))
    assert (poller.name, poller.interval_seconds) == ("alertmanager", 15.0)
    responses.get(f"{URL}/api/v2/alerts", json=sample("api-v2-alerts.json"))
    events, _ = poller.poll(None)
    assert [e["payload"]["evidence"]["alertname"] for e in events] == ["HighErrorRate"]
    assert registered_pollers(host(poll_seconds=0)) == []


@responses.activate
def test_hook_check_connection() -> None:
    responses.get(f"{URL}/api/v2/status", json={"versionInfo": {"version": "0.25.0"}})
    (result,) = host().hook.check_connection()[0]
    assert result.ok
    assert result.detail.startswith("Alertmanager 0.25.0, cluster unknown")


@responses.activate
def test_hook_release_changed() -> None:
    release = Release(id="rel-20261128-0000abcd", service="payments", version="1.4.0")
    event = Event(
        at=datetime(2026, 11, 28, 22, tzinfo=UTC),
        actor="itsm-bridge",
        kind="state",
        message="scheduled -> implementing",
        evidence={"from": "scheduled", "to": "implementing"},
    )
    host().hook.release_changed(release=release, event=event)
    assert len(responses.calls) == 0  # no silence configured
    responses.get(f"{URL}/api/v2/silences", json=[])
    post = responses.post(f"{URL}/api/v2/silences", json={"silenceID": "9a7e"})
    silence = {"matchers": [{"name": "alertname", "value": "TargetDown"}]}
    host(silence=silence).hook.release_changed(release=release, event=event)
    assert post.call_count == 1
