"""Failure signals recorded with a release (pushed alerts) and how steps 13 and 18 weigh them."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from itsm_bridge import signals
from itsm_bridge.models import ConfigurationItem, Impact, Release, Signal
from itsm_bridge.plugins import load_plugins
from itsm_bridge.steps_plan import StepEnv
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


def test_a_recorded_alert_that_fails_the_release_does_not_wait_for_polled_plugins(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, policy={"failure_limit": 2})
    rid, _ = verifying(h)
    record(h, rid, alert("fp1", h.clock.now))
    polls = h.vendor.detect_calls
    assert h.run(rid).state.value == "verifying"  # one of two: the plugins are asked too
    assert h.vendor.detect_calls > polls
    polls = h.vendor.detect_calls
    record(h, rid, alert("fp2", h.clock.now))
    h.clock.now += timedelta(minutes=1)
    h.process.advance(rid)  # two of two recorded: failed without asking them
    assert h.vendor.detect_calls == polls
    assert h.release(rid).failure_reason == "alertmanager: alert fp2"


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


def test_which_releases_a_signal_concerns(tmp_path: Path) -> None:
    """By the service, or by the id or name of an affected CI or impacted service, as the
    store holds them; a release that is not watched is never concerned."""
    h = Harness(tmp_path)
    rid, release = verifying(h)
    impact = Impact(
        cis=[ConfigurationItem(id="ci1", name="payments-db")],
        services=[ConfigurationItem(id="svc1", name="Payments")],
    )
    with h.store.begin() as tx:
        tx.update_release(release.model_copy(update={"impact": impact}))
    planned = h.create(version="9.9.9")  # not watched: never concerned
    at = datetime.fromisoformat("2026-11-28T10:00:00+00:00")
    with h.store.read() as tx:
        watched = tx.impacts_in(signals.WATCHED)
    assert planned not in [row[0] for row in watched]
    for name, concerned in [
        ("payments", True),
        ("payments-db", True),
        ("ci1", True),
        ("Payments", True),
        ("svc1", True),
        ("ledger", False),
        ("", False),
    ]:
        signal = alert("k", at).model_copy(update={"service": name})
        assert signals.concerned(watched, signal) == ([rid] if concerned else []), name


def test_a_watch_polls_only_where_a_plugin_answers_detect_failure(tmp_path: Path) -> None:
    """Steps 13 and 18 look again at the next poll while a plugin answers `detect_failure`
    (the fake vendor does); with none, at the end of the watch: the inbox wakes the release
    when an alert concerns it."""
    h = Harness(tmp_path)
    now, until = h.clock.now, h.clock.now + timedelta(hours=1)
    assert now + timedelta(seconds=24) <= h.process.env.next_look(now, until)
    assert h.process.env.next_look(now, until) <= now + timedelta(seconds=30)
    assert h.process.env.next_look(now, now + timedelta(seconds=5)) == now + timedelta(seconds=5)
    without = StepEnv(load_plugins(h.settings), h.settings)  # no plugin but the defaults
    assert without.next_look(now, until) == until


def test_without_a_polled_plugin_a_recorded_alert_wakes_the_watch(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid, _ = verifying(h)
    h.process.env = StepEnv(load_plugins(h.settings), h.settings)  # nobody to poll
    h.run(rid)
    with h.store.read() as tx:
        until = next(s for s in tx.steps(rid) if s.number == 13).state["until"]
        assert tx.next_run(rid) == datetime.fromisoformat(until)  # the end of the watch
    assert datetime.fromisoformat(until) > h.clock.now + timedelta(minutes=20)
    record(h, rid, alert("fp1", h.clock.now))
    with h.store.begin() as tx:
        tx.wake(rid, h.clock.now)  # what the inbox does with a recorded alert
    h.process.env = StepEnv(h.process.host, h.settings)
    assert h.run(rid, minutes=0).state.value != "verifying"
