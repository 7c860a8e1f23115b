"""Incidents (step 13): failure signals and the incident for a failed release."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from pydantic import SecretStr

from itsm_bridge.errors import TransientError
from itsm_bridge.models import ConfigurationItem, Event, ExternalRecord, Impact, Release
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin, Settings, incidents
from itsm_bridge_servicenow.client import ServiceNowClient

URL = "https://acme.service-now.com"
INCIDENTS = f"{URL}/api/now/table/incident"
CHG = "c" * 32
SINCE = datetime(2026, 12, 5, 21, 0, 30, tzinfo=UTC)


@pytest.fixture
def client() -> ServiceNowClient:
    return ServiceNowClient(URL, "svc", SecretStr("pw"), attempts=2, sleep=lambda s: None)


@pytest.fixture
def config() -> Settings:
    return Settings(
        url=URL, user="svc", password=SecretStr("pw"), assignment_group="Change Management"
    )


def deployed(
    release: Release,
    change: str | None = CHG,
    cis: Sequence[str] = (),
    services: Sequence[str] = (),
) -> Release:
    records = []
    if change:
        records.append(ExternalRecord(system="servicenow", kind="change_request", id=change))
    impact = Impact(
        cis=[ConfigurationItem(id=i, name=i, system="servicenow") for i in cis]
        + [ConfigurationItem(id="host-1", name="host-1", system="config")],
        services=[ConfigurationItem(id=s, name=s, system="servicenow") for s in services],
    )
    return release.model_copy(update={"records": records, "impact": impact})


def failure(at: datetime) -> Event:
    return Event(
        at=at,
        actor="bridge",
        kind="failure",
        message="smoke test failed",
        evidence={"job": "payments/smoke", "failed": 3},
    )


# -- unit ------------------------------------------------------------------------------------
def test_the_query_ors_the_change_and_the_cis_under_one_opened_at_condition(
    make_release: Callable[..., Release],
) -> None:
    release = deployed(make_release(), cis=["ci1", "ci2"], services=["svc1"])
    assert incidents.signal_query(release, SINCE) == (
        f"opened_at>=2026-12-05 21:00:30^caused_by={CHG}^ORcmdb_ciINci1,ci2,svc1"
        "^ORbusiness_serviceINsvc1^ORDERBYopened_at"
    )


@responses.activate
def test_nothing_to_look_for_means_no_request(
    client: ServiceNowClient, config: Settings, make_release: Callable[..., Release]
) -> None:
    assert incidents.signals(client, config, deployed(make_release(), change=None), SINCE) == []
    assert not responses.calls


@responses.activate
def test_signals_carry_number_severity_and_evidence(
    client: ServiceNowClient, config: Settings, make_release: Callable[..., Release]
) -> None:
    rows = [
        {
            "sys_id": "i1",
            "number": "INC0010001",
            "short_description": "Refunds fail",
            "priority": "2",
            "opened_at": "2026-12-05 21:04:00",
            "cmdb_ci": "",
            "caused_by": CHG,
        },
        {
            "sys_id": "i2",
            "number": "INC0010002",
            "short_description": "Slow page",
            "priority": "3",
            "opened_at": "2026-12-05 21:05:00",
            "cmdb_ci": "ci1",
            "caused_by": "",
        },
        {
            "sys_id": "i3",
            "number": "INC0010003",
            "short_description": "Typo",
            "priority": "5",
            "opened_at": "2026-12-05 21:06:00",
            "cmdb_ci": "ci1",
            "caused_by": "",
        },
    ]
    responses.get(INCIDENTS, json={"result": rows})
    found = incidents.signals(client, config, deployed(make_release(), cis=["ci1"]), SINCE)
    assert [(s.key, s.severity) for s in found] == [
        ("INC0010001", "critical"),
        ("INC0010002", "warning"),
        ("INC0010003", "info"),
    ]
    first = found[0]
    assert first.summary == "INC0010001: Refunds fail"
    assert first.at == datetime(2026, 12, 5, 21, 4, tzinfo=UTC)
    assert first.evidence == {
        "number": "INC0010001",
        "sys_id": "i1",
        "priority": "2",
        "cmdb_ci": "",
        "caused_by": CHG,
    }
    query = parse_qs(urlsplit(responses.calls[0].request.url).query)
    assert len(responses.calls) == 1
    assert "caused_by" in query["sysparm_fields"][0].split(",")


@responses.activate
def test_open_for_failure_looks_up_before_it_creates(
    client: ServiceNowClient,
    config: Settings,
    bridge_settings: BridgeSettings,
    make_release: Callable[..., Release],
) -> None:
    release = deployed(make_release())
    responses.get(INCIDENTS, json={"result": [{"sys_id": "i1"}]})
    incidents.open_for_failure(client, config, bridge_settings, release, failure(SINCE))
    assert [c.request.method for c in responses.calls] == ["GET"]
    query = parse_qs(urlsplit(responses.calls[0].request.url).query)["sysparm_query"]
    assert query == [f"correlation_id={release.id}:failure"]


@responses.activate
def test_open_for_failure_creates_a_linked_incident(
    client: ServiceNowClient,
    config: Settings,
    bridge_settings: BridgeSettings,
    make_release: Callable[..., Release],
) -> None:
    release = deployed(make_release())
    responses.get(INCIDENTS, json={"result": []})
    responses.get(f"{URL}/api/now/table/cmdb_ci", json={"result": [{"sys_id": "ci9"}]})
    responses.get(f"{URL}/api/now/table/sys_user_group", json={"result": [{"sys_id": "g9"}]})
    responses.post(INCIDENTS, json={"result": {"sys_id": "i9"}}, status=201)
    incidents.open_for_failure(client, config, bridge_settings, release, failure(SINCE))
    body = json.loads(responses.calls[-1].request.body)
    assert body["caused_by"] == CHG and body["cmdb_ci"] == "ci9"
    assert body["assignment_group"] == "g9"
    assert (body["impact"], body["urgency"]) == (2, 1)
    assert body["correlation_id"] == f"{release.id}:failure"
    assert "smoke test failed" in body["description"] and "payments/smoke" in body["description"]


@responses.activate
def test_an_incident_the_bridge_opened_is_not_a_signal(
    client: ServiceNowClient, config: Settings, make_release: Callable[..., Release]
) -> None:
    release = deployed(make_release())
    opened = "2026-12-05 21:05:00"
    rows = [
        {"sys_id": "a", "number": "INC1", "opened_at": opened, "correlation_display": ""},
        {
            "sys_id": "b",
            "number": "INC2",
            "opened_at": opened,
            "correlation_display": "itsm-bridge",
        },
    ]
    responses.get(INCIDENTS, json={"result": rows})
    found = incidents.signals(client, config, release, SINCE)
    assert [s.key for s in found] == ["INC1"]
    query = parse_qs(urlsplit(responses.calls[0].request.url).query)
    assert "correlation_display" in query["sysparm_fields"][0]


@responses.activate
def test_a_signal_during_early_life_support_opens_one_incident(
    client: ServiceNowClient,
    config: Settings,
    bridge_settings: BridgeSettings,
    make_release: Callable[..., Release],
) -> None:
    release = deployed(make_release())
    alert = Event(
        at=SINCE,
        actor="alertmanager",
        kind="signal",
        message="alertmanager: 5xx ratio above 5%",
        evidence={"key": "1d31034106d44412:2026-11-28T05:27:57Z", "status": "firing"},
    )
    responses.get(INCIDENTS, json={"result": []})
    responses.get(f"{URL}/api/now/table/cmdb_ci", json={"result": [{"sys_id": "ci9"}]})
    responses.get(f"{URL}/api/now/table/sys_user_group", json={"result": [{"sys_id": "g9"}]})
    responses.post(INCIDENTS, json={"result": {"sys_id": "i9"}}, status=201)
    incidents.open_for_signal(client, config, bridge_settings, release, alert)
    body = json.loads(responses.calls[-1].request.body)
    assert body["correlation_id"] == f"{release.id}:signal:1d31034106d44412:2026-11-28T05:27:57Z"
    assert body["short_description"].startswith("During early life support of")
    assert body["caused_by"] == CHG
    responses.replace(responses.GET, INCIDENTS, json={"result": [{"sys_id": "i9"}]})
    incidents.open_for_signal(client, config, bridge_settings, release, alert)
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1  # once


# -- integration -----------------------------------------------------------------------------
def sandbox_release(snow: ServiceNowSandbox, make_release: Callable[..., Release]) -> Release:
    change = snow.insert("change_request", short_description="payments 1.4.0")
    app = snow.record("cmdb_ci", "pay-app-01")
    return deployed(make_release(), change=change["sys_id"], cis=[app["sys_id"]])


@pytest.mark.integration
def test_an_incident_caused_by_the_change_is_a_signal(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = sandbox_release(snow, make_release)
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert plugin.detect_failure(release, since) == []
    incident = snow.open_incident(
        caused_by=release.records[0].id, priority="1", short_description="Refunds return 500"
    )
    found = plugin.detect_failure(release, since)
    assert [(s.key, s.severity, s.summary) for s in found] == [
        (incident["number"], "critical", f"{incident['number']}: Refunds return 500")
    ]
    assert len(snow.requests_to("GET", "/api/now/table/incident")) == 2


@pytest.mark.integration
def test_an_incident_on_an_affected_ci_counts_only_when_opened_after_since(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = sandbox_release(snow, make_release)
    since = datetime.now(UTC) - timedelta(minutes=1)
    snow.open_incident(cmdb_ci="pay-app-01", opened_at="2026-01-01 00:00:00")
    snow.open_incident(cmdb_ci="pay-db-01", priority="1")  # not affected by this release
    assert plugin.detect_failure(release, since) == []
    late = snow.open_incident(cmdb_ci="pay-app-01", priority="3")
    assert [s.key for s in plugin.detect_failure(release, since)] == [late["number"]]


@pytest.mark.integration
def test_open_for_failure_is_idempotent_even_after_a_lost_answer(
    snow: ServiceNowSandbox,
    make_plugin: Callable[..., ServiceNowPlugin],
    make_release: Callable[..., Release],
) -> None:
    plugin = make_plugin(create_incident_on_failure=True, incident_assignment_group="Payments Team")
    release = sandbox_release(snow, make_release)
    snow.fail_next("POST", "/api/now/table/incident", 502, fail_after_write=True)
    with pytest.raises(TransientError):
        incidents.open_for_failure(
            plugin.client, plugin.config, plugin.bridge, release, failure(datetime.now(UTC))
        )
    incidents.open_for_failure(
        plugin.client, plugin.config, plugin.bridge, release, failure(datetime.now(UTC))
    )
    rows = [
        r
        for r in snow.store.rows_of("incident")
        if r.get("correlation_id") == f"{release.id}:failure"
    ]
    assert len(rows) == 1
    row = rows[0]
    assert row["caused_by"] == release.records[0].id
    assert row["cmdb_ci"] == snow.record("cmdb_ci", "payments-api")["sys_id"]
    assert row["assignment_group"] == snow.record("sys_user_group", "Payments Team")["sys_id"]
    assert "smoke test failed" in row["description"]


@pytest.mark.integration
def test_the_ci_and_the_group_may_be_given_by_sys_id(
    snow: ServiceNowSandbox,
    make_plugin: Callable[..., ServiceNowPlugin],
    make_release: Callable[..., Release],
) -> None:
    ci = snow.record("cmdb_ci", "payments-api")["sys_id"]
    group = snow.record("sys_user_group", "Payments Team")["sys_id"]
    plugin = make_plugin(create_incident_on_failure=True, incident_assignment_group=group)
    plugin.bridge.services["payments"].ci = ci
    release = sandbox_release(snow, make_release)
    incidents.open_for_failure(
        plugin.client, plugin.config, plugin.bridge, release, failure(datetime.now(UTC))
    )
    [row] = [r for r in snow.store.rows_of("incident") if r.get("correlation_id")]
    assert (row["cmdb_ci"], row["assignment_group"]) == (ci, group)
