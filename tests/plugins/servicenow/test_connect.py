"""`check_connection`: one authenticated GET, one attempt, short timeout; and
`itsm-bridge check-config --connect` printing one line per system."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
import yaml

from itsm_bridge.cli import main
from itsm_bridge.models import ConnectionCheck
from itsm_bridge.plugins import PluginHost, load_plugins
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin

URL = "https://acme.service-now.com"
TABLE = f"{URL}/api/now/table/change_request"
PASSWORD = "pw-Never-Shown"


def host_for(url: str, password: str = "sandbox", user: str = "sandbox") -> PluginHost:
    return load_plugins(
        settings_from_mapping(
            {
                "plugins": {
                    "enabled": ["servicenow"],
                    "servicenow": {"url": url, "user": user, "password": password},
                }
            }
        )
    )


def check_of(host: PluginHost) -> ConnectionCheck:
    (answer,) = host.hook.check_connection()
    (check,) = answer
    assert isinstance(check, ConnectionCheck)
    return check


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- against the sandbox, through pluggy ------------------------------------------------------


@pytest.mark.integration
def test_hook_check_connection(snow: ServiceNowSandbox) -> None:
    snow.clear_log()
    check = check_of(host_for(snow.url))
    assert check.ok, check
    assert (check.plugin, check.system, check.url) == ("servicenow", "servicenow", snow.url)
    assert check.detail == "change_request readable"
    (request,) = snow.requests  # one request, nothing else
    assert (request.method, request.path) == ("GET", "/api/now/table/change_request")
    assert request.query["sysparm_limit"] == ["1"]
    assert request.query["sysparm_fields"] == ["sys_id"]
    assert request.query["sysparm_no_count"] == ["true"]
    assert request.headers.get("authorization", "").startswith("Basic ")


@pytest.mark.integration
def test_hook_check_connection_with_a_wrong_password(snow: ServiceNowSandbox) -> None:
    snow.clear_log()
    check = check_of(host_for(snow.url, password=PASSWORD))
    assert not check.ok
    assert check.status == 401
    assert check.detail.endswith("check plugins.servicenow.user/password")
    assert "User Not Authenticated" in check.detail
    assert PASSWORD not in check.detail
    assert len(snow.requests) == 1  # never retried


def test_unreachable_instance_is_one_attempt() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    check = check_of(host_for(url, password=PASSWORD))
    assert not check.ok
    assert check.status is None
    assert check.detail.startswith("unreachable: ")
    assert "Connection refused" in check.detail
    assert "HTTPConnectionPool" not in check.detail  # urllib3's wrapping is dropped


# -- answers of a real instance, mocked -------------------------------------------------------


def _plugin(**overrides: Any) -> ServiceNowPlugin:
    config = ServiceNowPlugin.Settings.model_validate(
        {"url": URL, "user": "svc_bridge", "password": PASSWORD, **overrides}
    )
    return ServiceNowPlugin(config, settings_from_mapping({}))


def _error(message: str, detail: str) -> dict[str, Any]:
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


@responses.activate
def test_ok_even_when_the_first_row_is_hidden_by_an_acl() -> None:
    # sysparm_limit is applied before ACLs: an empty page still proves the credentials
    responses.get(TABLE, json={"result": []})
    (check,) = _plugin().check_connection()
    assert check.ok
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (401, _error("User Not Authenticated", "Required to provide Auth information"), "user/"),
        (403, _error("User Not Authorized", "Not permitted"), "svc_bridge the roles to read"),
        (404, _error("Invalid table change_request", ""), "a ServiceNow instance?"),
        (503, _error("Service Unavailable", ""), "Service Unavailable"),
        (429, _error("Rate limit exceeded", ""), "Rate limit exceeded"),
    ],
)
@responses.activate
def test_failed_answers_are_reported_once_each(
    status: int, body: dict[str, Any], words: str
) -> None:
    responses.get(TABLE, json=body, status=status)
    (check,) = _plugin().check_connection()
    assert not check.ok
    assert check.status == status
    assert words in check.detail
    assert body["error"]["message"] in check.detail  # ServiceNow's own message
    assert len(responses.calls) == 1  # no retry, not even on 429/503


@responses.activate
def test_password_echoed_by_a_server_is_masked() -> None:
    responses.get(TABLE, json=_error(f"bad login for svc_bridge/{PASSWORD}", ""), status=500)
    (check,) = _plugin().check_connection()
    assert not check.ok
    assert "svc_bridge/***" in check.detail
    assert PASSWORD not in check.detail


@responses.activate
def test_a_login_page_is_not_a_connection() -> None:
    responses.get(TABLE, body="<html>Sign in with SSO</html>", content_type="text/html")
    (check,) = _plugin().check_connection()
    assert not check.ok
    assert check.status == 200
    assert "not as the Table API" in check.detail


@responses.activate
def test_request_is_narrow_and_never_carries_the_password_in_the_url() -> None:
    responses.get(TABLE, json={"result": [{"sys_id": "1"}]})
    _plugin().check_connection()
    (call,) = responses.calls
    assert call.request.url is not None
    assert PASSWORD not in call.request.url
    query = call.request.params
    assert query == {
        "sysparm_limit": "1",
        "sysparm_fields": "sys_id",
        "sysparm_no_count": "true",
        "sysparm_suppress_pagination_header": "true",
    }


def test_timeout_is_short_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = _plugin(timeout_seconds=30)
    seen: list[Any] = []

    def slow(method: str, url: str, **kwargs: Any) -> requests.Response:
        seen.append(kwargs.get("timeout"))
        raise requests.ReadTimeout("read timed out")

    monkeypatch.setattr(plugin.client.session, "request", slow)
    (check,) = plugin.check_connection()
    assert not check.ok
    assert check.detail == "unreachable: no answer within 10 s"
    assert seen == [10.0]  # one attempt, at most 10 seconds


# -- check-config --connect -------------------------------------------------------------------


def _config(tmp_path: Path, url: str, password: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database": f"sqlite:///{tmp_path}/bridge.db",
                "plugins": {
                    "enabled": ["servicenow"],
                    "servicenow": {"url": url, "user": "sandbox", "password": password},
                },
            }
        )
    )
    return path


@pytest.mark.integration
@pytest.mark.parametrize(
    ("password", "code", "line"),
    [
        ("sandbox", 0, "servicenow {url} ok (change_request readable)"),
        (
            PASSWORD,
            1,
            "servicenow {url} 401 User Not Authenticated: Required to provide Auth information; "
            "check plugins.servicenow.user/password",
        ),
    ],
    ids=["ok", "401"],
)
def test_check_config_connect(
    snow: ServiceNowSandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    password: str,
    code: int,
    line: str,
) -> None:
    config = _config(tmp_path, snow.url, password)
    snow.clear_log()
    assert main(["-c", str(config), "check-config", "--connect"]) == code
    out = capsys.readouterr()
    assert out.out.splitlines()[-1] == line.format(url=snow.url)
    assert PASSWORD not in out.out + out.err
    assert len(snow.requests) == 1
    assert main(["-c", str(config), "check-config"]) == 0  # without --connect: no request
    assert len(snow.requests) == 1


def test_check_config_connect_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["-c", str(_config(tmp_path, url, PASSWORD)), "check-config", "--connect"]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"servicenow {url} unreachable: ")


def test_a_check_that_raises_is_a_failed_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: ServiceNowPlugin) -> list[ConnectionCheck]:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(ServiceNowPlugin, "check_connection", _hookimpl(broken))
    config = _config(tmp_path, URL, PASSWORD)
    assert main(["-c", str(config), "check-config", "--connect"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "servicenow check failed: RuntimeError: plugin bug"
    )


def _hookimpl(fn: Callable[..., Any]) -> Callable[..., Any]:
    from itsm_bridge.hookspecs import hookimpl

    return hookimpl(fn)  # type: ignore[no-any-return]
