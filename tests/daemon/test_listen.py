"""Waking every replica: NOTIFY at commit of a new or woken release, coalesced NOTIFY for
stored events, and a listener that survives a broken connection (PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from daemon.daemon_harness import WorkerHarness, wait_for
from itsm_bridge.daemon.listen import Listener, Notifier


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def pg(tmp_path: Path, postgres_server: str) -> Iterator[WorkerHarness]:
    engine = sa.create_engine(postgres_server)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    h = WorkerHarness(tmp_path, database=postgres_server)
    yield h
    h.store.close()


@pytest.fixture
def listening(pg: WorkerHarness) -> Iterator[tuple[Listener, Wakes]]:
    wakes = Wakes()
    listener = Listener(pg.settings.database, wakes)
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    wait_for(listener.listening.is_set, timeout=5)
    wait_for(lambda: wakes.count == 1)  # once on connecting
    yield listener, wakes
    listener.stop()


def settled(wakes: Wakes, quiet: float = 0.3, timeout: float = 5.0) -> int:
    """The count once no wake arrived for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last = -1
    while last != wakes.count:
        assert time.monotonic() < deadline, "wake-ups keep coming"
        last = wakes.count
        time.sleep(quiet)
    return last


def test_a_new_or_woken_release_wakes_every_listener_at_commit(
    pg: WorkerHarness, listening: tuple[Listener, Wakes]
) -> None:
    _, wakes = listening
    rid = pg.create()  # `release create` wakes the new release
    wait_for(lambda: wakes.count == 2, timeout=2)
    started = time.monotonic()
    with pg.store.begin() as tx:
        tx.wake(rid, pg.clock())
    wait_for(lambda: wakes.count == 3, timeout=2)
    assert time.monotonic() - started < 1.0
    with pytest.raises(RuntimeError), pg.store.begin() as tx:
        tx.wake(rid, pg.clock())
        raise RuntimeError("rolled back")
    with pg.store.begin() as tx:  # a stored event alone sends nothing (the fast path)
        tx.inbox_add("ci", "ci:1", "job", {})
    assert settled(wakes) == 3


def test_a_burst_of_wake_requests_is_one_or_a_few_notifications(
    pg: WorkerHarness, listening: tuple[Listener, Wakes]
) -> None:
    _, wakes = listening
    notifier = Notifier(pg.store)
    thread = threading.Thread(target=notifier.run, daemon=True)
    thread.start()
    for _ in range(200):
        notifier.notify()
    wait_for(lambda: wakes.count >= 2, timeout=2)
    total = settled(wakes)
    assert 1 <= notifier.sent <= 5
    assert total == 1 + notifier.sent
    notifier.stop()
    thread.join(2)
    assert not thread.is_alive()


def test_the_listener_reconnects_and_wakes_after_its_connection_broke(
    pg: WorkerHarness, listening: tuple[Listener, Wakes], caplog: pytest.LogCaptureFixture
) -> None:
    listener, wakes = listening
    engine = sa.create_engine(pg.settings.database)
    with engine.connect() as conn:
        killed = conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'itsm-bridge listener' AND pid = :pid"
            ),
            {"pid": listener.backend_pid},
        ).all()
    engine.dispose()
    assert killed == [(True,)]
    wait_for(lambda: wakes.count == 2, timeout=5)  # reconnected (after 1 s): one wake
    assert "not listening for wake-ups" in caplog.text
    rid = pg.create()
    wait_for(lambda: wakes.count == 3, timeout=2)  # and notifications arrive again
    assert rid
