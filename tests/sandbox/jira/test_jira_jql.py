"""The JQL subset of the Jira sandbox, evaluated directly against a seeded sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from itsm_bridge_sandbox.jira import JiraSandbox
from itsm_bridge_sandbox.jira.store import JiraError


@pytest.fixture
def jira(seed: dict[str, Any]) -> JiraSandbox:
    return JiraSandbox(seed)  # not started: the JQL engine needs no HTTP


@pytest.mark.parametrize(
    ("query", "keys"),
    [
        ('project = PAY AND fixVersion = "1.1.0"', ["PAY-5", "PAY-6", "PAY-7"]),
        ("fixVersion in (1.0.0, '1.1.0') AND labels = frontend", ["PAY-4"]),
        ('status = "In Progress" ORDER BY key', ["PAY-3", "PAY-6"]),
        ('status in ("To Do", Done) AND labels in (reporting)', ["PAY-7"]),
        ('project = PAY AND status != "To Do" ORDER BY key', ["PAY-1", "PAY-2", "PAY-3", "PAY-6"]),
        ("key in (PAY-2, pay-8) ORDER BY key ASC", ["PAY-2", "PAY-8"]),
        ("issue = PAY-3", ["PAY-3"]),
        ('sprint = "PAY Sprint 1" ORDER BY key', ["PAY-1", "PAY-2", "PAY-3", "PAY-6"]),
        ("sprint = 2", ["PAY-5"]),
        ("sprint in openSprints() AND status = Done", ["PAY-1"]),
        ("project = PAY AND sprint is EMPTY ORDER BY key", ["PAY-4", "PAY-7", "PAY-8"]),
        ("labels != backend ORDER BY key", ["PAY-4", "PAY-6", "PAY-7", "PAY-8"]),
        ("fixVersion != 1.0.0 ORDER BY key", ["PAY-5", "PAY-6", "PAY-7"]),  # no EMPTY ones
        (
            "(labels = frontend OR labels = tech-debt) AND NOT status = Done ORDER BY key DESC",
            ["PAY-8", "PAY-4"],
        ),
        ('summary ~ "refund" ORDER BY key', ["PAY-5", "PAY-6", "PAY-7"]),
        ("project = PAY AND resolution = Unresolved AND type = Bug", ["PAY-3"]),
        ("statusCategory = Done", ["PAY-1"]),
    ],
)
def test_queries(jira: JiraSandbox, query: str, keys: list[str]):
    result = jira.issue_keys(query)
    assert result == keys if "ORDER BY" in query.upper() else sorted(result) == sorted(keys)


def test_updated_has_minute_precision_and_relative_dates(jira: JiraSandbox):
    base = datetime(2026, 11, 28, 5, 30, 45, tzinfo=UTC)
    for n, issue in enumerate(sorted(jira.store.issues.values(), key=lambda i: i.id)):
        issue.updated = base - timedelta(minutes=n)
    assert jira.issue_keys('updated >= "2026-11-28 05:30"') == ["PAY-1"]
    assert jira.issue_keys('updated >= "2026/11/28 05:29" ORDER BY updated DESC') == [
        "PAY-1",
        "PAY-2",
    ]
    assert len(jira.issue_keys('updated < "2026-11-28 05:29"')) == 6
    jira.store.clock = lambda: base + timedelta(minutes=2)
    assert jira.issue_keys("updated >= -3m ORDER BY key") == ["PAY-1", "PAY-2"]


def test_entity_property_search(jira: JiraSandbox):
    jira.store.issue("PAY-7").properties["itsm-bridge"] = {"source": "DMN0001", "n": 3}
    assert jira.issue_keys('issue.property[itsm-bridge].source = "DMN0001"') == ["PAY-7"]
    assert jira.issue_keys("issue.property[itsm-bridge].n > 2") == ["PAY-7"]
    assert jira.issue_keys("issue.property[itsm-bridge].source = other") == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('project = "PAY', "The quoted string 'PAY' has not been completed."),
        ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
        ("fixVersion = 9.9.9", "The value '9.9.9' does not exist for the field 'fixVersion'."),
        ("status = Blocked", "The value 'Blocked' does not exist for the field 'status'."),
        ("key in (PAY-1, PAY-99)", "An issue with key 'PAY-99' does not exist for field 'key'."),
        ("colour = red", "Field 'colour' does not exist or you do not have permission"),
        ("updated >= yesterday", "Date value 'yesterday' for field 'updated' is invalid."),
        ("project = PAY AND", "Error in the JQL Query: Expecting a field name but got end"),
        ("project PAY", "Expecting operator but got 'PAY'"),
        ("project = PAY ORDER BY labels", "Not able to sort using field 'labels'."),
        ("sprint in lateSprints()", "Unable to find JQL function 'lateSprints()'."),
        ("labels ~ x", "The operator '~' is not supported by the 'labels' field."),
    ],
)
def test_invalid_queries(jira: JiraSandbox, query: str, message: str):
    with pytest.raises(JiraError) as err:
        jira.issue_keys(query)
    assert err.value.status == 400
    assert message in err.value.messages[0]
