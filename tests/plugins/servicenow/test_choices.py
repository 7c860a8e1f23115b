"""Choice values come from the instance (`sys_choice`), once per client, overridable in config.

Unit tests answer `sys_choice` reads with `responses` in the documented row shape (`name`,
`element`, `language`, `value`, `label`, `sequence`, `inactive`); integration tests renumber
the sandbox's choice lists and go through the plugin's hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from pydantic import SecretStr

from itsm_bridge.errors import ConfigError, NeedsHuman
from itsm_bridge.models import ExternalRecord, Release, Task, TaskStatus
from itsm_bridge.plugins import build
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin
from itsm_bridge_servicenow.client import ServiceNowClient

URL = "https://acme.service-now.com"
CHOICES = f"{URL}/api/now/table/sys_choice"
DEMANDS = f"{URL}/api/now/table/dmn_demand"


def unit_client(**choices: Any) -> ServiceNowClient:
    return ServiceNowClient(URL, "svc", SecretStr("pw"), attempts=2, sleep=lambda s: None,
                            choices=choices.get("overrides"))  # fmt: skip


def query_of(call: responses.Call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(call.request.url)).query)


# -- unit ------------------------------------------------------------------------------------
@responses.activate
def test_the_value_is_read_by_label_once_per_client() -> None:
    responses.get(
        CHOICES,
        json={"result": [
            {"value": "1", "label": "Draft", "sequence": "10"},
            {"value": "11", "label": "Approved ", "sequence": "20"},
            {"value": "9", "label": "Completed", "sequence": "30"},
        ]},
    )  # fmt: skip
    client = unit_client()
    assert client.choices.value("dmn_demand", "state", "approved") == "11"
    assert client.choices.value("dmn_demand", "state", "approved") == "11"
    assert len(responses.calls) == 1
    sent = query_of(responses.calls[0])
    assert sent["sysparm_query"] == [
        "name=dmn_demand^element=state^language=en^inactive=false^ORDERBYsequence"
    ]
    assert sent["sysparm_fields"] == ["value,label,sequence"]
    assert unit_client().choices.value("dmn_demand", "state", "approved") == "11"
    assert len(responses.calls) == 2  # the cache belongs to one client


def test_a_configured_value_needs_no_request() -> None:
    client = unit_client(overrides={"problem.state": {"fix_in_progress": "7"}})
    with responses.RequestsMock():  # any request would fail the test
        assert client.choices.value("problem", "state", "fix_in_progress") == "7"


@responses.activate
def test_a_missing_or_ambiguous_label_names_the_setting() -> None:
    responses.get(CHOICES, json={"result": [{"value": "1", "label": "Draft"}]})
    with pytest.raises(NeedsHuman, match=r"plugins\.servicenow\.choices\.dmn_demand\.state"):
        unit_client().choices.value("dmn_demand", "state", "approved")
    responses.replace(
        responses.GET,
        CHOICES,
        json={
            "result": [{"value": "8", "label": "Approved"}, {"value": "12", "label": "APPROVED"}]
        },
    )
    with pytest.raises(NeedsHuman, match=r"several 'Approved' choices .*\(8, 12\)"):
        unit_client().choices.value("dmn_demand", "state", "approved")


@pytest.mark.parametrize(
    ("choices", "text"),
    [
        ({"dmn_demand.stage": {"approved": "8"}}, "unknown choice field 'dmn_demand.stage'"),
        ({"problem.state": {"approved": "8"}}, "problem.state: unknown meaning 'approved'"),
        (
            {"change_task.close_code": {"successful": " "}},
            "change_task.close_code.successful: empty",
        ),
    ],
)
def test_bad_overrides_are_config_errors(choices: dict[str, Any], text: str) -> None:
    bridge = settings_from_mapping({"plugins": {"servicenow": {
        "url": URL, "user": "svc", "password": "pw", "choices": choices,
    }}})  # fmt: skip
    with pytest.raises(ConfigError, match=rf"plugins\.servicenow\.choices: Value error, {text}"):
        build(ServiceNowPlugin, "servicenow", bridge)


@responses.activate
def test_the_intake_query_is_built_from_the_instances_value() -> None:
    from itsm_bridge_servicenow import intake

    responses.get(CHOICES, json={"result": [{"value": "-7", "label": "Approved"}]})
    responses.get(DEMANDS, json={"result": []})
    config = ServiceNowPlugin.Settings.model_validate(
        {"url": URL, "user": "svc", "password": "pw", "intake": {"problem_query": "active=false"}}
    )
    responses.get(f"{URL}/api/now/table/problem", json={"result": []})
    assert intake.collect(unit_client(), config, None) == []
    queries = [query_of(c)["sysparm_query"][0] for c in responses.calls]
    assert queries[1] == "state=-7^ORDERBYsys_updated_on^ORDERBYsys_id"
    assert queries[2] == "active=false^ORDERBYsys_updated_on^ORDERBYsys_id"  # as configured
    assert len(responses.calls) == 3  # no sys_choice read for the configured problem query


# -- integration: the sandbox's choice lists, renumbered -----------------------------------------
def renumber(snow: ServiceNowSandbox, table: str, element: str, label: str, value: str) -> None:
    """Give the choice `label` of `table.element` another value (as an administrator may)."""
    with snow.lock:
        for row in snow.store.rows_of("sys_choice"):
            if (row["name"], row["element"], row["label"]) == (table, element, label):
                row["value"] = value


@pytest.mark.integration
def test_approved_demands_are_found_under_the_instances_number(
    snow: ServiceNowSandbox, make_plugin: Callable[..., ServiceNowPlugin]
) -> None:
    renumber(snow, "dmn_demand", "state", "Approved", "11")
    plugin = make_plugin()
    approved = snow.insert("dmn_demand", short_description="Instant refunds", state="11")
    snow.insert("dmn_demand", short_description="Still a draft", state="1")
    snow.insert("dmn_demand", short_description="Approved somewhere else", state="8")
    fixing = snow.insert("problem", short_description="Refund timeouts", state="104")
    snow.clear_log()

    first = plugin.collect_work_items(None)
    again = plugin.collect_work_items(datetime(2020, 1, 1, tzinfo=UTC))

    assert [i.number for i in first] == [approved["number"], fixing["number"]]
    assert [i.number for i in again] == [approved["number"], fixing["number"]]
    reads = snow.requests_to("GET", "/api/now/table/sys_choice")
    assert len(reads) == 2  # dmn_demand.state and problem.state, once each for both cycles


@pytest.mark.integration
def test_close_codes_follow_the_instances_values(
    snow: ServiceNowSandbox,
    make_plugin: Callable[..., ServiceNowPlugin],
    make_release: Callable[..., Release],
) -> None:
    renumber(snow, "change_task", "close_code", "Unsuccessful", "failed")
    renumber(snow, "change_task", "close_code", "Successful", "ok")
    plugin = make_plugin()
    release = make_release()

    def task_for(row: dict[str, str]) -> Task:
        record = ExternalRecord(system="servicenow", kind="change_task", id=row["sys_id"],
                                number=row["number"])  # fmt: skip
        return Task(key="db", name="Stop database", record=record)

    closed = snow.insert("change_task", short_description="Stop database")
    snow.close_task(closed["number"], close_code="failed", notes="disk full")
    status = plugin.task_status(release, task_for(closed))
    assert status is not None and status.status == TaskStatus.FAILED

    open_row = snow.insert("change_task", short_description="Stop database")
    done = task_for(open_row).model_copy(update={"status": TaskStatus.DONE})
    plugin.task_finished(release, done)
    assert snow.record("change_task", open_row["sys_id"])["close_code"] == "ok"
    assert len(snow.requests_to("GET", "/api/now/table/sys_choice")) == 1
