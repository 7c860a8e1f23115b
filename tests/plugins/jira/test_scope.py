"""Steps 3 and 10 against the sandbox, Cloud and Data Center: the release's issues, paged the
way each deployment pages, with an explicit field list; the version created when missing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from itsm_bridge.models import Release
from itsm_bridge_jira import JiraPlugin
from itsm_bridge_sandbox.jira import JiraSandbox

pytestmark = pytest.mark.integration
MANY = 250


def searches(jira: JiraSandbox) -> list[dict[str, object]]:
    path = "/rest/api/3/search/jql" if jira.cloud else "/rest/api/2/search"
    return [r.json() for r in jira.requests_to("POST", path)]


def test_scope_over_250_issues_pages_correctly(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release]
) -> None:
    jira.add_project("BIG", versions=["3.0.0"])
    keys = [jira.add_issue("BIG", f"issue {n}", fix_versions=["3.0.0"]) for n in range(MANY)]
    plugin.config.project = "BIG"
    jira.clear_log()

    items = plugin.release_scope(make_release(version="3.0.0"))

    assert items is not None and [i.key for i in items] == sorted(keys, key=lambda k: int(k[4:]))
    pages = searches(jira)
    assert len(pages) == 3  # 100 + 100 + 50
    assert all(p["fields"] == ["summary", "status", "issuetype"] for p in pages)
    if jira.cloud:
        assert "nextPageToken" not in pages[0]
        assert pages[1]["nextPageToken"] and pages[2]["nextPageToken"] != pages[1]["nextPageToken"]
        assert not jira.requests_to(path_prefix="/rest/api/2/search")  # 410 Gone on Cloud
    else:
        assert [p["startAt"] for p in pages] == [0, 100, 200]
        assert not jira.requests_to(path_prefix="/rest/api/3")  # no v3 on Data Center


def test_a_capped_page_size_still_reads_everything(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release]
) -> None:
    jira.add_project("BIG", versions=["3.0.0"])
    for n in range(MANY):
        jira.add_issue("BIG", f"issue {n}", fix_versions=["3.0.0"])
    plugin.config.project = "BIG"
    jira.search_max_results = jira.cloud_max_results = 40  # the site gives less than asked
    jira.clear_log()

    items = plugin.release_scope(make_release(version="3.0.0"))

    assert items is not None and len(items) == MANY
    assert len(searches(jira)) == 7  # ceil(250 / 40)


def test_items_carry_type_status_and_link(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release]
) -> None:
    items = plugin.release_scope(make_release(version="1.4.0")) or []

    assert [(i.key, i.kind, i.status) for i in items] == [
        ("PAY-9", "Story", "In Review"),
        ("PAY-10", "Bug", "In Review"),
        ("PAY-11", "Story", "To Do"),
    ]
    assert items[0].url == f"{jira.url}/browse/PAY-9"
    assert items[0].summary == "Approve refunds below the threshold automatically"
    assert {i.system for i in items} == {"jira"}


def test_a_missing_version_is_created_with_the_planned_day(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release(version="2.0.0")  # window 2026-12-05 21:00 UTC: 22:00 in Berlin
    jira.clear_log()

    assert plugin.release_scope(release) == []
    assert plugin.release_scope(release) == []

    version = jira.version("PAY", "2.0.0")
    assert version is not None and version["releaseDate"] == "2026-12-05"
    assert len(jira.requests_to("POST", "/rest/api/2/version")) == 1
    [search] = searches(jira)[:1]
    assert f"fixVersion = {version['id']}" in str(search["jql"])


def test_the_version_name_and_scope_come_from_the_configuration(
    jira: JiraSandbox,
    make_plugin: Callable[..., JiraPlugin],
    make_release: Callable[..., Release],
) -> None:
    jira.add_project("OPS", versions=["payments-7"])
    jira.add_issue("OPS", "in scope", fix_versions=["payments-7"], labels=["ship"])
    jira.add_issue("OPS", "not shipped", fix_versions=["payments-7"])
    plugin = make_plugin(
        project="OPS",
        version_name="{service}-{version}",
        scope_jql="project = {project} AND fixVersion = {version} AND labels = ship",
    )

    items = plugin.release_scope(make_release(version="7")) or []

    assert [i.summary for i in items] == ["in scope"]


def test_the_release_sees_an_issue_added_to_its_version(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release(version="1.4.0")
    before = plugin.release_scope(release) or []
    key = jira.add_issue("PAY", "late addition", fix_versions=["1.4.0"], issue_type="Task")

    after = plugin.release_scope(release) or []

    assert [i.key for i in after] == [*(i.key for i in before), key]
