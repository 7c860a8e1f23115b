"""pysnow 0.7.17 against the sandbox: the client the plugins' users know must just work."""

from __future__ import annotations

import pysnow
import pytest

from itsm_bridge_sandbox.servicenow import ServiceNowSandbox


@pytest.fixture
def client(sn: ServiceNowSandbox) -> pysnow.Client:
    host = sn.url.removeprefix("http://")
    return pysnow.Client(host=host, user="sandbox", password="sandbox", use_ssl=False)


def test_create_query_update_delete(client: pysnow.Client, sn: ServiceNowSandbox) -> None:
    incidents = client.resource(api_path="/table/incident")
    created = incidents.create(
        payload={"short_description": "pysnow made me", "cmdb_ci": "payments-api"}
    ).one()
    assert created["number"] == "INC0010001"
    assert created["cmdb_ci"]["value"] == sn.record("cmdb_ci", "payments-api")["sys_id"]

    found = incidents.get(query={"number": "INC0010001"}).one()
    assert found["sys_id"] == created["sys_id"]

    updated = incidents.update(
        query={"number": "INC0010001"}, payload={"short_description": "changed"}
    ).one()
    assert updated["short_description"] == "changed"
    assert sn.record("incident", "INC0010001")["short_description"] == "changed"

    result = incidents.delete(query={"number": "INC0010001"})
    assert result == {"status": "record deleted"}
    with pytest.raises(pysnow.exceptions.NoResults):
        incidents.get(query={"number": "INC0010001"}).one()


def test_paging_with_limit_and_offset(client: pysnow.Client, sn: ServiceNowSandbox) -> None:
    for n in range(7):
        sn.insert("problem", short_description=f"p{n}")
    problems = client.resource(api_path="/table/problem")
    seen: list[str] = []
    offset = 0
    while True:
        response = problems.get(query="ORDERBYnumber", limit=3, offset=offset)
        page = response.all()
        assert response.headers["X-Total-Count"] == "7"
        seen += [row["number"] for row in page]
        if 'rel="next"' not in response.headers["Link"]:
            break
        offset += 3
    assert seen == [f"PRB00{40001 + n}" for n in range(7)]


def test_streamed_response_and_query_builder(client: pysnow.Client, sn: ServiceNowSandbox) -> None:
    sn.insert("incident", short_description="db slow", priority="1")
    sn.insert("incident", short_description="api slow", priority="3")
    query = (
        pysnow.QueryBuilder()
        .field("priority")
        .less_than_or_equal(2)
        .AND()
        .field("short_description")
        .contains("slow")
    )
    incidents = client.resource(api_path="/table/incident")
    rows = list(incidents.get(query=query, stream=True).all())
    assert [r["short_description"] for r in rows] == ["db slow"]
    assert incidents.get(query={"number": "INC9999999"}).all() == []


def test_display_value_and_fields_via_pysnow(client: pysnow.Client) -> None:
    cis = client.resource(api_path="/table/cmdb_rel_ci")
    rows = cis.get(
        query={},
        fields=["parent", "child", "type"],
        display_value=True,
        exclude_reference_link=True,
    ).all()
    pairs = {(r["parent"], r["type"], r["child"]) for r in rows}
    assert ("payments", "Depends on::Used by", "payments-api") in pairs
    assert ("payments-api", "Runs on::Runs", "pay-app-01") in pairs
