"""Service levels (step 17): configured fields of the service's record, written only on change."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from pydantic import SecretStr

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.models import Release
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin, Settings, service_levels
from itsm_bridge_servicenow.client import ServiceNowClient

URL = "https://acme.service-now.com"
SERVICES = f"{URL}/api/now/table/cmdb_ci_service"
FIELDS = {"version": "{version}", "comments": "Released {version} ({release_id}) at {closed_at}"}


@pytest.fixture
def client() -> ServiceNowClient:
    return ServiceNowClient(URL, "svc", SecretStr("pw"), attempts=2, sleep=lambda s: None)


def settings(fields: dict[str, str], table: str = "cmdb_ci_service") -> Settings:
    return Settings.model_validate(
        {
            "url": URL,
            "user": "svc",
            "password": "pw",
            "service_levels": {"table": table, "fields": fields},
        }
    )


def query_of(call: responses.Call) -> str:
    return parse_qs(urlsplit(call.request.url).query)["sysparm_query"][0]


@responses.activate
def test_nothing_configured_means_nothing_asked(
    client: ServiceNowClient, bridge_settings: BridgeSettings, make_release: Callable[..., Release]
) -> None:
    assert service_levels.update(client, settings({}), bridge_settings, make_release()) == []
    assert not responses.calls


@responses.activate
def test_only_the_fields_that_differ_are_patched_once(
    client: ServiceNowClient, bridge_settings: BridgeSettings, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    current = {
        "sys_id": "s1",
        "name": "payments",
        "version": "1.3.0",
        "comments": f"Released 1.4.0 ({release.id}) at 2026-12-05 23:10:00",
    }
    responses.get(SERVICES, json={"result": [current]})
    responses.patch(f"{SERVICES}/s1", json={"result": {"sys_id": "s1"}})
    written = service_levels.update(client, settings(FIELDS), bridge_settings, release)
    assert written == ["cmdb_ci_service payments: version"]
    assert query_of(responses.calls[0]) == "name=payments-api^ORname=payments"
    assert json.loads(responses.calls[1].request.body) == {"version": "1.4.0"}
    assert len(responses.calls) == 2


@responses.activate
def test_equal_values_write_nothing(
    client: ServiceNowClient, bridge_settings: BridgeSettings, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    rows = [
        {"sys_id": "s2", "name": "payments", "version": "0", "comments": ""},
        {
            "sys_id": "s1",
            "name": "payments-api",
            "version": "1.4.0",
            "comments": f"Released 1.4.0 ({release.id}) at 2026-12-05 23:10:00",
        },
    ]
    responses.get(SERVICES, json={"result": rows})
    assert service_levels.update(client, settings(FIELDS), bridge_settings, release) == []
    assert [c.request.method for c in responses.calls] == ["GET"]  # the CI's own record wins


@responses.activate
def test_service_offerings_of_the_service_are_each_updated(
    client: ServiceNowClient, bridge_settings: BridgeSettings, make_release: Callable[..., Release]
) -> None:
    offerings = f"{URL}/api/now/table/service_offering"
    rows: list[dict[str, Any]] = [
        {"sys_id": "o1", "name": "Payments Gold", "version": "1.3.0"},
        {"sys_id": "o2", "name": "Payments Silver", "version": "1.4.0"},
    ]
    responses.get(offerings, json={"result": rows})
    responses.patch(f"{offerings}/o1", json={"result": {"sys_id": "o1"}})
    written = service_levels.update(
        client,
        settings({"version": "{version}"}, "service_offering"),
        bridge_settings,
        make_release(),
    )
    assert written == ["service_offering Payments Gold: version"]  # Silver had it already
    assert query_of(responses.calls[0]) == (
        "parent.name=payments-api^ORparent.name=payments^ORDERBYname"
    )
    assert [c.request.method for c in responses.calls] == ["GET", "PATCH"]


@pytest.mark.parametrize("table", ["cmdb_ci_service", "service_offering"])
@responses.activate
def test_a_ci_given_by_sys_id_is_found_by_its_sys_id(
    client: ServiceNowClient,
    bridge_settings: BridgeSettings,
    make_release: Callable[..., Release],
    table: str,
) -> None:
    ci = "5" * 32
    bridge_settings.services["payments"].ci = ci
    release = make_release(service="payments")
    url = f"{URL}/api/now/table/{table}"
    rows = [{"sys_id": "s9", "name": "payments", "version": "0"},
            {"sys_id": ci, "name": "Payments, EU^1", "version": "0"}]  # fmt: skip
    responses.get(url, json={"result": rows})
    responses.patch(f"{url}/{ci}", json={"result": {}})
    responses.patch(f"{url}/s9", json={"result": {}})
    written = service_levels.update(
        client, settings({"version": "{version}"}, table), bridge_settings, release
    )
    if table == "service_offering":
        assert query_of(responses.calls[0]) == f"parent={ci}^ORparent.name=payments^ORDERBYname"
        assert len(written) == 2
    else:
        assert query_of(responses.calls[0]) == f"sys_id={ci}^ORname=payments"
        assert written == ["cmdb_ci_service Payments, EU^1: version"]  # the CI itself wins


def test_a_name_with_a_comma_or_caret_stays_one_value() -> None:
    assert service_levels.named(["Pay, EU^1"]) == "name=Pay, EU^^1"


@pytest.mark.parametrize("template", ["{owner}", "{version!r}", "{version"])
def test_a_bad_template_names_the_setting(
    client: ServiceNowClient,
    bridge_settings: BridgeSettings,
    make_release: Callable[..., Release],
    template: str,
) -> None:
    with pytest.raises(NeedsHuman, match=r"service_levels\.fields\.version"):
        service_levels.update(
            client, settings({"version": template}), bridge_settings, make_release()
        )


@responses.activate
def test_a_missing_record_needs_a_human(
    client: ServiceNowClient, bridge_settings: BridgeSettings, make_release: Callable[..., Release]
) -> None:
    responses.get(SERVICES, json={"result": []})
    with pytest.raises(NeedsHuman, match=r"services\.payments\.ci"):
        service_levels.update(client, settings(FIELDS), bridge_settings, make_release())


# -- integration -----------------------------------------------------------------------------
@pytest.mark.integration
def test_the_service_record_is_patched_once_then_left_alone(
    snow: ServiceNowSandbox,
    make_plugin: Callable[..., ServiceNowPlugin],
    make_release: Callable[..., Release],
) -> None:
    plugin = make_plugin(service_levels={"fields": FIELDS})
    release = make_release()
    assert plugin.update_service_levels(release) == ["cmdb_ci_service payments: version, comments"]
    assert plugin.update_service_levels(release) == []  # a re-run, a little later

    row = snow.record("cmdb_ci_service", "payments")
    assert row["version"] == "1.4.0"
    assert row["comments"].startswith(f"Released 1.4.0 ({release.id}) at 20")
    assert len(snow.requests_to("PATCH", "/api/now/table/cmdb_ci_service")) == 1
    reads = snow.requests_to("GET", "/api/now/table/cmdb_ci_service")
    assert set(reads[0].query["sysparm_fields"][0].split(",")) == {
        "sys_id",
        "name",
        "version",
        "comments",
    }

    plugin.update_service_levels(make_release(version="1.5.0", id="rel-2"))
    assert snow.record("cmdb_ci_service", "payments")["version"] == "1.5.0"
    assert len(snow.requests_to("PATCH", "/api/now/table/cmdb_ci_service")) == 2
