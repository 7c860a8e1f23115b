"""Killing the process between any two steps loses nothing and repeats no side effect."""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_vendor import FakeVendor, FakeVendorPlugin, SimulatedCrash
from itsm_bridge.commands import ReleaseCommands
from itsm_bridge.plugins import load_plugins
from itsm_bridge.process import Process
from itsm_bridge.settings import BridgeSettings, settings_from_mapping
from itsm_bridge.store import Store, open_store

SERVICE = {
    "ci": "payments-api",
    "jobs": {"build": "b", "deploy": "d", "smoke_test": "s", "rollback": "r"},
    "tasks": [{"name": "Warm caches", "kind": "automated", "job": "warm", "after": "smoke_test"}],
}


def make_settings(tmp_path: Path) -> BridgeSettings:
    return settings_from_mapping(
        {
            "database": f"sqlite:///{tmp_path}/bridge.db",
            "data_dir": str(tmp_path),
            "services": {"payments": SERVICE},
            "policy": {"verify_minutes": 0, "post_mortem": {"after_success": True}},
        }
    )


def make_process(settings: BridgeSettings, store: Store, vendor: FakeVendor) -> Process:
    """A new process, as after a restart (a new owner; the dead one's lease was dropped)."""
    host = load_plugins(settings)
    host.register(FakeVendorPlugin(vendor), "fake", version="0", module="fake_vendor")
    return Process(store, host, settings)


def run_to_end(settings: BridgeSettings, store: Store, vendor: FakeVendor, rid: str) -> int:
    """Advance until the release closes, restarting after every simulated crash."""
    crashes = 0
    for _ in range(50):
        process = make_process(settings, store, vendor)
        try:
            process.advance(rid)
        except SimulatedCrash:
            crashes += 1
            continue
        with store.begin() as tx:
            release = tx.release(rid)
            assert release is not None
            if release.state.value == "closed":
                return crashes
            for step in tx.steps(rid):  # let waiting steps poll again at once
                if step.status == "waiting":
                    step.state["retry_at"] = None
                    tx.save_step(rid, step)
    raise AssertionError("release did not close")


EFFECTS = [
    "change",
    "task",
    "notes",
    "job",
    "task_closed",
    "notification",
    "post_mortem",
    "sla",
    "work_note",
]


@pytest.mark.parametrize("kind", EFFECTS)
@pytest.mark.parametrize("which", ["first", "last"])
def test_crash_after_any_side_effect_repeats_nothing(tmp_path: Path, kind: str, which: str) -> None:
    settings = make_settings(tmp_path)
    store = open_store(settings.database)
    vendor = FakeVendor()
    commands = ReleaseCommands(make_process(settings, store, vendor))
    rid = commands.create("payments", "1.0.0").id

    baseline = FakeVendor()
    base_store = open_store(f"sqlite:///{tmp_path}/baseline.db")
    base_rid = (
        ReleaseCommands(make_process(settings, base_store, baseline)).create("payments", "1.0.0").id
    )
    assert run_to_end(settings, base_store, baseline, base_rid) == 0

    vendor.crash_at = (kind, 1 if which == "first" else baseline.calls[kind])
    crashes = run_to_end(settings, store, vendor, rid)
    assert crashes == 1
    assert vendor.duplicates == []
    for effect in EFFECTS:
        # the re-run of step 17 finds the service levels written: it writes, and so tells,
        # nothing (the `service_levels` event is for what a run wrote): one note fewer
        told_less = 1 if (kind, effect) == ("sla", "work_note") else 0
        assert vendor.created[effect] == baseline.created[effect] - told_less, effect
        # only the interrupted hook call is made again (and finds its records): nothing else
        # repeats. One create_tasks call makes three task calls, so up to three repeat.
        extra = vendor.calls[effect] - baseline.calls[effect] + told_less
        if effect == kind:
            assert 1 <= extra <= (3 if kind == "task" else 1), effect
        else:
            assert extra == 0, effect
    assert vendor.created["change"] == 1
    assert vendor.created["job"] == 4  # build, deploy, smoke test, warm caches
    with store.begin() as tx:
        steps = {s.name: s.status for s in tx.steps(rid)}
        records = tx.records(rid)
    assert set(steps.values()) <= {"done", "skipped"}
    assert len([r for r in records if r.kind == "change_request"]) == 1
    assert len([r for r in records if r.kind == "task"]) == 3  # deploy, smoke, warm caches


def test_every_step_outcome_is_committed_before_the_next(tmp_path: Path) -> None:
    """A crash inside step N leaves steps before N committed and N not done."""
    settings = make_settings(tmp_path)
    store = open_store(settings.database)
    vendor = FakeVendor()
    vendor.crash_at = ("task", 1)  # inside step 9
    process = make_process(settings, store, vendor)
    rid = ReleaseCommands(process).create("payments", "1.0.0").id
    with pytest.raises(SimulatedCrash):
        process.advance(rid)
    with store.begin() as tx:
        steps = {s.number: s.status for s in tx.steps(rid)}
        records = tx.records(rid)
    assert steps[6] == "done"
    assert steps[9] == "pending"
    assert [r.kind for r in records if r.kind == "change_request"] == ["change_request"]
