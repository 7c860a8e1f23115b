"""Sandbox behaviour the Jira plugin relies on: workflows per issue type with screens, JQL
dates in the user's time zone or as epoch milliseconds, properties set on create, webhook
retries with the same identifier."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from itsm_bridge.errors import ConfigError
from itsm_bridge_sandbox import Sandbox
from itsm_bridge_sandbox.jira import JiraSandbox, workflows

AUTH = ("sandbox", "sandbox")
STRICT_SEED = {"projects": [{"key": "OPS", "workflows": {"Bug": "strict"}}]}


@pytest.fixture
def strict(_running: dict[str, JiraSandbox], deployment: str) -> JiraSandbox:
    server = _running[deployment]
    server.reset(STRICT_SEED)
    return server


def transitions(sb: JiraSandbox, key: str, expand: str = "") -> list[dict[str, Any]]:
    params = {"expand": expand} if expand else {}
    answer = requests.get(
        f"{sb.url}/rest/api/2/issue/{key}/transitions", params=params, auth=AUTH, timeout=5
    )
    return list(answer.json()["transitions"])


def post_transition(sb: JiraSandbox, key: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{sb.url}/rest/api/2/issue/{key}/transitions", json=body, auth=AUTH, timeout=5
    )


@pytest.mark.integration
def test_the_strict_workflow_has_no_way_back_from_done(strict: JiraSandbox) -> None:
    bug = strict.add_issue("OPS", "a bug", status="Done", issue_type="Bug")
    story = strict.add_issue("OPS", "a story", status="Done")

    assert [(t["name"], t["to"]["name"]) for t in transitions(strict, bug)] == [
        ("Reopen for review", "In Review"),
        ("Reopen", "In Progress"),
    ]
    assert [t["to"]["name"] for t in transitions(strict, story)] == ["To Do"]  # default


@pytest.mark.integration
def test_screens_show_their_fields_only_when_expanded(strict: JiraSandbox) -> None:
    bug = strict.add_issue("OPS", "a bug", status="In Review", issue_type="Bug")

    plain = {t["name"]: t for t in transitions(strict, bug)}
    assert plain["Resolve"]["hasScreen"] is True and "fields" not in plain["Resolve"]
    expanded = {t["name"]: t for t in transitions(strict, bug, "transitions.fields")}
    resolution = expanded["Resolve"]["fields"]["resolution"]
    assert resolution["required"] is True and resolution["name"] == "Resolution"
    assert [v["name"] for v in resolution["allowedValues"]] == ["Done", "Won't Do", "Duplicate"]
    assert expanded["Request changes"]["fields"] == {}


@pytest.mark.integration
def test_required_screen_fields_and_fields_off_the_screen(strict: JiraSandbox) -> None:
    bug = strict.add_issue("OPS", "a bug", status="In Review", issue_type="Bug")
    story = strict.add_issue("OPS", "a story", status="In Review")

    missing = post_transition(strict, bug, {"transition": {"id": "31"}})
    assert missing.status_code == 400
    assert missing.json()["errors"] == {"resolution": "Resolution is required."}
    off_screen = post_transition(
        strict, story, {"transition": {"id": "31"}, "fields": {"resolution": {"name": "Done"}}}
    )
    assert off_screen.status_code == 400
    assert off_screen.json()["errors"] == {
        "resolution": "Field 'resolution' cannot be set. It is not on the appropriate screen, "
        "or unknown."
    }
    done = post_transition(
        strict, bug, {"transition": {"id": "31"}, "fields": {"resolution": {"id": "10001"}}}
    )
    assert done.status_code == 204
    fields = strict.issue(bug)["fields"]
    assert fields["status"]["name"] == "Done" and fields["resolution"]["name"] == "Won't Do"


def test_bad_workflows_in_a_seed_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown workflow 'lenient'"):
        Sandbox({"jira": {"projects": [{"key": "OPS", "workflows": {"Bug": "lenient"}}]}})
    with pytest.raises(ValueError, match="unknown status 'Closed'"):
        workflows.parse([{"name": "Close", "from": ["Done"], "to": "Closed"}], {"Done"})
    with pytest.raises(ValueError, match="not on a screen"):
        workflows.parse(
            [{"name": "x", "from": ["Done"], "to": "Done", "required": ["resolution"]}], {"Done"}
        )
    with pytest.raises(ConfigError, match="not an IANA time zone"):
        Sandbox({"jira": {"timezone": "Mars/Olympus"}})


def test_jql_dates_are_read_in_the_users_zone_and_numbers_are_instants() -> None:
    sb = JiraSandbox({"timezone": "America/New_York", "projects": [{"key": "OPS"}]})
    key = sb.add_issue("OPS", "changed at 15:00 UTC")
    sb.store.issue(key).updated = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # 10:00 in New York

    assert sb.issue_keys('updated >= "2026-11-28 10:00"') == [key]
    assert sb.issue_keys('updated >= "2026-11-28 14:00"') == []  # 14:00 in New York = 19:00 UTC
    millis = int(datetime(2026, 11, 28, 15, 0, tzinfo=UTC).timestamp() * 1000)
    assert sb.issue_keys(f"updated >= {millis}") == [key]
    assert sb.issue_keys(f"updated >= {millis + 1}") == []
    assert sb.issue(key)["fields"]["updated"] == "2026-11-28T10:00:00.000-0500"


@pytest.mark.integration
def test_timestamps_and_myself_show_the_users_zone(sandbox: JiraSandbox) -> None:
    sandbox.set_timezone("Asia/Kolkata")
    me = requests.get(f"{sandbox.url}/rest/api/2/myself", auth=AUTH, timeout=5).json()
    assert me["timeZone"] == "Asia/Kolkata"
    assert sandbox.issue("PAY-1")["fields"]["created"].endswith("+0530")
    sandbox.reset()
    assert sandbox.store.timezone == "UTC"  # a reset forgets it


@pytest.mark.integration
def test_properties_arrive_with_the_created_issue(sandbox: JiraSandbox) -> None:
    created = requests.post(
        f"{sandbox.url}/rest/api/2/issue",
        json={
            "fields": {"project": {"key": "PAY"}, "summary": "x", "issuetype": {"name": "Task"}},
            "properties": [{"key": "itsm-bridge", "value": {"number": "DMND0001001"}}],
        },
        auth=AUTH,
        timeout=5,
    )
    assert created.status_code == 201
    assert sandbox.properties(created.json()["key"]) == {"itsm-bridge": {"number": "DMND0001001"}}
    count = len(sandbox.issue_keys("project = PAY"))
    bad = requests.post(
        f"{sandbox.url}/rest/api/2/issue",
        json={
            "fields": {"project": {"key": "PAY"}, "summary": "y", "issuetype": {"name": "Task"}},
            "properties": {"itsm-bridge": 1},
        },
        auth=AUTH,
        timeout=5,
    )
    assert bad.status_code == 400
    assert len(sandbox.issue_keys("project = PAY")) == count  # the refused create left nothing
