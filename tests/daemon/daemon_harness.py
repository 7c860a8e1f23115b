"""The daemon's worker on a real store, the fake vendor, a manual clock and a leader the test
holds (imported by the tests as `daemon.daemon_harness`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from fake_vendor import FakeVendor, FakeVendorPlugin
from itsm_bridge.commands import ReleaseCommands
from itsm_bridge.daemon.context import DaemonContext
from itsm_bridge.daemon.metrics import Metrics
from itsm_bridge.daemon.worker import Worker
from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import BacklogItem, Release
from itsm_bridge.plugins import load_plugins
from itsm_bridge.process import Process
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge.store import open_store
from process_harness import JOBS, Clock


class HeldLeader:
    """A leader the test decides about."""

    def __init__(self, held: bool = True) -> None:
        self.held = held
        self.checks = 0

    def check(self) -> bool:
        self.checks += 1
        return self.held

    def release(self) -> None:
        self.held = False


class GatedScope:
    """`release_scope` (step 3) that blocks until `gate` opens; records who is inside."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.inside: list[tuple[str, int]] = []  # (release id, thread) now in the call
        self.most = 0  # the most calls in progress at once
        self.entered: list[str] = []  # every release that entered, in order

    @hookimpl
    def release_scope(self, release: Release) -> list[BacklogItem]:
        me = (release.id, threading.get_ident())
        with self.lock:
            assert release.id not in [rid for rid, _ in self.inside], "advanced twice at once"
            self.inside.append(me)
            self.entered.append(release.id)
            self.most = max(self.most, len(self.inside))
        try:
            self.gate.wait(10)
        finally:
            with self.lock:
                self.inside.remove(me)
        return [BacklogItem(system="fake", key="PAY-1", summary="Refunds", kind="Story")]


class WorkerHarness:
    def __init__(
        self,
        tmp_path: Path,
        *,
        database: str | None = None,
        workers: int = 2,
        plugins: tuple[object, ...] = (),
        lease_seconds: int = 30,
    ) -> None:
        self.clock = Clock()
        self.vendor = FakeVendor()
        self.settings = settings_from_mapping(
            {
                "database": database or f"sqlite:///{tmp_path}/bridge.db",
                "data_dir": str(tmp_path),
                "server": {"token": "t", "workers": workers, "lease_seconds": lease_seconds},
                "services": {"payments": {"jobs": JOBS}},
                "policy": {"verify_minutes": 30, "poll_seconds": 30},
            }
        )
        self.store = open_store(self.settings.database)
        self.host = load_plugins(self.settings)
        self.host.register(FakeVendorPlugin(self.vendor), "fake", version="0", module="fake")
        for index, plugin in enumerate(plugins):
            self.host.register(plugin, f"extra{index}", version="0", module="tests")
        self.metrics = Metrics(self.store)
        self.process = Process(
            self.store, self.host, self.settings, clock=self.clock, on_step=self.metrics.step
        )
        self.commands = ReleaseCommands(self.process)
        self.leader = HeldLeader()
        self.ctx = DaemonContext(
            settings=self.settings,
            store=self.store,
            host=self.host,
            process=self.process,
            commands=self.commands,
            metrics=self.metrics,
        )
        self.worker = Worker(self.ctx, self.leader, workers)

    def create(self, version: str = "1.0.0") -> str:
        return self.commands.create("payments", version).id

    def lease_owner(self, rid: str) -> str | None:
        from itsm_bridge.store import schema as t

        with self.store.begin() as tx:
            value = tx.conn.execute(
                t.releases.select()
                .with_only_columns(t.releases.c.lease_owner)
                .where(t.releases.c.id == rid)
            ).scalar_one()
        return None if value is None else str(value)

    def set_next_run(self, rid: str, after: timedelta | None) -> None:
        with self.store.begin() as tx:
            tx.set_next_run(rid, None if after is None else self.clock() + after)

    def step(self, rid: str, number: int) -> Any:
        with self.store.begin() as tx:
            return next(s for s in tx.steps(rid) if s.number == number)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no release is in flight in the pool."""
        wait_for(lambda: not self.worker.inflight, timeout)

    def close(self) -> None:
        self.worker.stop()
        self.worker.drain(time.monotonic() + 5)
        self.store.close()


def wait_for(condition: Callable[[], object], timeout: float = 10.0, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(every)
