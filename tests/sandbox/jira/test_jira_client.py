"""Conformance: the real `jira` client library (3.10.x) against the sandbox, both deployments."""

from __future__ import annotations

from typing import Any

import pytest
from jira import JIRA, JIRAError

from itsm_bridge_sandbox.jira import JiraSandbox

pytestmark = pytest.mark.integration


def test_client_init_reads_server_info(sandbox: JiraSandbox, client: JIRA, deployment: str):
    assert client.deploymentType == deployment
    assert client._is_cloud is (deployment == "Cloud")
    assert client.myself()["displayName"] == "Sandbox User"
    assert sandbox.requests_to("GET", "/rest/api/2/serverInfo")


def test_search_by_fix_version(client: JIRA):
    issues = client.search_issues('project = PAY AND fixVersion = "1.0.0" ORDER BY key ASC')
    assert [i.key for i in issues] == ["PAY-1", "PAY-2", "PAY-3", "PAY-4"]
    assert issues[1].fields.status.name == "In Review"
    assert [v.name for v in issues[0].fields.fixVersions] == ["1.0.0"]


def test_search_paginates_on_server(server_sandbox: JiraSandbox, jira_connect: Any):
    server_sandbox.search_max_results = 3  # the server caps maxResults like Jira does
    client = jira_connect(server_sandbox)
    server_sandbox.clear_log()
    issues = client.search_issues("project = PAY ORDER BY key ASC", maxResults=False)
    assert [i.key for i in issues] == [f"PAY-{n}" for n in range(1, 9)]
    pages = server_sandbox.requests_to("GET", "/rest/api/2/search")
    assert [p.query.get("startAt", ["0"])[0] for p in pages] == ["0", "3", "6"]
    assert issues.total == 8


def test_search_paginates_on_cloud_with_next_page_token(
    cloud_sandbox: JiraSandbox, jira_connect: Any
):
    cloud_sandbox.cloud_max_results = 3
    client = jira_connect(cloud_sandbox)
    cloud_sandbox.clear_log()
    issues = client.search_issues("project = PAY ORDER BY key ASC", maxResults=False)
    assert [i.key for i in issues] == [f"PAY-{n}" for n in range(1, 9)]
    pages = cloud_sandbox.requests_to("GET", "/rest/api/2/search/jql")
    assert len(pages) == 3
    assert "nextPageToken" not in pages[0].query and "nextPageToken" in pages[1].query
    assert not cloud_sandbox.requests_to("GET", "/rest/api/2/search?")


def test_search_with_fields_narrows_the_result(client: JIRA):
    issues = client.search_issues("key = PAY-2", fields="summary,labels")
    assert set(issues[0].raw["fields"]) == {"summary", "labels"}
    assert issues[0].fields.labels == ["backend", "security"]


def test_create_issue_and_read_it_back(sandbox: JiraSandbox, client: JIRA):
    issue = client.create_issue(
        project="PAY",
        summary="Chargeback handling",
        issuetype={"name": "Bug"},
        description="Handle disputes",
        labels=["itsm-bridge:PRB0040001"],
        fixVersions=[{"name": "1.1.0"}],
    )
    assert issue.key == "PAY-9"
    assert issue.fields.status.name == "To Do"
    assert issue.fields.issuetype.name == "Bug"
    assert sandbox.issue("PAY-9")["fields"]["fixVersions"][0]["name"] == "1.1.0"
    assert sandbox.issue("PAY-9")["fields"]["labels"] == ["itsm-bridge:PRB0040001"]
    assert issue.fields.created.endswith("+0000")


def test_create_issue_rejects_unknown_project(client: JIRA):
    with pytest.raises(JIRAError) as err:
        client.create_issue(
            fields={"project": {"key": "NOPE"}, "summary": "x", "issuetype": {"name": "Story"}}
        )
    assert err.value.status_code == 400
    assert err.value.response.json()["errors"] == {"project": "valid project is required"}


def transition_to(client: JIRA, key: str, status: str) -> None:
    """What a plugin must do: find the transition whose target is `status`."""
    found = [t for t in client.transitions(key) if t["to"]["name"] == status]
    if not found:
        raise LookupError(f"no transition from {key} to {status}")
    client.transition_issue(key, found[0]["id"])


def test_transition_by_target_status(sandbox: JiraSandbox, client: JIRA):
    names = {t["name"] for t in client.transitions("PAY-3")}  # In Progress
    assert names == {"Send to review", "Resolve", "Back to backlog"}
    assert "In Review" not in names  # transition names are not status names
    transition_to(client, "PAY-3", "To Do")
    assert sandbox.issue("PAY-3")["fields"]["status"]["name"] == "To Do"
    transition_to(client, "PAY-3", "In Progress")
    transition_to(client, "PAY-3", "Done")
    fields = client.issue("PAY-3").fields
    assert fields.status.name == "Done"
    assert fields.status.statusCategory.key == "done"
    assert fields.resolution.name == "Done"
    with pytest.raises(LookupError):
        transition_to(client, "PAY-3", "In Review")  # no Done -> In Review transition


def test_invalid_transition_is_rejected(client: JIRA):
    with pytest.raises(JIRAError) as err:
        client.transition_issue("PAY-4", "31")  # Resolve is not available from To Do
    assert err.value.status_code == 400
    assert "Transition id '31' is not valid for this issue." in err.value.text


def test_comment(sandbox: JiraSandbox, client: JIRA):
    created = client.add_comment("PAY-1", "Released in 1.0.0")
    assert created.body == "Released in 1.0.0"
    assert [c.body for c in client.comments("PAY-1")] == ["Released in 1.0.0"]
    assert sandbox.comments("PAY-1") == ["Released in 1.0.0"]


def test_remote_link_upserts_by_global_id(sandbox: JiraSandbox, client: JIRA):
    first = client.add_remote_link(
        "PAY-4",
        {"url": "https://snow/dmn1", "title": "DMN0001"},
        globalId="servicenow:dmn_demand:abc",
    )
    second = client.add_remote_link(
        "PAY-4",
        {"url": "https://snow/dmn1b", "title": "DMN0001"},
        globalId="servicenow:dmn_demand:abc",
    )
    client.add_remote_link("PAY-4", {"url": "https://other", "title": "Other"})
    assert first.id == second.id
    links = sandbox.remote_links("PAY-4")
    assert len(links) == 2
    assert links[0]["object"]["url"] == "https://snow/dmn1b"
    assert [link.object.title for link in client.remote_links("PAY-4")] == ["DMN0001", "Other"]


def test_edit_with_fields_and_update_operations(sandbox: JiraSandbox, client: JIRA):
    issue = client.issue("PAY-2")
    issue.update(
        fields={"summary": "3DS2 challenge flow"},
        update={
            "labels": [{"add": "release-1.0"}, {"remove": "security"}],
            "fixVersions": [{"remove": {"name": "1.0.0"}}, {"add": {"name": "1.1.0"}}],
        },
    )
    fields = sandbox.issue("PAY-2")["fields"]
    assert fields["summary"] == "3DS2 challenge flow"
    assert fields["labels"] == ["backend", "release-1.0"]
    assert [v["name"] for v in fields["fixVersions"]] == ["1.1.0"]
    changed = {
        item["field"]
        for h in sandbox.issue("PAY-2")["changelog"]["histories"]
        for item in h["items"]
    }
    assert {"summary", "labels", "Fix Version"} <= changed


def test_version_create_release_unrelease(sandbox: JiraSandbox, client: JIRA, no_sleep: Any):
    version = client.create_version("1.2.0", "PAY", description="Next")
    assert version.released is False and version.projectId == int(client.project("PAY").id)
    version.update(released=True, releaseDate="2026-11-28")
    assert sandbox.version("PAY", "1.2.0")["released"] is True
    assert sandbox.version("PAY", "1.2.0")["releaseDate"] == "2026-11-28"
    assert client.version(version.id).released is True
    version.update(released=False)
    assert sandbox.version("PAY", "1.2.0")["released"] is False
    assert [v.name for v in client.project_versions("PAY")] == ["1.0.0", "1.1.0", "1.2.0"]
    with pytest.raises(JIRAError) as err:
        client.create_version("1.2.0", "PAY")
    assert err.value.status_code == 400


def test_entity_properties(sandbox: JiraSandbox, client: JIRA):
    client.add_issue_property("PAY-5", "itsm-bridge", {"source": "PRB0040001", "n": 1})
    assert client.issue_property("PAY-5", "itsm-bridge").value.source == "PRB0040001"
    assert sandbox.properties("PAY-5") == {"itsm-bridge": {"source": "PRB0040001", "n": 1}}
    found = client.search_issues('issue.property[itsm-bridge].source = "PRB0040001"')
    assert [i.key for i in found] == ["PAY-5"]
    with pytest.raises(JIRAError) as err:
        client.issue_property("PAY-5", "missing")
    assert err.value.status_code == 404


def test_boards_sprints_and_moves(sandbox: JiraSandbox, client: JIRA):
    boards = client.boards(projectKeyOrID="PAY")
    assert [b.name for b in boards] == ["PAY board"]
    sprints = client.sprints(boards[0].id, state="active")
    assert [s.name for s in sprints] == ["PAY Sprint 1"]
    response = client.add_issues_to_sprint(sprints[0].id, ["PAY-4", "PAY-7"])
    assert response.status_code == 204
    assert sandbox.sprint_of("PAY-4") == "PAY Sprint 1"
    in_sprint = client.search_issues("sprint in openSprints() AND key in (PAY-4, PAY-8)")
    assert [i.key for i in in_sprint] == ["PAY-4"]
    response = client.move_to_backlog(["PAY-4", "PAY-2"])
    assert response.status_code == 204
    assert sandbox.sprint_of("PAY-4") is None and sandbox.sprint_of("PAY-2") is None
    backlog = client.search_issues("project = PAY AND sprint is EMPTY ORDER BY key ASC")
    assert "PAY-2" in [i.key for i in backlog]


def test_rate_limited_request_is_retried_by_the_client(sandbox: JiraSandbox, client: JIRA):
    sandbox.rate_limit(2, retry_after=1)
    sandbox.clear_log()
    assert client.issue("PAY-1").key == "PAY-1"
    assert [r.status for r in sandbox.requests_to("GET", "/rest/api/2/issue/PAY-1")] == [
        429,
        429,
        200,
    ]
