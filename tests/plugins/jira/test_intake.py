"""Step 3 (intake) against the sandbox, Cloud and Data Center: one issue per work item, found
again by its label, with its source in an entity property and a remote link."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from itsm_bridge.http import HTTPTransientError
from itsm_bridge.models import WorkItem
from itsm_bridge_jira import JiraPlugin
from itsm_bridge_sandbox.jira import JiraSandbox

pytestmark = pytest.mark.integration
DEMAND = WorkItem(
    source_system="servicenow",
    source_kind="demand",
    source_id="d" * 32,
    number="DMND0001001",
    title="Refunds in the merchant portal",
    description="Merchants want to refund without calling support.",
    url="https://acme.service-now.com/dmn_demand.do?sys_id=" + "d" * 32,
)
PROBLEM = DEMAND.model_copy(
    update={"source_kind": "problem", "number": "PRB0040001", "title": "Duplicate refunds"}
)
LABEL = "itsm-bridge:servicenow:demand:DMND0001001"


def creates(jira: JiraSandbox) -> int:
    return len([r for r in jira.requests_to("POST") if r.path == "/rest/api/2/issue"])


def test_intake_twice_gives_one_issue(jira: JiraSandbox, plugin: JiraPlugin) -> None:
    first = plugin.add_to_backlog(DEMAND)
    second = plugin.add_to_backlog(DEMAND)

    assert first is not None and second is not None and first.key == second.key
    assert jira.issue_keys(f'labels = "{LABEL}"') == [first.key]
    assert creates(jira) == 1
    issue = jira.issue(first.key)["fields"]
    assert issue["issuetype"]["name"] == "Story"
    assert issue["summary"] == "DMND0001001: Refunds in the merchant portal"
    assert "Merchants want to refund" in issue["description"] and DEMAND.url in issue["description"]
    assert jira.properties(first.key)["itsm-bridge"]["source_key"] == DEMAND.source_key
    [link] = jira.remote_links(first.key)  # posted twice, upserted by its global id
    assert link["globalId"] == "itsm-bridge:servicenow:demand:DMND0001001"
    assert link["object"]["url"] == DEMAND.url and link["object"]["title"] == "DMND0001001"
    assert first.url == f"{jira.url}/browse/{first.key}" and first.kind == "Story"


def test_a_problem_becomes_a_bug(jira: JiraSandbox, make_plugin: Callable[..., JiraPlugin]) -> None:
    plugin = make_plugin(issue_types={"problem": "Task"})

    item = plugin.add_to_backlog(PROBLEM)

    assert item is not None and jira.issue(item.key)["fields"]["issuetype"]["name"] == "Task"
    bug = make_plugin().add_to_backlog(PROBLEM.model_copy(update={"number": "PRB0040002"}))
    assert bug is not None and bug.kind == "Bug"


def test_an_issue_left_half_done_is_repaired_not_duplicated(
    jira: JiraSandbox, plugin: JiraPlugin
) -> None:
    # an earlier attempt created the issue, then stopped before its property and link
    key = jira.add_issue("PAY", "DMND0001001: Refunds", labels=[LABEL])
    jira.clear_log()

    item = plugin.add_to_backlog(DEMAND)

    assert item is not None and item.key == key
    assert creates(jira) == 0
    assert jira.properties(key)["itsm-bridge"]["number"] == "DMND0001001"
    assert len(jira.remote_links(key)) == 1


def test_a_failed_create_is_not_retried(jira: JiraSandbox, plugin: JiraPlugin) -> None:
    jira.fail_next("POST", "/rest/api/2/issue", 503)

    with pytest.raises(HTTPTransientError):
        plugin.add_to_backlog(DEMAND)

    assert creates(jira) == 1
    item = plugin.add_to_backlog(DEMAND)  # the core's retry looks first, then creates
    assert item is not None and jira.issue_keys(f'labels = "{LABEL}"') == [item.key]
