"""Failure signals recorded with a release (pushed alerts) and how steps 13 and 18 weigh them."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from itsm_bridge import signals
from itsm_bridge.models import ConfigurationItem, Impact, Release, Signal
from process_harness import Harness


def alert(key: str, at: datetime, *, status: str = "firing", severity: str = "critical") -> Signal:
    return Signal(
        source="alertmanager",
        key=key,
        severity=severity,  # type: ignore[arg-type]
        summary=f"alert {key}",
        at=at,
        service="payments",
        evidence={"status": status},
    )


def record(h: Harness, rid: str, *found: Signal) -> None:
    with h.store.begin() as tx:
        core: dict[str, Any] = tx.core_data(rid)
        for signal in found:
            core["signals"] = signals.recorded(core, signal)
        tx.set_core_data(rid, signals=core["signals"])


def verifying(h: Harness) -> tuple[str, Release]:
    rid = h.create()
    release = h.run(rid, cycles=6)
    assert release.state.value == "verifying"
    assert release.deploy_started_at is not None
    return rid, release


def test_one_recorded_firing_alert_fails_the_release(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid, release = verifying(h)
    record(h, rid, alert("fp1", h.clock.now))
    release = h.run(rid, cycles=8)
    assert release.failure_reason == "alertmanager: alert fp1"
    assert release.state.value == "closed"


def test_what_never_triggers(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"failure_severity": "critical"})
    rid, release = verifying(h)
    began = release.deploy_started_at
    assert began is not None
    record(
        h,
        rid,
        alert("resolved", h.clock.now, status="resolved"),
        alert("warning", h.clock.now, severity="warning"),
        alert("before", began - timedelta(minutes=5)),
    )
    assert h.run(rid).state.value == "verifying"
    with h.store.begin() as tx:
        watch = next(s for s in tx.steps(rid) if s.number == 13).state
    until = datetime.fromisoformat(watch["until"])
    record(h, rid, alert("late", until + timedelta(seconds=1)))  # after the watch ended
    assert h.run(rid, minutes=31).state.value in ("succeeded", "closed")
    assert not h.release(rid).failure_reason


def test_a_resolved_update_replaces_the_firing_alert(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid, _ = verifying(h)
    record(h, rid, alert("fp1", h.clock.now), alert("fp1", h.clock.now, status="resolved"))
    with h.store.begin() as tx:
        (kept,) = signals.stored(tx.core_data(rid))
    assert kept.evidence["status"] == "resolved"
    assert h.run(rid).state.value == "verifying"


def test_the_failure_limit_counts_distinct_firing_signals(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"failure_limit": 2})
    rid, _ = verifying(h)
    record(h, rid, alert("fp1", h.clock.now))
    assert h.run(rid).state.value == "verifying"
    assert any("1 of 2 signal(s) needed to fail" in m for m in h.events(rid, "step"))
    record(h, rid, alert("fp1", h.clock.now))  # the same alert again: not a second one
    assert h.run(rid).state.value == "verifying"
    record(h, rid, alert("fp2", h.clock.now))
    release = h.run(rid, cycles=6)
    assert release.failure_reason == "alertmanager: alert fp2"


def test_clock_skew_admits_an_alert_stamped_just_before_the_deployment(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"clock_skew_seconds": 30})
    rid, release = verifying(h)
    began = release.deploy_started_at
    assert began is not None
    record(h, rid, alert("skewed", began.replace(microsecond=0) - timedelta(seconds=20)))
    assert h.run(rid, cycles=6).failure_reason == "alertmanager: alert skewed"


def test_which_releases_a_signal_concerns() -> None:
    impact = Impact(
        cis=[ConfigurationItem(id="ci1", name="payments-db")],
        services=[ConfigurationItem(id="svc1", name="Payments")],
    )
    release = Release(id="r", service="payments", version="1", impact=impact)
    at = datetime.fromisoformat("2026-11-28T10:00:00+00:00")
    for name, concerned in [
        ("payments", True),
        ("payments-db", True),
        ("ci1", True),
        ("Payments", True),
        ("ledger", False),
        ("", False),
    ]:
        signal = alert("k", at).model_copy(update={"service": name})
        assert signals.concerns(release, signal) is concerned, name
