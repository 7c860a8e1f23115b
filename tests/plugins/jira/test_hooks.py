"""Every hook of the Jira plugin called the way the core calls it: through pluggy, with the
plugin loaded from its entry point and configured from the bridge settings, against the
sandbox in both deployments."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from itsm_bridge.models import Event, Release, WorkItem
from itsm_bridge.plugins import PluginHost, load_plugins
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge_sandbox.jira import JiraSandbox

pytestmark = pytest.mark.integration


@pytest.fixture
def host(jira: JiraSandbox) -> PluginHost:
    return load_plugins(
        settings_from_mapping(
            {
                "plugins": {
                    "enabled": ["jira"],
                    "jira": {
                        "url": jira.url,
                        "user": "sandbox",
                        "token": "sandbox",
                        "project": "PAY",
                        "webhook_secret": "hook-secret",
                    },
                },
                "windows": {"timezone": "Europe/Berlin"},
            }
        )
    )


def collect(register_hook: Callable[..., Any]) -> dict[str, tuple[Any, ...]]:
    found: dict[str, tuple[Any, ...]] = {}
    register_hook(register=lambda name, *rest: found.__setitem__(name, rest))
    return found


def test_hook_add_to_backlog(jira: JiraSandbox, host: PluginHost) -> None:
    item = WorkItem(
        source_system="servicenow", source_kind="problem", source_id="p" * 32,
        number="PRB0040009", title="Refund twice", url="https://acme.service-now.com/p",
    )  # fmt: skip
    backlog = host.hook.add_to_backlog(item=item)
    assert backlog.system == "jira" and backlog.kind == "Bug"
    assert host.hook.add_to_backlog(item=item).key == backlog.key


def test_hook_release_scope(host: PluginHost, make_release: Callable[..., Release]) -> None:
    items = host.hook.release_scope(release=make_release(version="1.4.0"))
    assert [(i.key, i.kind) for i in items] == [
        ("PAY-9", "Story"), ("PAY-10", "Bug"), ("PAY-11", "Story"),
    ]  # fmt: skip


def test_hook_return_to_backlog(
    jira: JiraSandbox, host: PluginHost, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    items = host.hook.release_scope(release=release)
    host.hook.return_to_backlog(release=release, items=items, reason="smoke test failed")
    assert {jira.issue(i.key)["fields"]["status"]["name"] for i in items} == {"To Do"}


def test_hook_release_changed(
    jira: JiraSandbox, host: PluginHost, make_release: Callable[..., Release]
) -> None:
    event = Event(actor="core", kind="state", message="verifying -> succeeded",
                  evidence={"from": "verifying", "to": "succeeded"})  # fmt: skip
    host.hook.release_changed(release=make_release(version="1.4.0"), event=event)
    assert jira.version("PAY", "1.4.0")["released"] is True  # type: ignore[index]


def test_hook_register_pollers(host: PluginHost) -> None:
    pollers = collect(host.hook.register_pollers)
    interval, poll = pollers["jira"]
    assert interval == 60.0
    events, cursor = poll(None)
    assert cursor is not None and all(e["kind"] == "scope" for e in events)


def test_hook_register_webhooks(host: PluginHost) -> None:
    (handler,) = collect(host.hook.register_webhooks)["jira"]
    body = json.dumps(
        {"webhookEvent": "jira:issue_created", "timestamp": 1,
         "issue": {"id": "1", "key": "PAY-99", "fields": {"project": {"key": "PAY"}}}}
    ).encode()  # fmt: skip
    digest = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    [event] = handler({"X-Hub-Signature": f"sha256={digest}"}, body, {})
    assert event["kind"] == "scope" and event["payload"]["key"] == "PAY-99"


def test_hook_check_connection(jira: JiraSandbox, host: PluginHost) -> None:
    jira.clear_log()
    [[check]] = host.hook.check_connection()
    assert check.ok and check.plugin == "jira" and "Sandbox User" in check.detail
    assert [(r.method, r.path) for r in jira.requests_to()] == [("GET", "/rest/api/2/myself")]
