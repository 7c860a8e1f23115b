"""Choosing transitions: by target status, the shortest way, fields only from the screen.
Transitions are shaped like "Get transitions" with `expand=transitions.fields`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from itsm_bridge.errors import NeedsHuman
from itsm_bridge_jira import JiraPlugin
from itsm_bridge_jira.workflow import Transition, screen_fields, shortest
from itsm_bridge_sandbox.jira import JiraSandbox, workflows

RESOLUTION = {
    "required": True,
    "schema": {"type": "resolution", "system": "resolution"},
    "name": "Resolution",
    "key": "resolution",
    "hasDefaultValue": False,
    "operations": ["set"],
    "allowedValues": [
        {"self": "https://acme.atlassian.net/rest/api/2/resolution/10000", "id": "10000",
         "name": "Done"},
        {"self": "https://acme.atlassian.net/rest/api/2/resolution/10001", "id": "10001",
         "name": "Won't Do"},
    ],
}  # fmt: skip


def t(name: str, to: str, category: str = "indeterminate", **fields: Any) -> Transition:
    return Transition(id=name, name=name, to=to, category=category, fields=fields)


def graph(edges: dict[str, list[Transition]]) -> Callable[[str], list[Transition]]:
    return lambda status: edges.get(status, [])


def test_the_shortest_way_is_found_breadth_first() -> None:
    edges = {
        "done": [t("Reopen for review", "In Review"), t("Reopen", "In Progress")],
        "in review": [t("Request changes", "In Progress")],
        "in progress": [t("Back to backlog", "To Do", "new")],
    }
    assert shortest(graph(edges), "Done", "To Do") == ["in progress", "to do"]
    assert shortest(graph(edges), "In Review", "to do") == ["in progress", "to do"]
    assert shortest(graph(edges), "To Do", "Done") is None
    assert shortest(graph(edges), "Done", "done") == []


def test_resolution_is_sent_only_from_the_screen() -> None:
    plain = t("Resolve", "Done", "done")
    assert screen_fields("PAY-1", plain, "Done", last=True) == {}
    on_screen = t("Resolve", "Done", "done", resolution=RESOLUTION)
    assert screen_fields("PAY-1", on_screen, "Done", last=True) == {"resolution": {"id": "10000"}}
    assert screen_fields("PAY-1", on_screen, "won't do", last=True) == {
        "resolution": {"id": "10001"}
    }
    optional = t("Reopen", "To Do", "new", resolution={**RESOLUTION, "required": False})
    assert screen_fields("PAY-1", optional, "Done", last=True) == {}  # not a done status


def test_a_resolution_the_screen_does_not_offer_asks_a_person() -> None:
    step = t("Resolve", "Done", "done", resolution=RESOLUTION)
    with pytest.raises(NeedsHuman, match="resolution 'Fixed' is not offered"):
        screen_fields("PAY-1", step, "Fixed", last=True)


def test_a_required_field_the_bridge_does_not_fill_asks_a_person() -> None:
    step = t("Reopen", "To Do", "new", customfield_10050={"required": True, "name": "Root cause"})
    with pytest.raises(NeedsHuman, match="requires Root cause"):
        screen_fields("PAY-1", step, "Done", last=True)
    defaulted = {"required": True, "name": "Team", "hasDefaultValue": True}
    assert screen_fields("PAY-1", t("Reopen", "To Do", "new", team=defaulted), "Done", True) == {}


@pytest.mark.integration
def test_an_issue_alone_in_its_workflow_learns_from_other_issues(
    jira: JiraSandbox, plugin: JiraPlugin
) -> None:
    # PAY-13 (a Bug, Done) is moved by itself: the exits of In Review and In Progress for
    # Bugs are read from PAY-10 (In Review) and PAY-3 (In Progress), never guessed
    taken = plugin.mover().move("PAY-13", "Bug", "Done", "To Do")

    assert taken == ["Reopen", "Back to backlog"]
    assert jira.issue("PAY-13")["fields"]["status"]["name"] == "To Do"
    assert not jira.requests_to("POST", "/rest/api/2/issue/PAY-10")  # samples only read
    assert not jira.requests_to("POST", "/rest/api/2/issue/PAY-3")


@pytest.mark.integration
def test_without_any_sample_the_closest_category_is_tried(
    jira: JiraSandbox, plugin: JiraPlugin
) -> None:
    jira.set_status("PAY-3", "To Do")  # no Bug left In Progress
    jira.set_status("PAY-10", "To Do")  # nor In Review

    taken = plugin.mover().move("PAY-13", "Bug", "Done", "To Do")

    assert jira.issue("PAY-13")["fields"]["status"]["name"] == "To Do"
    assert taken[-1] == "Back to backlog" and len(taken) in (2, 3)


@pytest.mark.integration
def test_a_status_out_of_reach_asks_a_person(
    jira: JiraSandbox, make_plugin: Callable[..., JiraPlugin]
) -> None:
    jira.store.project("PAY").workflows["Bug"] = workflows.parse(
        [
            {"name": "Reopen", "from": ["Done"], "to": "In Review"},
            {"name": "Resolve", "from": ["In Review"], "to": "Done"},
        ],
        set(jira.statuses()),
    )
    plugin = make_plugin(max_transitions=4)

    with pytest.raises(NeedsHuman, match=r"no transition leads PAY-13|did not reach"):
        plugin.mover().move("PAY-13", "Bug", "Done", "To Do")


@pytest.mark.integration
def test_a_transition_named_like_the_target_is_not_taken_for_it(
    jira: JiraSandbox, plugin: JiraPlugin
) -> None:
    jira.store.project("PAY").workflows["Bug"] = workflows.parse(
        [
            {"name": "To Do", "from": ["Done"], "to": "In Review"},  # a name, not a target
            {"name": "Reopen", "from": ["Done"], "to": "To Do"},
            {"name": "Back", "from": ["In Review"], "to": "Done"},
        ],
        set(jira.statuses()),
    )

    assert plugin.mover().move("PAY-13", "Bug", "Done", "To Do") == ["Reopen"]
