"""The inbox in batches: deliveries stored together (group commit), events acted on together,
and the store's bulk inbox rows; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from itsm_bridge.inbox import InboxPass, inbox_pass, receive, store_deliveries
from itsm_bridge.store import Tx
from itsm_bridge.store import schema as t
from process_harness import Harness


def event(key: str, **fields: Any) -> dict[str, Any]:
    return {"source": "ci", "kind": "job", "dedupe_key": key, "payload": {"k": key}, **fields}


def transactions(monkeypatch: pytest.MonkeyPatch, h: Harness) -> list[int]:
    """Counts the write transactions (`Store.begin`) the store opens from now on."""
    opened: list[int] = []
    real = h.store.begin

    @contextmanager
    def counted() -> Iterator[Tx]:
        opened.append(1)
        with real() as tx:
            yield tx

    monkeypatch.setattr(h.store, "begin", counted)
    return opened


def two_releases(h: Harness) -> tuple[str, str]:
    """Two releases in progress, the first created first."""
    first = h.create()
    h.clock.now += timedelta(seconds=1)
    return first, h.create(version="1.1.0")


def rows(h: Harness) -> dict[str, dict[str, Any]]:
    """Every inbox row by dedupe key."""
    with h.store.read() as tx:
        found = tx.conn.execute(sa.select(t.inbox)).mappings()
        return {str(r["dedupe_key"]): dict(r) for r in found}


@pytest.fixture
def h(tmp_path: Path, database_url: str) -> Harness:
    return Harness(tmp_path, database=database_url)


# -- storing: a group commit ----------------------------------------------------------------
def test_deliveries_are_stored_in_one_transaction_each_key_once(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    receive(h.store, lambda *a: [event("k0")], {}, b"{}")  # known before the batch
    opened = transactions(monkeypatch, h)
    outcomes = store_deliveries(
        h.store,
        [
            [event("k0"), event("k1")],  # k0 already known
            [event("k1"), event("k2")],  # k1: the delivery before stored it
            [],
            [event("k3"), event("k3")],  # twice in one delivery: once
        ],
    )
    assert outcomes == [1, 1, 0, 1]
    assert len(opened) == 1
    assert sorted(rows(h)) == ["k0", "k1", "k2", "k3"]


def test_a_delivery_that_breaks_the_batch_fails_alone(h: Harness) -> None:
    broken = event("bad", payload={"not json": object()})  # the driver refuses it
    outcomes = store_deliveries(h.store, [[event("a")], [broken], [event("b")]])
    assert outcomes[0] == 1 and outcomes[2] == 1
    assert isinstance(outcomes[1], Exception)  # (SQLAlchemy's on SQLite, psycopg's TypeError)
    assert sorted(rows(h)) == ["a", "b"]


def test_a_database_that_refuses_the_batch_fails_it_without_trying_each(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[int] = []

    def locked(self: Any, events: list[dict[str, Any]]) -> set[str]:
        tried.append(len(events))
        raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr("itsm_bridge.store.queues.QueueRows.inbox_add_many", locked)
    outcomes = store_deliveries(h.store, [[event("a")], [event("b"), event("c")]])
    assert all(isinstance(o, sa.exc.OperationalError) for o in outcomes)
    assert tried == [3]  # a locked or lost database is no delivery's fault: no retry each


# -- acting: events that wake releases, together --------------------------------------------
def test_events_that_wake_releases_are_acted_on_in_one_transaction(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two_releases(h)
    with h.store.begin() as tx:
        tx.set_next_run(first, None)
        tx.set_next_run(second, None)
    events = [
        event("n1", release_id=first),
        event("n2", release_id=first),
        event("u1"),  # names no release: every release in progress
        event("u2", release_id="rel-unknown"),  # names one that does not exist: the same
    ]
    receive(h.store, lambda *a: events, {}, b"{}")
    woken: list[str] = []
    real_wake = Tx.wake

    def wake(self: Tx, release_id: str, now: Any) -> None:
        woken.append(release_id)
        real_wake(self, release_id, now)

    monkeypatch.setattr(Tx, "wake", wake)
    opened = transactions(monkeypatch, h)
    assert inbox_pass(h.store, h.process) == InboxPass([], more=False, took=4)
    assert len(opened) == 1  # reading the batch takes no write transaction
    assert sorted(woken) == sorted([first, second])  # each once, not once per event
    done = {key: (row["outcome"], row["processed_at"] is not None) for key, row in rows(h).items()}
    assert done == {
        "n1": (f"woke: {first}", True),
        "n2": (f"woke: {first}", True),
        "u1": (f"woke: {first}, {second}", True),
        "u2": (f"woke: {first}, {second}", True),
    }
    assert rows(h)["u2"]["release_id"] == "rel-unknown"  # as it came
    with h.store.read() as tx:
        assert sorted(tx.due_release_ids(h.clock.now)) == sorted([first, second])


def test_events_for_a_busy_release_wait_while_the_others_are_done(h: Harness) -> None:
    busy, free = two_releases(h)
    with h.store.begin() as tx:
        assert tx.lease_release(busy, "another-replica", h.process.lease_ttl)
    receive(h.store, lambda *a: [event("b", release_id=busy), event("f", release_id=free)], {}, b"")
    inbox_pass(h.store, h.process)
    assert {k: r["processed_at"] is None for k, r in rows(h).items()} == {"b": True, "f": False}
    with h.store.begin() as tx:
        tx.drop_release_lease(busy, "another-replica")
    inbox_pass(h.store, h.process)
    assert all(r["processed_at"] is not None for r in rows(h).values())


def test_a_whole_batch_says_more_events_may_be_waiting(h: Harness) -> None:
    receive(h.store, lambda *a: [event("a"), event("b"), event("c")], {}, b"")
    assert inbox_pass(h.store, h.process, limit=2) == InboxPass([], more=True, took=2)
    assert inbox_pass(h.store, h.process, limit=2) == InboxPass([], more=False, took=1)
    assert inbox_pass(h.store, h.process, limit=2) == InboxPass([], more=False, took=0)
    assert all(r["processed_at"] is not None for r in rows(h).values())


def test_when_acting_together_fails_each_event_is_tried_alone_and_named(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, bad = two_releases(h)
    real_wake = Tx.wake

    def wake(self: Tx, release_id: str, now: Any) -> None:
        if release_id == bad:
            raise RuntimeError("a bug in waking")
        real_wake(self, release_id, now)

    monkeypatch.setattr(Tx, "wake", wake)
    receive(h.store, lambda *a: [event("g", release_id=good), event("x", release_id=bad)], {}, b"")
    failures = inbox_pass(h.store, h.process).failures
    assert failures == ["inbox event x: RuntimeError: a bug in waking"]
    assert {k: r["processed_at"] is None for k, r in rows(h).items()} == {"g": False, "x": True}


def signal_event(key: str, service: str = "payments") -> dict[str, Any]:
    payload = {"source": "alertmanager", "key": key, "summary": "down", "service": service,
               "at": "2026-11-28T10:00:00+00:00", "evidence": {"status": "firing"}}  # fmt: skip
    return {"source": "alertmanager", "kind": "signal", "dedupe_key": key, "payload": payload}


def watched(h: Harness, count: int) -> list[str]:
    """`count` releases of payments being deployed (watched for signals)."""
    rids = [h.create(version=f"1.{n}.0") for n in range(count)]
    for rid in rids:
        h.run(rid, cycles=4)
        assert h.release(rid).state.value in ("implementing", "verifying")
    return rids


def test_a_signal_is_recorded_with_every_release_and_marked_in_one_transaction(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    rids = watched(h, 2)
    receive(h.store, lambda *a: [signal_event("fp1")], {}, b"")
    opened = transactions(monkeypatch, h)
    inbox_pass(h.store, h.process)
    assert len(opened) == 1
    assert rows(h)["fp1"]["outcome"] == f"recorded with: {', '.join(rids)}"
    with h.store.read() as tx:
        assert all([s["key"] for s in tx.core_data(r)["signals"]] == ["fp1"] for r in rids)
        assert sorted(tx.due_release_ids(h.clock.now)) == sorted(rids)


def test_a_signal_for_a_busy_release_is_recorded_with_the_others_and_stays_pending(
    h: Harness,
) -> None:
    busy, free = watched(h, 2)
    with h.store.begin() as tx:
        assert tx.lease_release(busy, "another-replica", h.process.lease_ttl)
    receive(h.store, lambda *a: [signal_event("fp1")], {}, b"")
    inbox_pass(h.store, h.process)
    assert rows(h)["fp1"]["processed_at"] is None
    with h.store.read() as tx:
        assert "signals" not in tx.core_data(busy)
        assert [s["key"] for s in tx.core_data(free)["signals"]] == ["fp1"]
    with h.store.begin() as tx:
        tx.drop_release_lease(busy, "another-replica")
    inbox_pass(h.store, h.process)
    assert rows(h)["fp1"]["processed_at"] is not None
    with h.store.read() as tx:
        assert [s["key"] for s in tx.core_data(busy)["signals"]] == ["fp1"]
        assert [s["key"] for s in tx.core_data(free)["signals"]] == ["fp1"]  # once


def test_the_ids_of_releases(h: Harness) -> None:
    first, second = two_releases(h)
    h.commands.cancel(second, "not this one")
    with h.store.read() as tx:
        assert tx.known_release_ids({first, second, "rel-nope"}) == {first, second}
        assert tx.known_release_ids(set()) == set()
        assert tx.release_ids_in(["planned"]) == [first]
        assert tx.release_ids_in(["planned", "cancelled"]) == [first, second]  # oldest first
