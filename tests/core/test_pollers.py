"""Pollers: cursors move only with the events they returned, and `sync --once` runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from itsm_bridge.cycle import run_cycle
from itsm_bridge.errors import ConfigError
from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.pollers import registered_pollers, run_pollers
from process_harness import Harness


class Tracker:
    """A poller that returns one event per call after its cursor, or raises while `down`."""

    def __init__(self, name: str = "tracker") -> None:
        self.name = name
        self.down = False
        self.cursors: list[str | None] = []

    @hookimpl
    def register_pollers(self, register: Any) -> None:
        register(self.name, 30, self.poll)

    def poll(self, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        self.cursors.append(cursor)
        if self.down:
            raise ConnectionError("tracker unreachable")
        n = int(cursor or 0) + 1
        event = {"source": "t", "kind": "issue", "dedupe_key": f"t:{n}", "payload": {"n": n}}
        return [event], str(n)


def setup(tmp_path: Path, *pollers: Tracker) -> Harness:
    h = Harness(tmp_path)
    for index, poller in enumerate(pollers):
        h.process.host.register(poller, f"plugin{index}", version="0", module="t")
    return h


def stored(h: Harness) -> list[str]:
    with h.store.begin() as tx:
        return [row["dedupe_key"] for row in tx.inbox_pending(limit=50)]


def test_a_poll_stores_its_events_and_moves_its_cursor(tmp_path: Path) -> None:
    tracker = Tracker()
    h = setup(tmp_path, tracker)
    assert run_pollers(h.store, h.process.host) == []
    assert run_pollers(h.store, h.process.host) == []
    assert tracker.cursors == [None, "1"]
    assert stored(h) == ["t:1", "t:2"]


def test_a_failing_poll_keeps_its_cursor_and_fails_the_cycle(tmp_path: Path) -> None:
    tracker, other = Tracker(), Tracker("other")
    h = setup(tmp_path, tracker, other)
    run_pollers(h.store, h.process.host)
    tracker.down = True
    assert run_pollers(h.store, h.process.host) == [
        "poller tracker failed: ConnectionError: tracker unreachable"
    ]
    tracker.down = False
    run_pollers(h.store, h.process.host)
    assert tracker.cursors == [None, "1", "1"]  # asked again from where it stood
    assert other.cursors == [None, "1", "2"]  # not held back


def test_two_pollers_with_one_name_are_a_configuration_error(tmp_path: Path) -> None:
    h = setup(tmp_path, Tracker(), Tracker())
    with pytest.raises(ConfigError, match="two plugins register a poller named 'tracker'"):
        registered_pollers(h.process.host)


def test_sync_runs_every_poller_once_then_acts_on_the_events(tmp_path: Path) -> None:
    tracker = Tracker()
    h = setup(tmp_path, tracker)
    report = run_cycle(h.process)
    assert report.failures == []
    assert tracker.cursors == [None]
    assert stored(h) == []  # stored, then processed in the same cycle
    with h.store.begin() as tx:
        assert tx.cursor("poller.tracker") == "1"
