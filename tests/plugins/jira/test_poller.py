"""The `jira` poller against the sandbox, Cloud and Data Center: nothing is missed when the
integration user's time zone is not UTC, when Jira's clock differs from ours, or across a
restart; what the overlap reads twice is stored once."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from itsm_bridge.pollers import Poller as Registered
from itsm_bridge.pollers import run_poller
from itsm_bridge.store import Store, open_store
from itsm_bridge_jira import JiraPlugin
from itsm_bridge_jira.poller import Poller, millis, parse_time
from itsm_bridge_sandbox import load_seed
from itsm_bridge_sandbox.jira import JiraSandbox

pytestmark = pytest.mark.integration


def registered(plugin: JiraPlugin) -> Registered:
    found: list[Registered] = []
    plugin.register_pollers(lambda name, every, poll: found.append(Registered(name, every, poll)))
    [poller] = found
    return poller


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path}/bridge.db")


def stored(store: Store) -> list[dict[str, object]]:
    with store.begin() as tx:
        return tx.inbox_pending(limit=1000)


def move_to_version(jira: JiraSandbox, key: str, version: str) -> None:
    """A person adds the issue to a version (through REST, as Jira records it)."""
    import requests

    response = requests.put(
        f"{jira.url}/rest/api/2/issue/{key}",
        json={"update": {"fixVersions": [{"add": {"name": version}}]}},
        auth=("sandbox", "sandbox"),
        timeout=5,
    )
    assert response.status_code == 204


def test_nothing_is_missed_in_a_user_time_zone_west_of_utc(
    jira: JiraSandbox, plugin: JiraPlugin, store: Store
) -> None:
    jira.set_timezone("America/New_York")  # JQL dates without a zone are read in New York
    poller = registered(plugin)
    run_poller(store, poller)
    before = {row["dedupe_key"] for row in stored(store)}

    move_to_version(jira, "PAY-8", "1.5.0")
    run_poller(store, poller)

    new = [row for row in stored(store) if row["dedupe_key"] not in before]
    assert [row["payload"]["key"] for row in new] == ["PAY-8"]  # type: ignore[index]
    assert new[0]["kind"] == "scope"
    assert new[0]["payload"]["versions"] == ["1.5.0"]  # type: ignore[index]
    searched = [r.json()["jql"] for r in jira.requests_to("POST") if "search" in r.path]
    assert all("updated >= " in q and '"' not in q.split("updated >= ")[1] for q in searched)


def test_jira_clock_behind_ours_misses_nothing(
    jira: JiraSandbox, plugin: JiraPlugin, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jira.store, "clock", lambda: datetime.now(UTC) - timedelta(hours=3))
    jira.reset(load_seed()["jira"])  # every timestamp from Jira's (late) clock
    poller = registered(plugin)
    run_poller(store, poller)
    before = {row["dedupe_key"] for row in stored(store)}

    move_to_version(jira, "PAY-4", "1.4.0")
    run_poller(store, poller)

    new = [row for row in stored(store) if row["dedupe_key"] not in before]
    assert [row["payload"]["key"] for row in new] == ["PAY-4"]  # type: ignore[index]


def test_a_restarted_bridge_sees_what_changed_while_it_was_down(
    jira: JiraSandbox, make_plugin: Callable[..., JiraPlugin], store: Store
) -> None:
    run_poller(store, registered(make_plugin()))
    with store.begin() as tx:
        cursor = tx.cursor("poller.jira")
    assert cursor is not None and json.loads(cursor)["updated"] > 0

    move_to_version(jira, "PAY-7", "1.5.0")  # the bridge is down
    _, new = run_poller(store, registered(make_plugin()))  # a new process, same store

    assert new >= 1 and "PAY-7" in [r["payload"]["key"] for r in stored(store)]  # type: ignore[index]


def test_the_overlap_reads_twice_and_stores_once(
    jira: JiraSandbox, plugin: JiraPlugin, store: Store
) -> None:
    poller = registered(plugin)
    move_to_version(jira, "PAY-8", "1.4.0")
    first = run_poller(store, poller)
    second = run_poller(store, poller)

    assert first[0] >= 1 and second[0] == first[0]  # read again inside the overlap
    assert second[1] == 0  # same (issue id, updated): stored once
    keys = [row["dedupe_key"] for row in stored(store)]
    assert len(keys) == len(set(keys))


def test_the_cursor_never_moves_back(jira: JiraSandbox, plugin: JiraPlugin) -> None:
    poll = Poller(plugin.client)
    newest = max(
        millis(jira.issue(k)["fields"]["updated"]) for k in jira.issue_keys("project = PAY")
    )
    ahead = json.dumps({"updated": newest + 30_000})  # past every issue, inside the overlap

    events, cursor = poll(ahead)

    assert events  # the overlap reads the newest issues again...
    assert cursor == ahead  # ...but the cursor stays where it was
    far = json.dumps({"updated": 4_102_444_800_000})  # 2100-01-01
    assert poll(far) == ([], far)


def test_jira_timestamps_keep_their_offset() -> None:
    assert parse_time("2026-11-28T05:30:00.000-0500") == datetime(2026, 11, 28, 10, 30, tzinfo=UTC)
    assert millis("2026-11-28T10:30:00.000+0000") == millis("2026-11-28T11:30:00.000+0100")
    assert parse_time("2026-11-28T10:30:00Z") == datetime(2026, 11, 28, 10, 30, tzinfo=UTC)
