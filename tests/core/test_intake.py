"""Intake (steps 1-2): cursors move only on success, and nothing waits unseen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.intake import OVERLAP, run_intake
from itsm_bridge.models import BacklogItem, WorkItem
from itsm_bridge.plugins import PluginHost, load_plugins
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge.store import Store, open_store
from process_harness import Harness


class Source:
    """An intake plugin: returns its items, or raises while `down`; records each `since`."""

    def __init__(self, system: str) -> None:
        self.system = system
        self.items: list[WorkItem] = []
        self.down = False
        self.asked: list[datetime | None] = []

    @hookimpl
    def collect_work_items(self, since: datetime | None) -> list[WorkItem]:
        self.asked.append(since)
        if self.down:
            raise ConnectionError(f"{self.system} unreachable")
        return list(self.items)

    def add(self, number: str) -> None:
        self.items.append(
            WorkItem(
                source_system=self.system,
                source_kind="demand",
                source_id=number.lower(),
                number=number,
                title=f"Demand {number}",
            )
        )


class Backlog:
    def __init__(self) -> None:
        self.created: list[str] = []

    @hookimpl
    def add_to_backlog(self, item: WorkItem) -> BacklogItem:
        self.created.append(item.source_key)
        return BacklogItem(system="jira", key=f"PAY-{len(self.created)}", summary=item.title)


def make(tmp_path: Path, *plugins: tuple[str, object]) -> tuple[Store, PluginHost]:
    settings = settings_from_mapping({"database": f"sqlite:///{tmp_path}/bridge.db"})
    host = load_plugins(settings)
    for name, plugin in plugins:
        host.register(plugin, name, version="0", module="test_intake")
    return open_store(settings.database), host


def cursor(store: Store, plugin: str) -> str | None:
    with store.begin() as tx:
        return tx.cursor(f"intake.work_items.{plugin}")


def test_a_failing_source_keeps_its_cursor_and_fails_the_cycle(tmp_path: Path) -> None:
    good, bad = Source("servicenow"), Source("other")
    store, host = make(tmp_path, ("good", good), ("bad", bad), ("jira", Backlog()))
    first = run_intake(store, host)
    assert first.errors == []
    kept = cursor(store, "bad")
    assert kept is not None
    bad.down = True
    good.add("DMND1")
    failed = run_intake(store, host)
    assert failed.errors == ["intake from bad failed: ConnectionError: other unreachable"]
    assert failed.created == 1  # the other source is not held back
    assert cursor(store, "bad") == kept  # what `bad` would have returned is asked again
    assert cursor(store, "good") != kept
    bad.down = False
    bad.add("DMND2")
    again = run_intake(store, host)
    assert again.errors == []
    assert again.created == 1
    assert bad.asked[-1] == datetime.fromisoformat(kept) - OVERLAP


def test_without_a_backlog_plugin_items_wait_and_are_taken_later(tmp_path: Path) -> None:
    source = Source("servicenow")
    source.add("DMND1")
    source.add("DMND2")
    store, host = make(tmp_path, ("servicenow", source))
    result = run_intake(store, host)
    assert (result.collected, result.created, result.waiting) == (2, 0, 2)
    with store.begin() as tx:
        assert len(tx.inbox_pending()) == 2  # stored, not marked done
    backlog = Backlog()
    host.register(backlog, "jira", version="0", module="test_intake")
    source.items = []
    later = run_intake(store, host)
    assert later.created == 2
    assert backlog.created == ["servicenow:demand:DMND1", "servicenow:demand:DMND2"]
    with store.begin() as tx:
        assert tx.inbox_pending() == []
    assert run_intake(store, host).created == 0  # taken once


def test_a_backlog_failure_leaves_the_item_pending(tmp_path: Path) -> None:
    source = Source("servicenow")
    source.add("DMND1")

    class Refusing(Backlog):
        @hookimpl
        def add_to_backlog(self, item: WorkItem) -> BacklogItem:
            raise ValueError("Jira: field 'priority' is required")

    store, host = make(tmp_path, ("servicenow", source), ("jira", Refusing()))
    result = run_intake(store, host)
    assert result.errors == [
        "backlog item for servicenow:demand:DMND1 not created: Jira: field 'priority' is required"
    ]
    with store.begin() as tx:
        assert [row["dedupe_key"] for row in tx.inbox_pending()] == [
            "intake:servicenow:demand:DMND1"
        ]


@pytest.mark.parametrize(
    ("plugins", "detail"),
    [
        ((), "no intake plugin enabled: demands are not collected"),
        (
            (("servicenow", Source("servicenow")),),
            "demands are collected (servicenow) but no backlog plugin is enabled: they wait in "
            "the inbox until one is",
        ),
    ],
)
def test_steps_1_and_2_say_what_intake_does(
    tmp_path: Path, plugins: tuple[tuple[str, object], ...], detail: str
) -> None:
    h = Harness(tmp_path)
    for name, plugin in plugins:
        h.process.host.register(plugin, name, version="0", module="test_intake")
    rid = h.create()
    h.run(rid)
    assert h.steps(rid)["demand"] == ("skipped", detail)


def test_with_intake_and_backlog_steps_1_and_2_are_done(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.process.host.register(Source("servicenow"), "servicenow", version="0", module="t")
    h.process.host.register(Backlog(), "jira", version="0", module="t")
    rid = h.create()
    h.run(rid)
    status, detail = h.steps(rid)["problem"]
    assert status == "done"
    assert detail == "problems reach the backlog through intake (servicenow)"


def test_the_first_cycle_reads_the_cursor_of_earlier_versions(tmp_path: Path) -> None:
    source = Source("servicenow")
    store, host = make(tmp_path, ("servicenow", source))
    legacy = datetime(2026, 11, 1, tzinfo=UTC)
    with store.begin() as tx:
        tx.set_cursor("intake.work_items", legacy.isoformat())
    run_intake(store, host)
    assert source.asked == [legacy - timedelta(minutes=5)]
