"""Step 8: the CMDB walk (`cmdb.identify_impact`) and the affected-CI links (`link_impact`).

Unit tests answer at the vendor boundary with `responses` in the Table API's documented shape
(`{"result": [...]}`, references as plain sys_ids with `sysparm_exclude_reference_link=true`);
integration tests run against the ServiceNow sandbox over real HTTP.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from pydantic import SecretStr

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.http import HTTPNeedsHuman
from itsm_bridge.models import ConfigurationItem, Impact, Release
from itsm_bridge.settings import BridgeSettings, settings_from_mapping
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin, Settings
from itsm_bridge_servicenow.client import ServiceNowClient
from itsm_bridge_servicenow.cmdb import identify_impact, link_impact

BASE = "https://acme.service-now.com"
TABLE = re.compile(rf"{re.escape(BASE)}/api/now/table/(\w+)")
TABLE_GETS = "/api/now/table/"
BATCH = f"{BASE}/api/now/v1/batch"
YEAR_END = (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


# -- unit: a tiny Table API double for `responses` ------------------------------------------
class FakeTables:
    """Answers Table API GETs from rows per table; understands `fieldINa,b^fieldIN...`."""

    def __init__(self, tables: dict[str, list[dict[str, str]]]) -> None:
        self.tables = tables
        self.calls: list[dict[str, str]] = []

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        table = TABLE.match(str(request.url))[1]  # type: ignore[index]
        params = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        self.calls.append({"table": table, **params})
        rows = [r for r in self.tables.get(table, []) if self.matches(r, params["sysparm_query"])]
        offset = int(params.get("sysparm_offset", 0))
        page = rows[offset : offset + int(params["sysparm_limit"])]
        fields = params["sysparm_fields"].split(",")
        body = {"result": [{f: r.get(f, "") for f in fields} for r in page]}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    @staticmethod
    def matches(row: dict[str, str], query: str) -> bool:
        """`^NQ` branches of `^` terms, each term `^OR`-alternatives of `fieldINa,b` or
        `field=value` (`^^` a literal caret)."""
        query = query.replace("^^", "\0")
        for branch in query.split("^NQ"):
            ok = True
            for term in re.split(r"\^(?!OR)", branch):
                alternatives = []
                for part in term.split("^OR"):
                    field, op, value = re.match(r"([a-z_]+)(IN|=)(.*)", part).groups()  # type: ignore[union-attr]
                    value = value.replace("\0", "^")
                    allowed = value.split(",") if op == "IN" else [value]
                    alternatives.append(row.get(field, "") in allowed)
                ok &= any(alternatives)
            if ok:
                return True
        return False


def unit_client() -> ServiceNowClient:
    return ServiceNowClient(BASE, "svc", SecretStr("pw"), attempts=2, sleep=lambda s: None)


def unit_config(**overrides: Any) -> Settings:
    return Settings.model_validate({"url": BASE, "user": "svc", "password": "pw", **overrides})


def bridge(ci: str | None = "payments-api") -> BridgeSettings:
    return settings_from_mapping({"services": {"payments": {"ci": ci}}})


RELEASE = Release(id="rel-1", service="payments", version="1.4.0")
GRAPH: dict[str, list[dict[str, str]]] = {
    "cmdb_ci": [
        {"sys_id": "api", "name": "payments-api", "sys_class_name": "cmdb_ci_appl"},
        {"sys_id": "svc", "name": "payments", "sys_class_name": "cmdb_ci_service_business"},
        {"sys_id": "db", "name": "payments-db", "sys_class_name": "cmdb_ci_db_instance"},
        {"sys_id": "host", "name": "pay-db-01", "sys_class_name": "cmdb_ci_linux_server"},
    ],
    "cmdb_ci_service": [{"sys_id": "svc", "name": "payments"}],
    "cmdb_rel_type": [
        {"sys_id": "dep", "name": "Depends on::Used by"},
        {"sys_id": "run", "name": "Runs on::Runs"},
    ],
    "cmdb_rel_ci": [
        {"parent": "svc", "child": "api", "type": "dep"},
        {"parent": "api", "child": "db", "type": "dep"},
        {"parent": "db", "child": "host", "type": "run"},
        {"parent": "db", "child": "api", "type": "dep"},  # a cycle
    ],
}


@responses.activate
def test_walk_is_narrow_batched_and_classifies_services() -> None:
    fake = FakeTables(GRAPH)
    responses.add_callback(responses.GET, TABLE, callback=fake)
    impact = identify_impact(unit_client(), unit_config(cmdb_depth=2), bridge(), RELEASE)

    assert impact is not None
    assert [(c.name, c.cls) for c in impact.cis] == [
        ("payments-api", "cmdb_ci_appl"),
        ("payments-db", "cmdb_ci_db_instance"),
        ("pay-db-01", "cmdb_ci_linux_server"),
    ]
    assert [(s.id, s.system) for s in impact.services] == [("svc", "servicenow")]
    for call in fake.calls:  # protocol discipline on every read
        assert call["sysparm_fields"] and call["sysparm_exclude_reference_link"].lower() == "true"
        assert int(call["sysparm_limit"]) <= 100
    rel_queries = [c["sysparm_query"] for c in fake.calls if c["table"] == "cmdb_rel_ci"]
    assert rel_queries == [
        "parentINapi^typeINdep,run",
        "childINapi^typeINdep,run",
        "parentINdb,svc^typeINdep,run",
        "childINdb,svc^typeINdep,run",
    ]
    assert [c["table"] for c in fake.calls[:2]] == ["cmdb_ci", "cmdb_rel_type"]
    assert fake.calls[1]["sysparm_query"] == "name=Depends on::Used by^ORname=Runs on::Runs"


@responses.activate
def test_in_lists_hold_100_sys_ids_each() -> None:
    from itsm_bridge_servicenow.cmdb import query_in

    fake = FakeTables({"cmdb_ci": []})
    responses.add_callback(responses.GET, TABLE, callback=fake)
    ids = [f"{n:032x}" for n in range(250)]
    query_in(unit_client(), "cmdb_ci", "sys_id", ids + ids[:10], ("sys_id",))
    sizes = [len(c["sysparm_query"].removeprefix("sys_idIN").split(",")) for c in fake.calls]
    assert sizes == [100, 100, 50]


@responses.activate
def test_a_service_ci_given_by_sys_id_or_by_a_name_with_a_caret() -> None:
    api = "0123456789abcdef0123456789abcdef"
    graph = {**GRAPH, "cmdb_ci": [*GRAPH["cmdb_ci"],
             {"sys_id": api, "name": "pay^NQapi", "sys_class_name": "cmdb_ci_appl"}]}  # fmt: skip
    fake = FakeTables(graph)
    responses.add_callback(responses.GET, TABLE, callback=fake)
    for key in (api, "pay^NQapi"):
        impact = identify_impact(unit_client(), unit_config(cmdb_depth=0), bridge(key), RELEASE)
        assert impact is not None and [c.id for c in impact.cis] == [api]
    assert [c["sysparm_query"] for c in fake.calls if c["table"] == "cmdb_ci"][::2] == [
        f"sys_id={api}^NQname={api}",
        "name=pay^^NQapi",
    ]


@responses.activate
def test_depth_zero_is_the_service_ci_alone() -> None:
    fake = FakeTables(GRAPH)
    responses.add_callback(responses.GET, TABLE, callback=fake)
    impact = identify_impact(unit_client(), unit_config(cmdb_depth=0), bridge(), RELEASE)
    assert impact is not None and [c.name for c in impact.cis] == ["payments-api"]
    assert not any(c["table"] == "cmdb_rel_ci" for c in fake.calls)


def test_no_ci_configured_means_no_answer_and_no_request() -> None:
    with responses.RequestsMock():  # any request would fail the test
        assert identify_impact(unit_client(), unit_config(), bridge(None), RELEASE) is None


@responses.activate
def test_a_missing_service_ci_needs_a_human() -> None:
    responses.add_callback(responses.GET, TABLE, callback=FakeTables({}))
    with pytest.raises(NeedsHuman, match=r"no CI named 'payments-api' \(services.payments.ci\)"):
        identify_impact(unit_client(), unit_config(), bridge(), RELEASE)


@responses.activate
def test_unknown_relationship_types_need_a_human() -> None:
    responses.add_callback(
        responses.GET, TABLE, callback=FakeTables({**GRAPH, "cmdb_rel_type": []})
    )
    with pytest.raises(NeedsHuman, match="relationship_types"):
        identify_impact(unit_client(), unit_config(), bridge(), RELEASE)


@responses.activate
def test_client_errors_propagate_typed() -> None:
    body = {
        "error": {"message": "User Not Authenticated", "detail": "Required"},
        "status": "failure",
    }
    responses.add(responses.GET, TABLE, json=body, status=401)
    with pytest.raises(HTTPNeedsHuman, match="User Not Authenticated"):
        identify_impact(unit_client(), unit_config(), bridge(), RELEASE)


@responses.activate
def test_link_impact_creates_only_the_missing_rows() -> None:
    fake = FakeTables({
        "task_ci": [{"sys_id": "l1", "task": "chg", "ci_item": "api"}],
        "task_cmdb_ci_service": [],
    })  # fmt: skip
    responses.add_callback(responses.GET, TABLE, callback=fake)
    posts: list[tuple[str, Any]] = []

    def batch(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        """The Batch API: each item's relative URL names the table, its body is Base64."""
        sent = json.loads(request.body or b"")
        answered = []
        for item in sent["rest_requests"]:
            table = re.match(r"/api/now/table/(\w+)\?", item["url"])[1]  # type: ignore[index]
            posts.append((table, json.loads(base64.b64decode(item["body"]))))
            body = base64.b64encode(b'{"result": {"sys_id": "new"}}').decode()
            answered.append({"id": item["id"], "status_code": 201, "body": body})
        answer = {"batch_request_id": sent["batch_request_id"], "serviced_requests": answered,
                  "unserviced_requests": []}  # fmt: skip
        return 200, {}, json.dumps(answer)

    responses.add_callback(responses.POST, BATCH, callback=batch)
    impact = Impact(
        cis=[ConfigurationItem(id=i, name=i, system="servicenow") for i in ("api", "db")]
        + [ConfigurationItem(id="other", name="other", system="jira")],
        services=[ConfigurationItem(id="svc", name="payments", system="servicenow")],
    )
    link_impact(unit_client(), "chg", impact)
    assert posts == [
        ("task_ci", {"task": "chg", "ci_item": "db"}),
        (
            "task_cmdb_ci_service",
            {"task": "chg", "cmdb_ci_service": "svc", "manually_added": "true"},
        ),
    ]
    assert [c["sysparm_query"] for c in fake.calls] == ["task=chg", "task=chg"]


# -- integration: the sandbox over HTTP ---------------------------------------------------
@pytest.mark.integration
def test_seeded_payments_impact(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    impact = plugin.identify_impact(make_release())
    assert impact is not None
    assert [c.name for c in impact.cis] == [
        "payments-api", "payments-db", "pay-app-01", "pay-app-02", "pay-db-01",
    ]  # fmt: skip
    assert [(s.name, s.cls) for s in impact.services] == [("payments", "cmdb_ci_service")]
    assert all(ci.id == snow.record("cmdb_ci", ci.name)["sys_id"] for ci in impact.cis)


def build_big_graph(snow: ServiceNowSandbox) -> None:
    """502 CIs around payments-api: 20 apps, 480 hosts, 2 services, with cycles, a deeper
    chain (deep-1 at level 3, deep-2 at level 4) and an edge of an unconfigured type."""
    dep, run, hosted = "Depends on::Used by", "Runs on::Runs", "Hosted on::Hosts"

    def rel(parent: str, child: str, kind: str) -> None:
        snow.insert("cmdb_rel_ci", parent=parent, child=child, type=kind)

    for i in range(20):
        snow.insert("cmdb_ci_appl", name=f"app-{i}")
        rel("payments-api", f"app-{i}", dep)
        for j in range(24):
            snow.insert("cmdb_ci_linux_server", name=f"host-{i}-{j}")
            rel(f"app-{i}", f"host-{i}-{j}", run)
        rel(f"host-{i}-0", "payments-api", dep)  # cycle back to the root
        rel(f"app-{i}", f"app-{(i + 1) % 20}", dep)  # a ring among the apps
    for name in ("checkout", "billing"):
        snow.insert("cmdb_ci_service", name=name)
        rel(name, "app-0", dep)
    for name in ("deep-1", "deep-2", "elsewhere"):
        snow.insert("cmdb_ci_linux_server", name=name)
    rel("host-0-1", "deep-1", dep)
    rel("deep-1", "deep-2", dep)
    rel("app-0", "elsewhere", hosted)


@pytest.mark.integration
def test_walk_of_500_cis_with_cycles_is_batched(
    snow: ServiceNowSandbox,
    make_plugin: Callable[..., ServiceNowPlugin],
    make_release: Callable[..., Release],
) -> None:
    build_big_graph(snow)
    plugin = make_plugin(cmdb_depth=3)
    snow.clear_log()

    impact = plugin.identify_impact(make_release())

    assert impact is not None
    names = [c.name for c in impact.cis]
    assert len(names) == len(set(names)) == 5 + 20 + 480 + 1  # seed + apps + hosts + deep-1
    assert "deep-1" in names and "deep-2" not in names  # depth bound
    assert "elsewhere" not in names  # relationship type filter
    assert sorted(s.name for s in impact.services) == ["billing", "checkout", "payments"]
    gets = snow.requests_to("GET", TABLE_GETS)
    assert not snow.requests_to("POST")
    in_lists = [
        len(re.search(r"IN([^\^]*)", r.query["sysparm_query"][0])[1].split(","))  # type: ignore[index]
        for r in gets
        if "IN" in r.query["sysparm_query"][0] and "/cmdb_rel_type" not in r.path
    ]
    assert max(in_lists) == 100  # ids per IN list: a literal, not the code's own constant
    # root + types + 3 levels x 2 directions x chunks (with paging) + details/services chunks
    assert len(gets) <= 45, len(gets)
    print(f"500-CI walk: {len(gets)} GETs for {len(names) + 3} CIs")


@pytest.mark.integration
def test_link_impact_writes_no_duplicates_on_rerun(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    change = snow.insert("change_request", short_description="payments 1.4.0")
    impact = plugin.identify_impact(make_release())
    assert impact is not None
    payments = snow.record("cmdb_ci_service", "payments")["sys_id"]
    # the instance's own "Refresh impacted services" already added the business service
    snow.insert("task_cmdb_ci_service", task=change["sys_id"], cmdb_ci_service=payments)

    link_impact(plugin.client, change["sys_id"], impact)
    snow.clear_log()
    link_impact(plugin.client, change["sys_id"], impact)

    assert not snow.requests_to("POST")
    assert len(snow.requests_to("GET")) == 2
    linked = [r["ci_item"] for r in snow.store.rows_of("task_ci") if r["task"] == change["sys_id"]]
    assert sorted(linked) == sorted(ci.id for ci in impact.cis)
    services = [
        r for r in snow.store.rows_of("task_cmdb_ci_service") if r["task"] == change["sys_id"]
    ]
    assert [r["cmdb_ci_service"] for r in services] == [payments]


# -- a CI named by sys_id works everywhere a name does --------------------------------------
@responses.activate
def test_lookup_takes_a_sys_id_or_a_unique_name() -> None:
    from itsm_bridge_servicenow.change import lookup

    group = "0123456789abcdef0123456789abcdef"
    fake = FakeTables({"sys_user_group": [
        {"sys_id": group, "name": "Change Management"},
        {"sys_id": "g2", "name": "Twins"}, {"sys_id": "g3", "name": "Twins"},
        {"sys_id": "g4", "name": "R^D"},
    ]})  # fmt: skip
    responses.add_callback(responses.GET, TABLE, callback=fake)
    client = unit_client()
    assert lookup(client, "sys_user_group", group, "the group") == group
    assert lookup(client, "sys_user_group", "Change Management", "the group") == group
    assert lookup(client, "sys_user_group", "R^D", "the group") == "g4"
    with pytest.raises(NeedsHuman, match="several sys_user_group records have that name"):
        lookup(client, "sys_user_group", "Twins", "the group")
    with pytest.raises(NeedsHuman, match="'Nobody', which does not exist"):
        lookup(client, "sys_user_group", "Nobody", "the group")
    assert [c["sysparm_query"] for c in fake.calls[:3]] == [
        f"sys_id={group}^NQname={group}",
        "name=Change Management",
        "name=R^^D",
    ]


@pytest.mark.integration
def test_a_service_ci_given_by_sys_id_works_for_change_impact_and_schedules(
    snow: ServiceNowSandbox, make_release: Callable[..., Release]
) -> None:
    api = snow.record("cmdb_ci", "payments-api")["sys_id"]
    config = Settings.model_validate(
        {"url": snow.url, "user": "sandbox", "password": "sandbox",
         "assignment_group": snow.record("sys_user_group", "Change Management")["sys_id"]}
    )  # fmt: skip
    plugin = ServiceNowPlugin(
        config, settings_from_mapping({"services": {"payments": {"ci": api}}})
    )
    release = make_release()

    assert [f.name for f in plugin.freeze_periods(release, *YEAR_END)] == ["Year-end freeze"]
    impact = plugin.identify_impact(release)
    assert impact is not None and impact.cis[0].id == api
    change = plugin.create_change(release.model_copy(update={"impact": impact}), None)
    row = snow.record("change_request", change.id)
    assert row["cmdb_ci"] == api
    assert row["assignment_group"] == config.assignment_group
