"""The outbox of `release_changed`: spaced retries, held delivery, nothing dropped quickly."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from itsm_bridge.errors import NeedsHuman, TransientError
from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import Event, Release
from itsm_bridge.views import release_json, render_show
from process_harness import Harness


class Flaky:
    """A `release_changed` plugin that raises the given errors first, counting every call."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = list(errors)
        self.attempts = 0
        self.seen: list[str] = []

    @hookimpl
    def release_changed(self, release: Release, event: Event) -> None:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        self.seen.append(event.message)


def harness(tmp_path: Path, errors: list[Exception]) -> tuple[Harness, Flaky]:
    h = Harness(tmp_path)
    flaky = Flaky(errors)
    h.process.host.register(flaky, "flaky", version="0", module="test_outbox")
    return h, flaky


def core(h: Harness, rid: str) -> dict[str, object]:
    with h.store.begin() as tx:
        return tx.core_data(rid)


def test_a_failing_event_is_not_retried_within_one_advance(tmp_path: Path) -> None:
    h, flaky = harness(tmp_path, [RuntimeError("bug in a plugin")] * 10)
    rid = h.create()
    h.process.advance(rid)  # runs several steps, each of which would deliver again
    assert flaky.attempts == 1
    assert core(h, rid)["delivery_retry_at"] == (h.clock.now + timedelta(seconds=30)).isoformat()
    h.run(rid, minutes=0.4)  # 24 s later: not due yet
    assert flaky.attempts == 1
    h.run(rid, minutes=0.2)  # 36 s after the failure
    assert flaky.attempts == 2


def test_an_event_that_keeps_failing_is_given_up_after_five_spaced_attempts(
    tmp_path: Path,
) -> None:
    h, flaky = harness(tmp_path, [RuntimeError("bug in a plugin")] * 5)
    rid = h.create()
    start = h.clock.now
    for _ in range(20):
        h.run(rid, minutes=1)
        if h.events(rid, "sync_failed"):
            break
    gave_up = h.events(rid, "sync_failed")
    assert len(gave_up) == 1
    assert "after 5 attempts" in gave_up[0]
    assert flaky.attempts >= 5
    # 30 s, 1, 2 and 4 minutes apart: not before 7.5 minutes
    assert h.clock.now - start >= timedelta(minutes=7, seconds=30)
    # every later event was delivered, in order, and nothing twice
    messages = h.events(rid)
    assert flaky.seen == messages[1 : len(flaky.seen) + 1]


def test_transient_failures_are_retried_without_limit(tmp_path: Path) -> None:
    h, flaky = harness(tmp_path, [TransientError("503")] * 8)
    rid = h.create()
    for _ in range(10):
        h.run(rid, minutes=60)
    assert flaky.attempts == 8 + len(flaky.seen)
    assert h.events(rid, "sync_failed") == []
    assert flaky.seen == h.events(rid)[: len(flaky.seen)]
    assert flaky.seen[0].startswith("release payments 1.0.0")  # the first event, not dropped


def test_a_fault_only_a_person_can_fix_holds_delivery_and_asks_for_attention(
    tmp_path: Path,
) -> None:
    h, flaky = harness(tmp_path, [NeedsHuman("HTTP 401: User Not Authenticated")] * 9)
    rid = h.create()
    report = h.process.run_due()
    assert report.failures == [
        f"release {rid} needs attention: plugins cannot be told about the release: "
        "HTTP 401: User Not Authenticated"
    ]
    for _ in range(8):
        h.run(rid, minutes=61)
    assert flaky.attempts == 9
    assert flaky.seen == []
    assert h.events(rid, "sync_failed") == []  # held, never given up
    with h.store.begin() as tx:
        data = release_json(tx, rid)
    assert "User Not Authenticated" in data["attention"]
    assert "needs attention: plugins cannot be told" in render_show(data)
    h.run(rid, minutes=61)  # the password was fixed meanwhile
    assert flaky.seen == h.events(rid)[: len(flaky.seen)]
    assert len(flaky.seen) == len(h.events(rid))
    assert core(h, rid)["attention"] is None
    with h.store.begin() as tx:
        assert release_json(tx, rid)["attention"] is None


def test_retry_tells_the_plugins_again_at_once(tmp_path: Path) -> None:
    h, flaky = harness(tmp_path, [NeedsHuman("HTTP 401")])
    rid = h.create()
    h.process.advance(rid)
    assert flaky.attempts == 1
    h.commands.retry(rid)  # the password was fixed
    h.process.run_due()  # no time passed
    assert flaky.attempts > 1
    assert flaky.seen[0].startswith("release payments 1.0.0")


def test_events_of_commands_reach_the_plugins(tmp_path: Path) -> None:
    h, flaky = harness(tmp_path, [])
    rid = h.create()
    h.process.advance(rid)
    h.commands.cancel(rid, "no longer needed")
    h.process.run_due()
    assert flaky.seen[-2:] == [
        h.events(rid, "state")[-1],
        "cancelled: no longer needed",
    ]
    assert h.events(rid, "state")[-1].startswith("planned -> cancelled")


def test_a_held_delivery_brings_a_finished_release_back_when_due(tmp_path: Path) -> None:
    h, flaky = harness(tmp_path, [])
    rid = h.create()
    h.process.advance(rid)
    flaky.errors = [TransientError("503")]
    h.commands.cancel(rid, "no longer needed")
    h.process.run_due()
    assert "cancelled: no longer needed" not in flaky.seen
    with h.store.begin() as tx:
        assert tx.next_run(rid) == h.clock.now + timedelta(seconds=30)
    h.clock.now += timedelta(seconds=31)
    assert rid in h.process.run_due().advanced
    assert flaky.seen[-1] == "cancelled: no longer needed"
