"""`check_connection`: `GET /api/v2/status` and what the answer means."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import responses

from itsm_bridge_alertmanager.client import AlertmanagerClient
from itsm_bridge_alertmanager.connection import check
from plugins.alertmanager.conftest import URL, settings

STATUS = f"{URL}/api/v2/status"
ANSWER = {
    "cluster": {"status": "disabled", "peers": []},
    "versionInfo": {"version": "0.25.0", "revision": "0.25.0-1+b4", "branch": "debian/sid",
                    "buildUser": "team", "buildDate": "20230409", "goVersion": "go1.19.8"},
    "config": {"original": "global: ..."},
    "uptime": "2026-11-28T05:00:00.000Z",
}  # fmt: skip


def run(**overrides: Any) -> Any:
    config = settings(**overrides)
    return check(AlertmanagerClient(config.url), config)


@responses.activate
def test_a_reachable_alertmanager() -> None:
    responses.get(STATUS, json=ANSWER)
    result = run()
    assert (result.ok, result.status, result.plugin, result.url) == (True, 200, "alertmanager", URL)
    assert result.detail == "Alertmanager 0.25.0, cluster disabled; webhooks and polling every 60 s"
    assert len(responses.calls) == 1


@responses.activate
@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"poll_seconds": 0}, "webhooks only (poll_seconds: 0)"),
        ({"webhook_token": None}, "polling every 60 s only (no webhook_token: webhooks refused)"),
        ({"webhook_token": None, "poll_seconds": 0}, "no alert arrives"),
    ],
)
def test_the_detail_says_which_paths_are_on(overrides: dict[str, Any], detail: str) -> None:
    responses.get(STATUS, json=ANSWER)
    result = run(**overrides)
    assert result.ok
    assert result.detail.endswith(detail)


@responses.activate
@pytest.mark.parametrize(
    ("answer", "status", "detail"),
    [
        ({"status": 404, "body": "404 page not found"}, 404, "no API v2 here"),
        ({"status": 401, "body": "Unauthorized"}, 401, "asks for credentials"),
        ({"status": 403, "body": "Forbidden"}, 403, "asks for credentials"),
        ({"status": 500, "json": "boom"}, 500, "HTTP 500: boom"),
        ({"body": "<html>sign in</html>"}, 200, "not Alertmanager's API"),
        ({"json": {"status": "ok"}}, 200, "not Alertmanager's API"),
        ({"body": requests.ConnectionError("refused")}, None, "unreachable: ConnectionError"),
        ({"body": requests.ReadTimeout("slow")}, None, "no answer within 10 s"),
    ],
)
def test_what_is_wrong(answer: dict[str, Any], status: int | None, detail: str) -> None:
    responses.get(STATUS, **answer)
    result = run()
    assert not result.ok
    assert result.status == status
    assert detail in result.detail
    assert "example-token" not in result.detail
