"""The event-driven worker: claims, the bounded pool, one release per thread, sleeping until
the next due time, waking, errors, database outages and draining."""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon.daemon_harness import GatedScope, WorkerHarness, wait_for
from itsm_bridge import commands as commands_module
from itsm_bridge.daemon import worker as worker_module
from itsm_bridge.daemon.worker import MAX_SLEEP, MIN_SLEEP, ThreadOwnedProcess
from itsm_bridge.errors import OperationFailed
from itsm_bridge.inbox import InboxPass
from itsm_bridge.store import schema as t


@pytest.fixture
def gated() -> GatedScope:
    return GatedScope()


@pytest.fixture
def harness(tmp_path: Path, gated: GatedScope) -> Any:
    h = WorkerHarness(tmp_path, workers=2, plugins=(gated,))
    yield h
    gated.gate.set()
    h.close()


def test_a_pass_advances_every_due_release_at_most_pool_size_at_once(
    harness: WorkerHarness, gated: GatedScope
) -> None:
    rids = [harness.create(f"1.0.{n}") for n in range(5)]
    harness.worker.run_pass()
    wait_for(lambda: len(gated.inside) == 2)
    assert len(harness.worker.inflight) == 2  # 2 threads: 2 claims, the rest wait
    assert harness.worker.run_pass() == MAX_SLEEP  # the pool is full: nothing more claimed
    assert len(gated.entered) == 2
    claimed = set(gated.entered)
    assert {harness.lease_owner(r) for r in claimed} == {harness.process.owner}
    assert all(harness.lease_owner(r) is None for r in set(rids) - claimed)
    gated.gate.set()
    for _ in range(3):  # a finished thread frees its slot; the next pass claims again
        harness.settle()
        harness.worker.run_pass()
    harness.settle()
    assert sorted(gated.entered) == sorted(rids)  # each release advanced exactly once
    assert gated.most == 2
    assert all(harness.lease_owner(r) is None for r in rids)  # leases dropped after advancing
    assert all(harness.step(r, 3).status == "done" for r in rids)


def test_a_release_being_advanced_is_not_claimed_again_even_when_its_lease_expired(
    harness: WorkerHarness, gated: GatedScope
) -> None:
    rid = harness.create()
    harness.worker.run_pass()
    wait_for(lambda: gated.inside)
    with harness.store.begin() as tx:  # a step ran past its lease; the release is due
        tx.conn.execute(
            t.releases.update()
            .where(t.releases.c.id == rid)
            .values(lease_expires_at=tx.db_now() - timedelta(seconds=1))
        )
        tx.set_next_run(rid, harness.clock())
    assert harness.worker.run_pass() == MAX_SLEEP  # it is not due for this loop either
    assert list(harness.worker.inflight) == [rid]
    assert gated.entered == [rid]


def test_sleeps_until_the_earliest_due_release(harness: WorkerHarness) -> None:
    assert harness.worker.run_pass() == MAX_SLEEP  # nothing at all
    later, sooner = harness.create("1.0.0"), harness.create("1.0.1")
    harness.set_next_run(later, timedelta(minutes=10))
    harness.set_next_run(sooner, timedelta(seconds=42))
    assert harness.worker.run_pass() == pytest.approx(42, abs=0.5)
    harness.set_next_run(sooner, timedelta(hours=3))
    assert harness.worker.run_pass() == MAX_SLEEP  # at most MAX_SLEEP (a CLI wakes nobody)
    harness.set_next_run(later, None)
    harness.set_next_run(sooner, None)
    assert harness.worker.run_pass() == MAX_SLEEP


def test_a_release_leased_elsewhere_is_looked_at_again_when_its_lease_expires(
    harness: WorkerHarness,
) -> None:
    rid = harness.create()
    with harness.store.begin() as tx:
        assert tx.lease_release(rid, "other-replica", timedelta(seconds=20))
    delay = harness.worker.run_pass()
    assert harness.worker.inflight == {}  # not claimed: another owner holds it
    assert delay == pytest.approx(20, abs=1)  # not 0: no busy loop on a held release


def test_nothing_claimable_never_loops_faster_than_min_sleep(harness: WorkerHarness) -> None:
    rid = harness.create()
    harness.set_next_run(rid, timedelta(seconds=-5))
    harness.worker.stop()  # stopping: due, but never claimed
    assert harness.worker.run_pass() == MIN_SLEEP


def test_wake_runs_a_pass_at_once(harness: WorkerHarness, gated: GatedScope) -> None:
    thread = threading.Thread(target=harness.worker.run, daemon=True)
    thread.start()
    wait_for(lambda: harness.worker.passes == 1)  # nothing due: it sleeps MAX_SLEEP
    rid = harness.create()
    started = time.monotonic()
    harness.worker.wake()
    wait_for(lambda: gated.entered == [rid], timeout=2)
    assert time.monotonic() - started < 1.0
    gated.gate.set()
    wait_for(lambda: harness.step(rid, 3).status == "done")


def pass_gaps(harness: WorkerHarness, took: int) -> list[float]:
    """Seconds between the starts of 4 passes, each woken while it runs and taking `took`
    inbox events."""
    starts: list[float] = []

    def run_guarded() -> float:
        starts.append(time.monotonic())
        harness.worker.took = took
        harness.worker.wake()  # deliveries arrive while the pass runs
        if len(starts) == 4:
            harness.worker.stop()
        return MAX_SLEEP

    harness.worker.run_guarded = run_guarded  # type: ignore[method-assign]
    thread = threading.Thread(target=harness.worker.run, daemon=True)
    thread.start()
    thread.join(5)
    assert len(starts) == 4
    return [later - earlier for earlier, later in itertools.pairwise(starts)]


def test_a_burst_of_wakes_runs_one_pass_per_interval(harness: WorkerHarness) -> None:
    """Woken during every pass (a webhook stored, each): after a pass that took 8 events or
    more, the next starts 20 ms after it started, not at once, and acts on everything stored
    meanwhile."""
    assert min(pass_gaps(harness, took=8)) >= 0.02 * 0.9


@pytest.mark.parametrize("took", [0, 7])
def test_a_wake_after_a_pass_that_took_no_burst_runs_the_next_at_once(
    harness: WorkerHarness, took: int
) -> None:
    """After a pass that took fewer than 8 events (a pool thread finished, a job's
    notification came), the event that wakes the loop (an alert) does not wait."""
    assert min(pass_gaps(harness, took=took)) < 0.02 / 2


def test_an_inbox_with_more_than_a_batch_runs_the_next_pass_at_once(
    harness: WorkerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        worker_module, "inbox_pass", functools.partial(worker_module.inbox_pass, limit=2)
    )
    with harness.store.begin() as tx:
        for n in range(3):
            tx.inbox_add("ci", f"ci:{n}", "job", {"build": n})
    assert harness.worker.run_pass() == 0.0  # a whole batch: more may be waiting
    assert harness.worker.run_pass() == MAX_SLEEP  # the rest, then nothing is due
    with harness.store.read() as tx:
        assert tx.inbox_pending() == []


def test_a_finished_advance_wakes_the_loop(harness: WorkerHarness, gated: GatedScope) -> None:
    """The third release is claimed as soon as a thread is free, not after MAX_SLEEP."""
    rids = [harness.create(f"1.0.{n}") for n in range(3)]
    thread = threading.Thread(target=harness.worker.run, daemon=True)
    thread.start()
    wait_for(lambda: len(gated.inside) == 2)
    gated.gate.set()
    wait_for(lambda: sorted(gated.entered) == sorted(rids), timeout=3)


def test_an_error_in_a_pass_is_logged_counted_and_the_loop_goes_on(
    harness: WorkerHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def broken(*args: Any) -> InboxPass:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a plugin bug")
        return InboxPass([], more=False)

    monkeypatch.setattr(worker_module, "inbox_pass", broken)
    assert harness.worker.run_guarded() == worker_module.ERROR_BACKOFF
    assert harness.worker.errors == 1
    assert "worker pass failed" in caplog.text and "a plugin bug" in caplog.text
    assert harness.worker.run_guarded() == MAX_SLEEP
    assert harness.worker.errors == 1 and harness.worker.passes == 1


@pytest.mark.parametrize("database_down", [False, True], ids=["a bug", "the database"])
def test_an_error_while_advancing_one_release_is_logged_and_its_lease_dropped(
    harness: WorkerHarness,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    database_down: bool,
) -> None:
    rid = harness.create()

    def boom(release_id: str, claimed_at: float | None = None) -> bool:
        with harness.store.begin() as tx:
            tx.lease_release(release_id, harness.process.owner, timedelta(seconds=30))
        if database_down:
            raise sa.exc.OperationalError("UPDATE", {}, Exception("server closed the connection"))
        raise RuntimeError("unexpected")

    monkeypatch.setattr(harness.process, "advance", boom)
    harness.worker.run_pass()
    harness.settle()
    if database_down:  # an outage is no bug: one line, not counted
        assert harness.worker.errors == 0
        assert f"release {rid}: server closed the connection" in caplog.text
        assert "Traceback" not in caplog.text
    else:
        assert harness.worker.errors == 1
        assert f"release {rid}: advancing failed" in caplog.text
    assert harness.lease_owner(rid) is None


def test_an_inbox_event_that_keeps_failing_is_logged_once(
    harness: WorkerHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        worker_module,
        "inbox_pass",
        lambda *a: InboxPass(["inbox event ci:1: KeyError: 'build'"], more=False),
    )
    for _ in range(3):
        harness.worker.run_pass()
    assert caplog.text.count("inbox event ci:1: KeyError") == 1


def test_a_database_outage_backs_off_logs_once_and_recovers(
    harness: WorkerHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert harness.worker.problems() == ["starting: the worker has not completed a pass yet"]
    harness.worker.run_guarded()
    assert harness.worker.problems() == []
    real_begin = harness.store.begin

    def refused() -> Any:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(harness.store, "begin", refused)
    caplog.set_level(logging.WARNING)
    delays = [harness.worker.run_guarded() for _ in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert harness.worker.db_problem == "connection refused"
    assert caplog.text.count("the database is unreachable") == 1  # once, not per attempt
    monkeypatch.setattr(harness.store, "begin", real_begin)
    assert harness.worker.run_guarded() == MAX_SLEEP
    assert harness.worker.db_problem == ""
    assert caplog.text.count("the database answers again") == 1
    assert harness.worker.errors == 0  # an outage is not a bug


def test_the_inbox_is_processed_on_the_leader_only(harness: WorkerHarness) -> None:
    rid = harness.create()
    harness.set_next_run(rid, None)
    with harness.store.begin() as tx:
        tx.inbox_add("ci", "ci:1", "job", {"build": 1}, release_id=rid)
    harness.leader.held = False
    harness.worker.run_pass()
    with harness.store.begin() as tx:
        assert len(tx.inbox_pending()) == 1
    harness.leader.held = True
    harness.worker.run_pass()
    with harness.store.begin() as tx:
        assert tx.inbox_pending() == []
        assert tx.next_run(rid) is not None  # the event woke its release


def test_an_event_for_a_release_in_flight_waits_and_leaves_its_lease_alone(
    harness: WorkerHarness,
) -> None:
    rid = harness.create()
    owner = harness.process.owner
    with harness.store.begin() as tx:  # a pool thread is advancing it
        assert tx.lease_release(rid, owner, timedelta(seconds=30))
        tx.inbox_add("ci", "ci:1", "job", {"build": 1}, release_id=rid)
    harness.worker.run_pass()  # (the release is leased: not claimed either)
    assert harness.lease_owner(rid) == owner  # the running step keeps its lease
    with harness.store.begin() as tx:
        assert len(tx.inbox_pending()) == 1  # taken on a later pass
        tx.drop_release_lease(rid, owner)
    harness.worker.run_pass()
    with harness.store.begin() as tx:
        assert tx.inbox_pending() == []


def test_work_items_collected_by_the_pollers_are_taken_into_the_backlog_on_the_leader(
    harness: WorkerHarness,
) -> None:
    from itsm_bridge.hookspecs import hookimpl
    from itsm_bridge.models import BacklogItem, WorkItem

    class Backlog:
        taken: list[str] = []

        @hookimpl
        def add_to_backlog(self, item: WorkItem) -> BacklogItem:
            self.taken.append(item.source_key)
            return BacklogItem(system="fake", key="PAY-9", summary=item.title, kind="Story")

    harness.host.register(Backlog(), "backlog", version="0", module="tests")
    item = WorkItem(
        source_system="sn", source_kind="demand", source_id="d1", number="DMND1", title="Refunds"
    )
    with harness.store.begin() as tx:
        tx.inbox_add("intake", f"intake:{item.source_key}", "work_item", item.model_dump())
    harness.leader.held = False
    harness.worker.run_pass()
    assert Backlog.taken == []
    harness.leader.held = True
    harness.worker.run_pass()
    harness.worker.run_pass()
    assert Backlog.taken == ["sn:demand:DMND1"]  # once
    with harness.store.begin() as tx:
        assert tx.inbox_pending(kind="work_item") == []


def test_api_commands_wait_for_a_running_step_instead_of_taking_its_lease(
    harness: WorkerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API acts as an owner of its own: a command on a release in flight waits."""
    monkeypatch.setattr(commands_module, "LEASE_WAIT_SECONDS", 0.3)
    api = ThreadOwnedProcess(
        harness.store, harness.host, harness.settings, owner=f"{harness.process.owner}:api"
    )
    rid = harness.create()
    with harness.store.begin() as tx:
        assert tx.lease_release(rid, harness.process.owner, timedelta(seconds=30))
    with pytest.raises(OperationFailed, match="busy"):
        commands_module.ReleaseCommands(api).cancel(rid, "superseded")
    assert harness.lease_owner(rid) == harness.process.owner
    owners: list[str] = []
    thread = threading.Thread(target=lambda: owners.append(api.owner))
    thread.start()
    thread.join()
    assert owners[0] != api.owner  # one owner per request thread


def test_stop_stops_claiming_and_drain_waits_for_steps_in_flight(
    harness: WorkerHarness, gated: GatedScope
) -> None:
    rid = harness.create()
    harness.worker.run_pass()
    wait_for(lambda: gated.inside)
    harness.worker.stop()
    other = harness.create("1.0.1")
    harness.worker.run_pass()
    assert list(harness.worker.inflight) == [rid]  # not `other`
    threading.Timer(0.2, gated.gate.set).start()
    started = time.monotonic()
    assert harness.worker.drain(time.monotonic() + 5) == []
    assert time.monotonic() - started < 2
    assert harness.step(rid, 3).status == "done"  # the step in flight finished and committed
    assert harness.lease_owner(other) is None


def test_drain_drops_the_leases_of_steps_that_do_not_finish_in_time(
    harness: WorkerHarness, gated: GatedScope
) -> None:
    rid = harness.create()
    harness.worker.run_pass()
    wait_for(lambda: gated.inside)
    harness.worker.stop()
    started = time.monotonic()
    assert harness.worker.drain(time.monotonic() + 0.3) == [rid]
    assert 0.3 <= time.monotonic() - started < 1.5
    assert harness.lease_owner(rid) is None  # a restart may take it at once
    gated.gate.set()  # the late step ends: the lease fence refuses its outcome
    wait_for(lambda: not gated.inside)
    time.sleep(0.2)
    assert harness.step(rid, 3).status == "pending"


# -- the store's claims, on SQLite and PostgreSQL -------------------------------------------
def test_claim_due_takes_due_free_releases_oldest_first(tmp_path: Path, database_url: str) -> None:
    h = WorkerHarness(tmp_path, database=database_url)
    try:
        first, second, held, future, idle = (h.create(f"1.0.{n}") for n in range(5))
        h.set_next_run(first, timedelta(seconds=-20))
        h.set_next_run(second, timedelta(seconds=-10))
        h.set_next_run(held, timedelta(seconds=-30))
        h.set_next_run(future, timedelta(seconds=30))
        h.set_next_run(idle, None)
        ttl = timedelta(seconds=30)
        with h.store.begin() as tx:
            assert tx.lease_release(held, "other", ttl)
        with h.store.begin() as tx:
            assert tx.claim_due(h.clock(), "me", ttl, limit=1) == [first]
        with h.store.begin() as tx:
            assert tx.claim_due(h.clock(), "me", ttl, limit=5) == [second]  # first is ours now
            assert tx.claim_due(h.clock(), "me", ttl, limit=0) == []
        assert h.lease_owner(first) == h.lease_owner(second) == "me"
        # oldest due first, whatever the ids' order
        a, b, c = sorted(h.create(f"1.1.{n}") for n in range(3))
        for rid, ago in ((a, 3), (b, 5), (c, 4)):
            h.set_next_run(rid, timedelta(seconds=-ago))
        with h.store.begin() as tx:
            assert tx.claim_due(h.clock(), "me", ttl, limit=5) == [b, c, a]
        with h.store.begin() as tx:  # an expired lease is free again, unless excluded
            tx.conn.execute(
                t.releases.update()
                .where(t.releases.c.id.in_([first, held]))
                .values(lease_expires_at=tx.db_now() - timedelta(seconds=1))
            )
        with h.store.begin() as tx:
            assert tx.claim_due(h.clock(), "me", ttl, limit=5, exclude=[first]) == [held]
        with h.store.begin() as tx:
            assert tx.next_due_in(h.clock(), exclude=[first]) == pytest.approx(30, abs=1)
    finally:
        h.store.close()


def test_replicas_claiming_at_once_take_different_releases_without_waiting(
    tmp_path: Path, postgres_server: str
) -> None:
    """PostgreSQL: `FOR UPDATE SKIP LOCKED`: a claim in progress does not block another.
    (SQLite serialises claims with BEGIN IMMEDIATE.)"""
    engine = sa.create_engine(postgres_server)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    h = WorkerHarness(tmp_path, database=postgres_server)
    try:
        rids = [h.create(f"1.0.{n}") for n in range(4)]
        ttl = timedelta(seconds=30)
        first: list[str] = []
        second: list[str] = []
        with h.store.begin() as tx:  # replica A claims and has not committed yet
            first += tx.claim_due(h.clock(), "replica-a", ttl, limit=2)

            def other() -> None:
                with h.store.begin() as tx2:
                    tx2.conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                    second.extend(tx2.claim_due(h.clock(), "replica-b", ttl, limit=4))

            thread = threading.Thread(target=other)
            started = time.monotonic()
            thread.start()
            thread.join(5)
            waited = time.monotonic() - started
        assert len(first) == 2
        assert sorted(first + second) == sorted(rids)  # each release claimed once
        assert waited < 1.0  # B skipped A's rows instead of waiting for A to commit
    finally:
        h.store.close()


def test_a_woken_release_is_claimed_before_releases_whose_poll_is_due(
    harness: WorkerHarness,
) -> None:
    polling = [harness.create(f"1.0.{n}") for n in range(3)]
    woken = harness.create("2.0.0")
    for rid in polling:  # their timed polls came due a while ago
        harness.set_next_run(rid, timedelta(minutes=-30))
    with harness.store.begin() as tx:  # an alert concerns this one, just now
        tx.wake(woken, harness.clock())
    process = harness.worker.process
    with harness.store.begin() as tx:
        claimed = tx.claim_due(harness.clock(), process.owner, process.lease_ttl, 1)
    assert claimed == [woken]
