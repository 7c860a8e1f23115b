"""Encoded query operators, over HTTP and on the parser directly."""

from __future__ import annotations

import pytest
import requests

from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_sandbox.servicenow.query import parse


def _get(record: dict[str, str], name: str) -> str:
    return record.get(name, "")


ROW = {
    "name": "payments-api",
    "state": "-2",
    "start_date": "2026-12-20 10:00:00",
    "empty": "",
    "short_description": "Deploy Payments 4.3",
}


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ("name=payments-api", True),
        ("name=Payments-api", False),
        ("name!=payments-api", False),
        ("stateIN-5,-2,3", True),
        ("stateNOT IN-5,-2", False),
        ("nameSTARTSWITHpay", True),
        ("nameENDSWITH-API", True),
        ("short_descriptionLIKEpayments", True),
        ("short_descriptionNOTLIKEdeploy", False),
        ("state<0", True),
        ("state<=-2", True),
        ("state>-2", False),
        ("state>=-2", True),
        ("start_date>2026-12-19 23:59:59", True),
        ("start_date<2026-12-20 10:00:00", False),
        ("emptyISEMPTY", True),
        ("emptyISNOTEMPTY", False),
        ("nameISEMPTY^ORstate=-2", True),
        ("name=x^state=-2", False),
        ("name=x^NQstate=-2", True),
        ("name=payments-api^state=-2^short_descriptionLIKE4.3", True),
    ],
)
def test_operator(query: str, matches: bool) -> None:
    assert parse(query).matches(ROW, _get) is matches


def test_or_binds_tighter_than_and() -> None:
    q = parse("name=x^ORname=payments-api^state=3")
    assert not q.matches(ROW, _get)
    assert q.matches({**ROW, "state": "3"}, _get)


def test_escaped_caret_in_value() -> None:
    assert parse("short_description=a^^b").matches({"short_description": "a^b"}, _get)
    injected = parse("name=pay^^NQname!=x^^ORstate=1")  # one term, not a new query or an OR
    assert len(injected.branches) == 1 and len(injected.branches[0]) == 1
    assert injected.matches({"name": "pay^NQname!=x^ORstate=1"}, _get)
    assert not injected.matches({"name": "other", "state": "1"}, _get)


def test_order_by_over_http(http: requests.Session, url: str, sn: ServiceNowSandbox) -> None:
    for priority in ("3", "1", "2"):
        sn.insert("incident", priority=priority, short_description=f"p{priority}")
    asc = http.get(
        f"{url}/api/now/table/incident", params={"sysparm_query": "ORDERBYpriority"}
    ).json()["result"]
    desc = http.get(
        f"{url}/api/now/table/incident", params={"sysparm_query": "priority!=2^ORDERBYDESCpriority"}
    ).json()["result"]
    assert [r["priority"] for r in asc] == ["1", "2", "3"]
    assert [r["priority"] for r in desc] == ["3", "1"]


def test_date_query_over_http(http: requests.Session, url: str, sn: ServiceNowSandbox) -> None:
    sn.insert("change_request", short_description="early", start_date="2026-12-01 08:00:00")
    sn.insert("change_request", short_description="late", start_date="2026-12-20 08:00:00")
    rows = http.get(
        f"{url}/api/now/table/change_request",
        params={"sysparm_query": "start_date>=2026-12-10 00:00:00"},
    ).json()["result"]
    assert [r["short_description"] for r in rows] == ["late"]
