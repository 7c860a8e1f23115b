"""The client over real HTTP through pysnow, against the sandbox: rate limits and faults."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from itsm_bridge.http import HTTPTransientError
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin

GROUPS = "/api/now/table/sys_user_group"


def test_429_with_retry_after_is_honoured(
    snow: ServiceNowSandbox, make_plugin: Callable[..., ServiceNowPlugin]
) -> None:
    plugin = make_plugin()
    waits: list[float] = []
    plugin.client._retry.sleep = waits.append
    snow.fail_next("GET", GROUPS, 429, headers={"Retry-After": "3"})
    rows = plugin.client.query("sys_user_group", "name=Change Management", ["sys_id", "name"])
    assert [r["name"] for r in rows] == ["Change Management"]
    assert waits == [3.0]
    answered = [r.status for r in snow.requests_to("GET", GROUPS)]
    assert answered == [429, 200]


def test_persistent_5xx_gives_up_as_transient(
    snow: ServiceNowSandbox, make_plugin: Callable[..., ServiceNowPlugin]
) -> None:
    plugin = make_plugin(retries=3)
    snow.fail_next("GET", GROUPS, 503, count=5)
    with pytest.raises(HTTPTransientError, match="HTTP 503"):
        plugin.client.query("sys_user_group", "name=Change Management", ["sys_id"])
    assert len(snow.requests_to("GET", GROUPS)) == 3


def test_429_on_create_is_not_retried(
    snow: ServiceNowSandbox, make_plugin: Callable[..., ServiceNowPlugin]
) -> None:
    plugin = make_plugin()
    snow.fail_next("POST", "/api/now/table/incident", 429, headers={"Retry-After": "1"})
    with pytest.raises(HTTPTransientError) as err:
        plugin.client.create("incident", {"short_description": "x"})
    assert err.value.retry_after == 1.0
    assert len(snow.requests_to("POST", "/api/now/table/incident")) == 1


def test_rows_hidden_by_acls_leave_short_pages_and_paging_goes_on(
    snow: ServiceNowSandbox, make_plugin: Callable[..., ServiceNowPlugin]
) -> None:
    plugin = make_plugin(page_size=3)
    groups = [snow.insert("sys_user_group", name=f"Team {n:02}") for n in range(10)]
    for n in (0, 1, 2, 4):  # the whole first page and one row of the second
        snow.store.hide(groups[n]["sys_id"])
    snow.clear_log()

    rows = plugin.client.query("sys_user_group", "nameSTARTSWITHTeam^ORDERBYname", ["name"])

    assert [r["name"] for r in rows] == [f"Team {n:02}" for n in (3, 5, 6, 7, 8, 9)]
    gets = snow.requests_to("GET", GROUPS)
    assert [r.query["sysparm_offset"] for r in gets] == [["0"], ["3"], ["6"], ["9"]]
    assert [r.status for r in gets] == [200, 200, 200, 200]
