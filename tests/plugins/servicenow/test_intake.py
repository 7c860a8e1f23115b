"""Intake (steps 1-2): demands and problems as work items, and the backlog work note."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from pydantic import SecretStr

from itsm_bridge.models import BacklogItem, WorkItem
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin, Settings, intake
from itsm_bridge_servicenow.client import ServiceNowClient

URL = "https://acme.service-now.com"
DEMANDS = f"{URL}/api/now/table/dmn_demand"
PROBLEMS = f"{URL}/api/now/table/problem"
JOURNAL = f"{URL}/api/now/table/sys_journal_field"
CHOICES = f"{URL}/api/now/table/sys_choice"
SINCE = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
ISSUE = BacklogItem(
    system="jira",
    key="PAY-12",
    summary="Faster refunds",
    url="https://acme.atlassian.net/browse/PAY-12",
)


@pytest.fixture
def client() -> ServiceNowClient:
    return ServiceNowClient(URL, "svc", SecretStr("pw"), page_size=2, sleep=lambda s: None)


def settings(**intake_settings: object) -> Settings:
    return Settings.model_validate(
        {
            "url": URL,
            "user": "svc",
            "password": "pw",
            "intake": {"demand_query": "state=8", **intake_settings},
        }
    )


def query_of(call: responses.Call) -> str:
    return parse_qs(urlsplit(call.request.url).query)["sysparm_query"][0]


def demand(n: int, updated: str) -> dict[str, str]:
    return {
        "sys_id": f"d{n}",
        "number": f"DMND000100{n}",
        "short_description": f"Demand {n}",
        "description": "why",
        "sys_updated_on": updated,
        "cmdb_ci.name": "payments-api",
    }


# -- unit ------------------------------------------------------------------------------------
def test_the_page_query_adds_the_cursor_to_every_branch() -> None:
    assert intake.page_query("state=8", None, SINCE) == (
        "state=8^sys_updated_on>=2026-11-01 08:30:00^ORDERBYsys_updated_on^ORDERBYsys_id"
    )
    assert intake.page_query("", None, None) == "ORDERBYsys_updated_on^ORDERBYsys_id"
    assert intake.page_query(
        "state=8^NQstate=9^ORDERBYnumber", ("2026-11-02 10:00:00", "d2"), None
    ) == (
        "state=8^sys_updated_on>2026-11-02 10:00:00"
        "^NQstate=8^sys_updated_on=2026-11-02 10:00:00^sys_id>d2"
        "^NQstate=9^sys_updated_on>2026-11-02 10:00:00"
        "^NQstate=9^sys_updated_on=2026-11-02 10:00:00^sys_id>d2"
        "^ORDERBYsys_updated_on^ORDERBYsys_id"
    )


@responses.activate
def test_disabled_intake_asks_nothing(client: ServiceNowClient) -> None:
    assert intake.collect(client, settings(enabled=False), SINCE) == []
    assert not responses.calls


@responses.activate
def test_pages_follow_a_keyset_cursor(client: ServiceNowClient) -> None:
    responses.get(
        DEMANDS,
        json={"result": [demand(1, "2026-11-02 10:00:00"), demand(2, "2026-11-02 10:00:00")]},
    )
    responses.get(DEMANDS, json={"result": [demand(3, "2026-11-03 09:00:00")]})
    responses.get(CHOICES, json={"result": [{"value": "104", "label": "Fix in Progress"}]})
    responses.get(
        PROBLEMS,
        json={
            "result": [
                {
                    "sys_id": "p1",
                    "number": "PRB0040001",
                    "short_description": "Leak",
                    "description": "",
                    "fix_notes": "patch the pool",
                    "sys_updated_on": "2026-11-04 00:00:00",
                }
            ]
        },
    )

    items = intake.collect(client, settings(), SINCE)

    assert [(i.source_kind, i.number) for i in items] == [
        ("demand", "DMND0001001"),
        ("demand", "DMND0001002"),
        ("demand", "DMND0001003"),
        ("problem", "PRB0040001"),
    ]
    first = items[0]
    assert first == WorkItem(
        source_system="servicenow",
        source_kind="demand",
        source_id="d1",
        number="DMND0001001",
        title="Demand 1",
        description="why",
        url=f"{URL}/nav_to.do?uri=dmn_demand.do?sys_id=d1",
        service="payments-api",
        updated_at=datetime(2026, 11, 2, 10, tzinfo=UTC),
    )
    assert items[3].description == "Fix notes:\npatch the pool"
    queries = [query_of(c) for c in responses.calls]
    assert queries[0].startswith("name=problem^element=state^")  # the default: from sys_choice
    assert queries[1].startswith("state=8^sys_updated_on>=2026-11-01 08:30:00^")  # configured
    assert "sys_updated_on=2026-11-02 10:00:00^sys_id>d2" in queries[2]
    assert queries[3].startswith("state=104^sys_updated_on>=2026-11-01 08:30:00^")
    assert len(responses.calls) == 4
    fields = parse_qs(urlsplit(responses.calls[3].request.url).query)["sysparm_fields"][0]
    assert set(fields.split(",")) == {
        "sys_id",
        "number",
        "short_description",
        "description",
        "sys_updated_on",
        "cmdb_ci.name",
        "fix_notes",
    }


@responses.activate
def test_the_note_is_written_unless_the_journal_has_it(client: ServiceNowClient) -> None:
    item = WorkItem(
        source_system="servicenow",
        source_kind="problem",
        source_id="p1",
        number="PRB0040001",
        title="Leak",
    )
    responses.get(JOURNAL, json={"result": []})
    responses.patch(f"{PROBLEMS}/p1", json={"result": {"sys_id": "p1"}})
    intake.note_backlog_item(client, item, ISSUE)
    assert query_of(responses.calls[0]) == (
        "element_id=p1^element=work_notes^valueLIKEBacklog item PAY-12 created:"
    )
    assert json.loads(responses.calls[1].request.body) == {
        "work_notes": "Backlog item PAY-12 created: https://acme.atlassian.net/browse/PAY-12"
    }
    responses.replace(responses.GET, JOURNAL, json={"result": [{"sys_id": "j1"}]})
    intake.note_backlog_item(client, item, ISSUE)
    assert [c.request.method for c in responses.calls] == ["GET", "PATCH", "GET"]


# -- integration -----------------------------------------------------------------------------
def age(snow: ServiceNowSandbox, sys_id: str, updated: str) -> None:
    """Backdate a row (the sandbox stamps writes with its own clock)."""
    with snow.lock:
        snow.store.rows[sys_id]["sys_updated_on"] = updated


@pytest.mark.integration
def test_approved_demands_and_fixes_in_progress_since_the_cursor(
    snow: ServiceNowSandbox, make_plugin: Callable[..., ServiceNowPlugin]
) -> None:
    plugin = make_plugin(intake={"demand_query": "state=8"}, page_size=1)
    approved = snow.insert(
        "dmn_demand",
        short_description="Instant refunds",
        state="8",
        description="Customers want refunds in seconds",
    )
    snow.insert("dmn_demand", short_description="Still a draft", state="1")
    fixing = snow.insert(
        "problem", short_description="Refund timeouts", state="104", cmdb_ci="payments-api"
    )
    old = snow.insert("problem", short_description="Old fix", state="104")
    age(snow, old["sys_id"], "2026-01-01 00:00:00")

    everything = plugin.collect_work_items(None)
    assert [i.number for i in everything] == [approved["number"], old["number"], fixing["number"]]

    items = plugin.collect_work_items(datetime(2026, 6, 1, tzinfo=UTC))
    assert [(i.source_kind, i.number) for i in items] == [
        ("demand", approved["number"]),
        ("problem", fixing["number"]),
    ]
    assert items[1].service == "payments-api"
    assert items[0].description == "Customers want refunds in seconds"


@pytest.mark.integration
def test_the_backlog_note_is_written_once(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin
) -> None:
    demand_row = snow.insert("dmn_demand", short_description="Instant refunds", state="8")
    item = WorkItem(
        source_system="servicenow",
        source_kind="demand",
        source_id=demand_row["sys_id"],
        number=demand_row["number"],
        title="Instant refunds",
    )
    plugin.work_item_added(item, ISSUE)
    plugin.work_item_added(item, ISSUE)  # a retry
    other = ISSUE.model_copy(update={"key": "PAY-120", "url": None})
    plugin.work_item_added(item, other)
    notes = [e["value"] for e in snow.journal(demand_row["number"], "work_notes")]
    assert notes == [
        "Backlog item PAY-12 created: https://acme.atlassian.net/browse/PAY-12",
        "Backlog item PAY-120 created: in jira",
    ]
