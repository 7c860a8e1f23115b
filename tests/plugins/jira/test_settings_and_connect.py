"""`plugins.jira` validation (a URL with credentials or without a host is a config error) and
`check_connection`: one `GET /rest/api/2/myself`, one attempt, a short timeout, Jira's own
message, never the token."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import requests
import responses

from itsm_bridge.errors import ConfigError
from itsm_bridge.plugins import load_plugins
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge_jira import JiraPlugin, Settings
from itsm_bridge_jira.connection import check

SITE = "https://acme.atlassian.net"
TOKEN = "ATATT-never-shown"


def settings(**overrides: Any) -> Settings:
    base = {"url": SITE, "user": "bridge@acme.com", "token": TOKEN, "project": "PAY"}
    return Settings.model_validate({**base, **overrides})


def load(**overrides: Any) -> None:
    section = {"url": SITE, "user": "bridge@acme.com", "token": TOKEN, "project": "PAY"}
    load_plugins(
        settings_from_mapping({"plugins": {"enabled": ["jira"], "jira": {**section, **overrides}}})
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "https://bridge:pw@acme.atlassian.net"}, "plugins.jira.url.*credentials"),
        ({"url": "https://"}, "plugins.jira.url.*has no host"),
        ({"url": "acme.atlassian.net"}, "plugins.jira.url.*site URL"),
        ({"url": f"{SITE}/?x=1"}, "plugins.jira.url.*query"),
        ({"project": "pay"}, "plugins.jira.project.*project key"),
        ({"user": ""}, "plugins.jira.user is required"),
        ({"version_name": "release"}, "version_name must contain {version}"),
        ({"version_name": "{service}-{tag}"}, r"not \{tag\}"),
        ({"scope_jql": "fixVersion = {id}"}, r"not \{id\}"),
        ({"resolution": " "}, "plugins.jira.resolution"),
        ({"typo": 1}, "plugins.jira.typo"),
        ({"page_size": 0}, "plugins.jira.page_size"),
    ],
)
def test_bad_settings_are_config_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        load(**overrides)
    assert "pw@" not in str(raised.value) and TOKEN not in str(raised.value)


def test_good_settings() -> None:
    config = settings(url="https://jira.acme.com/jira/", auth="bearer", user="")
    assert config.url == "https://jira.acme.com/jira"  # context path kept, slash dropped
    assert config.issue_types.demand == "Story" and config.issue_types.problem == "Bug"
    assert config.done_status == "Done" and config.backlog_status == "To Do"
    assert settings(done_status=None).done_status is None
    assert "token" not in repr(config) or TOKEN not in repr(config)


@responses.activate
def test_check_is_one_request_with_a_short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    timeouts: list[Any] = []
    original = requests.Session.request

    def spy(self: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        timeouts.append(kwargs.get("timeout"))
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    responses.get(f"{SITE}/rest/api/2/myself", json={"accountId": "5b10", "displayName": "Bridge"})
    config = settings(timeout_seconds=30)

    result = check(JiraPlugin(config, settings_from_mapping({})).client, config)

    assert result.ok and result.detail == "authenticated as Bridge"
    assert len(responses.calls) == 1 and timeouts == [(5.0, 10.0)]


@responses.activate
def test_bad_credentials_say_what_to_fix_once() -> None:
    responses.get(f"{SITE}/rest/api/2/myself", status=401,
                  body="Client must be authenticated to access this resource.")  # fmt: skip
    config = settings()

    result = check(JiraPlugin(config, settings_from_mapping({})).client, config)

    assert not result.ok and result.status == 401 and len(responses.calls) == 1
    assert result.detail.startswith("Client must be authenticated to access this resource.")
    assert "plugins.jira.user and token" in result.detail and TOKEN not in result.detail


@responses.activate
def test_a_login_page_is_not_a_jira() -> None:
    responses.get(f"{SITE}/rest/api/2/myself", body="<html>Log in</html>")
    config = settings()
    result = check(JiraPlugin(config, settings_from_mapping({})).client, config)
    assert not result.ok and "not as Jira's REST API" in result.detail


def test_an_unreachable_site_is_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = settings(url=f"http://127.0.0.1:{port}")
    result = check(JiraPlugin(config, settings_from_mapping({})).client, config)
    assert not result.ok and result.detail.startswith("unreachable:") and "\n" not in result.detail
