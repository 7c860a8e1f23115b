"""Release leases: fencing of late commits, the heartbeat, and the database's clock."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fake_vendor import FakeVendor, FakeVendorPlugin
from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import ChangeRef, Release, ReleaseNotes
from itsm_bridge.plugins import load_plugins
from itsm_bridge.process import Process
from itsm_bridge.settings import BridgeSettings
from process_harness import Harness


class StallingVendorPlugin(FakeVendorPlugin):
    """`create_change` hangs once (a stuck vendor call) until the test lets it go on."""

    def __init__(self, vendor: FakeVendor) -> None:
        super().__init__(vendor)
        self.entered = threading.Event()
        self.go_on = threading.Event()

    @hookimpl
    def create_change(self, release: Release, notes: ReleaseNotes | None) -> ChangeRef:
        if not self.entered.is_set():
            self.entered.set()
            assert self.go_on.wait(timeout=30)
        return super().create_change(release, notes)


def replica(
    h: Harness, settings: BridgeSettings, plugin: object, owner: str, **lease: timedelta
) -> Process:
    host = load_plugins(settings)
    host.register(plugin, "fake", version="0", module="fake_vendor")
    return Process(h.store, host, settings, clock=h.clock, owner=owner, **lease)


def change_done_events(h: Harness, rid: str) -> list[str]:
    return [m for m in h.events(rid, "step") if m.startswith("step 6 change: done")]


def test_a_replica_that_lost_its_lease_cannot_commit(tmp_path: Path, database_url: str) -> None:
    h = Harness(tmp_path, database=database_url)
    rid = h.create()
    stalling = StallingVendorPlugin(h.vendor)
    first = replica(
        h, h.settings, stalling, "first", lease_ttl=timedelta(seconds=1), max_hold=timedelta(0)
    )
    second = replica(h, h.settings, FakeVendorPlugin(h.vendor), "second")
    outcome: list[bool] = []
    stuck = threading.Thread(target=lambda: outcome.append(first.advance(rid)))
    stuck.start()
    assert stalling.entered.wait(timeout=30)
    time.sleep(1.5)  # its lease expires: the heartbeat may hold it for max_hold only (0 here)
    assert second.advance(rid) is True  # takes the release over and moves it on
    assert h.vendor.created["change"] == 1
    assert len(change_done_events(h, rid)) == 1
    calls_before = dict(h.vendor.calls)
    stalling.go_on.set()
    stuck.join(timeout=30)
    assert outcome == [True]
    # the late call found the change (no second create) and its commit was refused
    assert h.vendor.duplicates == []
    assert h.vendor.created["change"] == 1
    assert h.vendor.calls["change"] == calls_before["change"] + 1
    assert {k: v for k, v in h.vendor.calls.items() if k != "change"} == {
        k: v for k, v in calls_before.items() if k != "change"
    }  # and it made no further call after the refusal
    assert len(change_done_events(h, rid)) == 1
    with h.store.begin() as tx:
        changes = [r for r in tx.records(rid) if r.kind == "change_request"]
        steps = {s.number: s for s in tx.steps(rid)}
    assert len(changes) == 1
    assert steps[6].status == "done"
    h.store.close()


def test_the_heartbeat_keeps_the_lease_while_a_plugin_call_runs(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid = h.create()
    stalling = StallingVendorPlugin(h.vendor)
    first = replica(h, h.settings, stalling, "first", lease_ttl=timedelta(seconds=1))
    second = replica(h, h.settings, FakeVendorPlugin(h.vendor), "second")
    stuck = threading.Thread(target=first.advance, args=(rid,))
    stuck.start()
    assert stalling.entered.wait(timeout=30)
    time.sleep(2.5)  # well past the 1 s lease: only the heartbeat keeps it
    assert second.advance(rid) is False
    stalling.go_on.set()
    stuck.join(timeout=30)
    assert len(change_done_events(h, rid)) == 1  # the slow step was committed
    assert h.vendor.calls["change"] == 1


def test_a_zero_lease_is_refused_not_replaced_by_the_default(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    with pytest.raises(ValueError, match="lease_ttl must be positive"):
        Process(h.store, h.process.host, h.settings, lease_ttl=timedelta(0))
    short = Process(h.store, h.process.host, h.settings, lease_ttl=timedelta(seconds=2))
    assert short.lease_ttl == timedelta(seconds=2)
    assert short.max_hold == timedelta(seconds=8)


def test_lease_times_come_from_the_database_clock(
    tmp_path: Path, postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica whose own clock runs two hours ahead must not see a live lease as expired."""
    h = Harness(tmp_path, database=postgres_server)
    rid = h.create(version=f"1.0.{uuid.uuid4().hex[:6]}")  # the database is shared
    with h.store.begin() as tx:
        assert tx.lease_release(rid, "on-time", timedelta(minutes=5))
    ahead = datetime.now(UTC) + timedelta(hours=2)
    monkeypatch.setattr("itsm_bridge.store.queues.utcnow", lambda: ahead)
    monkeypatch.setattr("itsm_bridge.store.repository.utcnow", lambda: ahead)
    with h.store.begin() as tx:
        assert tx.lease_release(rid, "skewed", timedelta(minutes=5)) is False
        lock = f"pollers-{rid}"
        assert tx.take_lease(lock, "on-time", timedelta(minutes=5)) is True
        assert tx.take_lease(lock, "skewed", timedelta(minutes=5)) is False
        assert tx.renew_release_lease(rid, "on-time", timedelta(minutes=5)) is True
    h.store.close()
