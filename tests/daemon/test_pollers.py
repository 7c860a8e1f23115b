"""The poller scheduler: intervals with jitter, backoff while failing, one log line on each
transition, `plugin_up`, waking the worker, leader only; and the jobs plugins contribute."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.daemon_harness import HeldLeader
from itsm_bridge.daemon.metrics import Metrics
from itsm_bridge.daemon.pollers import (
    MAX_BACKOFF,
    MIN_INTERVAL,
    Job,
    PollerScheduler,
    plugin_jobs,
)
from itsm_bridge.errors import ConfigError
from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import WorkItem
from itsm_bridge.plugins import load_plugins
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge.store import open_store
from support import ManualClock


class Flaky:
    """A job body: fails while `down`, else returns `new` new events."""

    def __init__(self) -> None:
        self.down = False
        self.new = 0
        self.runs = 0

    def __call__(self) -> int:
        self.runs += 1
        if self.down:
            raise ConnectionError("jira.example.com: connection refused")
        return self.new


class Rig:
    def __init__(self, *intervals: float, rand: float = 0.5) -> None:
        self.clock = ManualClock()
        self.bodies = [Flaky() for _ in intervals]
        self.jobs = [
            Job(f"p{n}", f"plugin{n}", interval, body)
            for n, (interval, body) in enumerate(zip(intervals, self.bodies, strict=True))
        ]
        self.leader = HeldLeader()
        self.metrics = Metrics()
        self.wakes = 0
        self.value = rand
        self.scheduler = PollerScheduler(
            self.jobs,
            self.leader,
            self.metrics,
            self.wake,
            leader_check=5.0,
            clock=self.clock,
            rand=lambda: self.value,
        )

    def wake(self) -> None:
        self.wakes += 1

    def lead(self) -> None:
        """Become leader, then let every job's first (staggered) run come."""
        self.scheduler.round()
        self.clock.now = max([self.clock.now, *(job.next_at for job in self.jobs)])
        self.scheduler.round()

    def up(self, plugin: str) -> float | None:
        return self.metrics.registry.get_sample_value("itsm_bridge_plugin_up", {"plugin": plugin})


def test_each_job_runs_on_its_own_interval_with_jitter() -> None:
    rig = Rig(60, 300, rand=0.0)
    rig.scheduler.round()  # becomes leader; the first runs are due at once (rand 0)
    assert [b.runs for b in rig.bodies] == [1, 1]
    assert rig.jobs[0].next_at == pytest.approx(rig.clock.now + 54)  # 60 - 10%
    assert rig.jobs[1].next_at == pytest.approx(rig.clock.now + 270)
    rig.value = 1.0
    rig.clock.tick(54)
    rig.scheduler.round()
    assert [b.runs for b in rig.bodies] == [2, 1]  # only the one that was due
    assert rig.jobs[0].next_at == pytest.approx(rig.clock.now + 66)  # 60 + 10%


def test_the_first_runs_are_spread_over_a_tenth_of_the_interval() -> None:
    rig = Rig(100, 0, rand=1.0)
    rig.scheduler.start_leading()
    assert rig.jobs[0].next_at == pytest.approx(rig.clock.now + 10)
    assert rig.jobs[1].next_at == pytest.approx(rig.clock.now + 0.1 * MIN_INTERVAL)


def test_the_scheduler_sleeps_until_the_next_job_or_the_next_leader_check() -> None:
    rig = Rig(3, 60, rand=0.5)
    assert rig.scheduler.round() == pytest.approx(0.15)  # the first run of p0
    rig.lead()
    assert rig.scheduler.round() == pytest.approx(3)  # p0 runs again in 3 s
    rig.jobs[0].interval = 600
    rig.clock.tick(3)
    rig.scheduler.round()
    assert rig.scheduler.round() == 5.0  # the leader lock is checked at least every 5 s


def test_a_failing_job_backs_off_exponentially_up_to_the_cap_and_logs_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    rig = Rig(30, rand=0.5)
    body, job = rig.bodies[0], rig.jobs[0]
    rig.lead()
    assert rig.up("plugin0") == 1.0
    body.down = True
    waits = []
    for _ in range(8):
        rig.clock.now = job.next_at
        rig.scheduler.round()
        waits.append(round(job.next_at - rig.clock.now))
    assert waits == [60, 120, 240, 480, 900, 900, 900, 900]
    assert MAX_BACKOFF == 900
    assert rig.up("plugin0") == 0.0
    assert caplog.text.count("poller p0 is failing") == 1  # not once per attempt
    assert "connection refused" in caplog.text
    body.down = False
    rig.clock.now = job.next_at
    rig.scheduler.round()
    assert rig.up("plugin0") == 1.0
    assert job.next_at - rig.clock.now == pytest.approx(30)  # its own interval again
    assert caplog.text.count("poller p0 recovered after 8 failed attempt(s)") == 1
    rig.clock.now = job.next_at
    rig.scheduler.round()
    assert "recovered" not in caplog.text.split("recovered after 8", 1)[1]


def test_a_failing_job_never_runs_more_often_than_its_own_interval() -> None:
    rig = Rig(1800, rand=0.5)
    rig.lead()
    rig.bodies[0].down = True
    rig.clock.now = rig.jobs[0].next_at
    rig.scheduler.round()
    assert rig.jobs[0].next_at - rig.clock.now == pytest.approx(1800)  # not MAX_BACKOFF


def test_a_job_that_stored_new_events_wakes_the_worker() -> None:
    rig = Rig(10)
    rig.lead()
    assert rig.wakes == 0  # nothing new
    rig.bodies[0].new = 2
    rig.clock.now = rig.jobs[0].next_at
    rig.scheduler.round()
    assert rig.wakes == 1


def test_only_the_leader_runs_jobs_and_a_new_leader_starts_afresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    rig = Rig(10)
    rig.leader.held = False
    assert rig.scheduler.round() == 5.0
    assert rig.bodies[0].runs == 0
    rig.leader.held = True
    rig.lead()
    assert rig.bodies[0].runs == 1
    rig.leader.held = False
    rig.clock.tick(100)
    rig.scheduler.round()
    assert rig.bodies[0].runs == 1
    assert "pollers stopped: another replica holds the poller lock" in caplog.text
    rig.leader.held = True
    rig.lead()
    assert rig.bodies[0].runs == 2
    assert rig.leader.checks == 6  # the lock is checked before every round


def test_a_failing_job_does_not_stop_the_others() -> None:
    rig = Rig(10, 10)
    rig.bodies[0].down = True
    rig.lead()
    assert [b.runs for b in rig.bodies] == [1, 1]
    assert rig.up("plugin0") == 0.0 and rig.up("plugin1") == 1.0


# -- the jobs plugins contribute -----------------------------------------------------------
class Pollers:
    def __init__(self, *names: str) -> None:
        self.names = names
        self.polled: list[str | None] = []
        self.down = False

    @hookimpl
    def register_pollers(self, register: Any) -> None:
        for name in self.names:
            register(name, 45, self.poll)

    def poll(self, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        self.polled.append(cursor)
        if self.down:
            raise ConnectionError("down")
        n = len(self.polled)
        event = {"source": "x", "kind": "scope", "dedupe_key": f"x:{n % 2}", "payload": {}}
        return [event], json.dumps({"n": n})


class Intake:
    def __init__(self) -> None:
        self.down = False
        self.since: list[datetime | None] = []

    @hookimpl
    def collect_work_items(self, since: datetime | None) -> list[WorkItem]:
        self.since.append(since)
        if self.down:
            raise ConnectionError("intake down")
        return [
            WorkItem(
                source_system="sn", source_kind="demand", source_id="1", number="D1", title="x"
            )
        ]


def _host(tmp_path: Path, *plugins: tuple[str, object]) -> Any:
    settings = settings_from_mapping({"database": f"sqlite:///{tmp_path}/b.db"})
    store = open_store(settings.database)
    host = load_plugins(settings)
    for name, plugin in plugins:
        host.register(plugin, name, version="0", module="tests")
    return store, host


def test_plugin_pollers_and_intake_become_jobs_named_by_their_plugin(tmp_path: Path) -> None:
    pollers, intake = Pollers("jira"), Intake()
    store, host = _host(tmp_path, ("jiraplugin", pollers), ("snow", intake))
    jobs = plugin_jobs(store, host, intake_seconds=120)
    assert [(j.name, j.plugin, j.interval) for j in jobs] == [
        ("jira", "jiraplugin", 45.0),
        ("intake.snow", "snow", 120.0),
    ]
    poll, collect = jobs
    assert poll.run() == 1 and poll.run() == 1 and poll.run() == 0  # x:1, x:0, x:1 again
    assert pollers.polled == [None, '{"n": 1}', '{"n": 2}']  # the cursor is persisted
    pollers.down = True
    with pytest.raises(ConnectionError):
        poll.run()
    with store.begin() as tx:
        assert tx.cursor("poller.jira") == '{"n": 3}'  # a failed poll keeps the cursor
    assert collect.run() == 1
    with store.begin() as tx:
        assert len(tx.inbox_pending(kind="work_item")) == 1
        cursor = tx.cursor("intake.work_items.snow")
    intake.down = True
    with pytest.raises(RuntimeError, match="intake from snow failed"):
        collect.run()  # a failure the scheduler backs off from
    with store.begin() as tx:
        assert tx.cursor("intake.work_items.snow") == cursor


def test_two_plugins_registering_one_poller_name_is_a_config_error(tmp_path: Path) -> None:
    store, host = _host(tmp_path, ("a", Pollers("jira")), ("b", Pollers("jira")))
    with pytest.raises(ConfigError, match="two plugins register a poller named 'jira'"):
        plugin_jobs(store, host, intake_seconds=60)
