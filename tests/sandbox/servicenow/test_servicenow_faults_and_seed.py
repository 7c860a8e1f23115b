"""Scripted faults (rate limiting, lost responses) and seed loading."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from itsm_bridge_sandbox.servicenow import ServiceNowSandbox

INCIDENTS = "/api/now/table/incident"


def test_rate_limit_then_recover(http: requests.Session, url: str, sn: ServiceNowSandbox) -> None:
    sn.fail_next("GET", INCIDENTS, 429, count=2)
    for _ in range(2):
        limited = http.get(url + INCIDENTS)
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "1"
        assert "X-RateLimit-Limit" in limited.headers
        assert limited.json()["status"] == "failure"
    assert http.get(url + INCIDENTS).status_code == 200
    assert [r.status for r in sn.requests_to("GET", INCIDENTS)] == [429, 429, 200]


def test_fault_matches_method_and_prefix_only(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    sn.fail_next("POST", INCIDENTS, 503, headers={"Retry-After": "5"})
    assert http.get(url + INCIDENTS).status_code == 200
    assert http.post(url + "/api/now/table/problem", json={}).status_code == 201
    failed = http.post(url + INCIDENTS, json={})
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "5"
    assert http.get(url + INCIDENTS).headers["X-Total-Count"] == "0"  # nothing written


def test_fail_after_write_loses_the_response(
    http: requests.Session, url: str, sn: ServiceNowSandbox
) -> None:
    sn.fail_next("POST", INCIDENTS, 500, fail_after_write=True)
    lost = http.post(url + INCIDENTS, json={"short_description": "written anyway"})
    assert lost.status_code == 500
    rows = http.get(url + INCIDENTS).json()["result"]
    assert [r["short_description"] for r in rows] == ["written anyway"]


def test_seed_content(sn: ServiceNowSandbox) -> None:
    assert sn.record("cmdb_ci", "payments")["sys_class_name"] == "cmdb_ci_service"
    assert sn.record("cmdb_ci", "payments-db")["sys_class_name"] == "cmdb_ci_db_instance"
    blackout = sn.record("cmn_schedule", "Year-end freeze")
    assert blackout["sys_class_name"] == "cmn_schedule_blackout"
    assert blackout["type"] == "blackout"
    span = sn.record("cmn_schedule_span", "Year-end 2026")
    assert (span["schedule"], span["start_date_time"]) == (blackout["sys_id"], "20261215T000000")


def test_seed_rejects_dangling_references(seed: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="no cmdb_ci row"):
        ServiceNowSandbox({"records": {"cmdb_rel_ci": [{"parent": "nope", "child": "x"}]}})
    with pytest.raises(ValueError, match="unknown table"):
        ServiceNowSandbox({"records": {"u_custom": [{}]}})


def test_seed_credentials_and_whole_document(seed: dict[str, Any]) -> None:
    server = ServiceNowSandbox({"servicenow": {**seed, "user": "svc", "password": "pw"}})
    assert (server.user, server.password) == ("svc", "pw")
    assert server.record("cmdb_ci", "payments-api")["name"] == "payments-api"
