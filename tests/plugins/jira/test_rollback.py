"""Step 14 against the sandbox, Cloud and Data Center: every issue of a rolled-back release
ends in the backlog, To Do, without the version, out of open sprints, with one comment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from itsm_bridge.models import BacklogItem, Release
from itsm_bridge_jira import JiraPlugin
from itsm_bridge_sandbox.jira import JiraSandbox

pytestmark = pytest.mark.integration
ROLLED_BACK = ["PAY-12", "PAY-13", "PAY-14", "PAY-15"]  # 1.5.0 in the seed
REASON = "smoke test failed: fees doubled on EUR invoices"


def fields(jira: JiraSandbox, key: str) -> dict[str, Any]:
    return dict(jira.issue(key)["fields"])


def transitions_posted(jira: JiraSandbox, key: str) -> int:
    return len(jira.requests_to("POST", f"/rest/api/2/issue/{key}/transitions"))


def test_rollback_returns_every_issue_to_the_backlog(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    jira.add_issue("PAY", "Also in 1.1.0", fix_versions=["1.1.0", "1.5.0"], sprint="PAY Sprint 1")
    keys = [*ROLLED_BACK, "PAY-16"]
    assert fields(jira, "PAY-13")["status"]["name"] == "Done"  # a Bug: no Done -> To Do
    assert fields(jira, "PAY-13")["issuetype"]["name"] == "Bug"
    items = plugin.release_scope(release)
    assert items is not None and [i.key for i in items] == keys
    jira.clear_log()

    plugin.return_to_backlog(release, items, REASON)

    for key in keys:
        after = fields(jira, key)
        assert after["status"]["name"] == "To Do", key
        assert "1.5.0" not in [v["name"] for v in after["fixVersions"]], key
        assert jira.sprint_of(key) is None, key
        [comment] = jira.comments(key)
        assert REASON in comment and "CHG0030002" in comment
    assert [v["name"] for v in fields(jira, "PAY-16")["fixVersions"]] == ["1.1.0"]  # kept
    assert transitions_posted(jira, "PAY-13") == 2  # Done -> In Progress -> To Do
    assert transitions_posted(jira, "PAY-12") == 1  # In Progress -> To Do
    assert transitions_posted(jira, "PAY-14") == 0  # already To Do
    assert transitions_posted(jira, "PAY-15") == 1  # Task in review: default workflow
    assert len(jira.requests_to("POST", "/rest/agile/1.0/backlog/issue")) == 1
    moved = jira.requests_to("POST", "/rest/agile/1.0/backlog/issue")[0].json()["issues"]
    assert sorted(moved) == ["PAY-12", "PAY-13", "PAY-14", "PAY-16"]  # those in open sprints
    version = jira.version("PAY", "1.5.0")
    assert version is not None and version["released"] is False
    api = "3" if jira.cloud else "2"
    [posted] = jira.requests_to("POST", f"/rest/api/{api}/issue/PAY-13/comment")
    body = posted.json()["body"]
    if jira.cloud:  # REST v3: an ADF document, one paragraph per line
        assert body["type"] == "doc" and body["version"] == 1
        first = body["content"][0]["content"][0]["text"]
        assert first == "itsm-bridge rollback rel-20261128-0000abcd"
    else:  # REST v2: plain text
        assert body.startswith("itsm-bridge rollback rel-20261128-0000abcd\nRelease payments")


def test_a_second_rollback_changes_nothing(
    jira: JiraSandbox,
    plugin: JiraPlugin,
    make_release: Callable[..., Release],
    writes: Callable[[JiraSandbox], list[str]],
) -> None:
    release = make_release()
    items = plugin.release_scope(release) or []
    plugin.return_to_backlog(release, items, REASON)
    jira.clear_log()

    plugin.return_to_backlog(release, items, REASON)

    assert writes(jira) == []
    assert all(len(jira.comments(key)) == 1 for key in ROLLED_BACK)


def test_a_released_version_is_unreleased(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    items = plugin.release_scope(release) or []
    version = jira.version("PAY", "1.5.0")
    assert version is not None
    jira.store.update_version(jira.store.version(version["id"]), {"released": True})

    plugin.return_to_backlog(release, items, REASON)

    assert jira.version("PAY", "1.5.0")["released"] is False  # type: ignore[index]


def test_backlog_moves_go_fifty_at_a_time(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release(version="1.1.0")
    keys = [
        jira.add_issue("PAY", f"bulk {n}", fix_versions=["1.1.0"], sprint="PAY Sprint 1")
        for n in range(120)
    ]
    items = [BacklogItem(system="jira", key=key, summary="bulk") for key in keys]
    jira.clear_log()

    plugin.return_to_backlog(release, items, REASON)

    calls = jira.requests_to("POST", "/rest/agile/1.0/backlog/issue")
    assert [len(c.json()["issues"]) for c in calls] == [50, 50, 20]
    assert all(jira.sprint_of(key) is None for key in keys)


def test_a_deleted_issue_does_not_stop_the_others(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    items = plugin.release_scope(release) or []
    with jira.lock:
        del jira.store.issues[jira.store.issue("PAY-14").id]

    plugin.return_to_backlog(release, items, REASON)

    assert all(fields(jira, k)["status"]["name"] == "To Do" for k in ("PAY-12", "PAY-13"))


def test_resolution_on_a_reopen_screen_is_not_sent(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release]
) -> None:
    from itsm_bridge_sandbox.jira import workflows

    jira.store.project("PAY").workflows["Bug"] = workflows.parse(
        [{"name": "Reopen", "from": ["Done"], "to": "To Do", "screen": ["resolution"]}],
        {"To Do", "In Progress", "In Review", "Done"},
    )
    release = make_release()
    items = [i for i in plugin.release_scope(release) or [] if i.key == "PAY-13"]
    jira.clear_log()

    plugin.return_to_backlog(release, items, REASON)

    assert fields(jira, "PAY-13")["status"]["name"] == "To Do"
    [posted] = jira.requests_to("POST", "/rest/api/2/issue/PAY-13/transitions")
    assert posted.json()["fields"] == {}  # on the screen, optional, not a done status
