"""A process with the fake vendor plugin and a controlled clock, for the core's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fake_vendor import FakeVendor, FakeVendorPlugin
from itsm_bridge.commands import ReleaseCommands
from itsm_bridge.models import Release
from itsm_bridge.plugins import load_plugins
from itsm_bridge.process import Process
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge.store import open_store

JOBS = {"build": "b", "deploy": "d", "smoke_test": "s", "rollback": "r"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 10, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        service: dict[str, Any] | None = None,
        database: str | None = None,
        **config: Any,
    ):
        self.clock = Clock()
        self.vendor = FakeVendor()
        self.settings = settings_from_mapping(
            {
                "database": database or f"sqlite:///{tmp_path}/bridge.db",
                "data_dir": str(tmp_path),
                "services": {"payments": service or {"jobs": JOBS}},
                "policy": {"verify_minutes": 30, "poll_seconds": 30, **config.pop("policy", {})},
                **config,
            }
        )
        self.store = open_store(self.settings.database)
        host = load_plugins(self.settings)
        host.register(FakeVendorPlugin(self.vendor), "fake", version="0", module="fake_vendor")
        self.process = Process(self.store, host, self.settings, clock=self.clock)
        self.commands = ReleaseCommands(self.process)

    def create(self, **kw: Any) -> str:
        return self.commands.create("payments", kw.pop("version", "1.0.0"), **kw).id

    def run(self, rid: str, minutes: float = 0.5, cycles: int = 1) -> Release:
        """Advance `cycles` times, moving the clock `minutes` before each cycle."""
        for _ in range(cycles):
            self.clock.now += timedelta(minutes=minutes)
            self.process.advance(rid)
        return self.release(rid)

    def release(self, rid: str) -> Release:
        with self.store.begin() as tx:
            release = tx.release(rid)
        assert release is not None
        return release

    def steps(self, rid: str) -> dict[str, tuple[str, str]]:
        with self.store.begin() as tx:
            return {s.name: (s.status, s.detail) for s in tx.steps(rid)}

    def events(self, rid: str, kind: str | None = None) -> list[str]:
        with self.store.begin() as tx:
            return [e.message for e in tx.events(rid) if kind is None or e.kind == kind]
