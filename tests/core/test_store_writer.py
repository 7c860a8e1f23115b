"""SQLite's one writer: the threads of a process queue for it on the store's own lock, and
reading (`Store.read`) takes no write lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from itsm_bridge.store import Store, engine, open_store


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setattr(engine, "BUSY_SECONDS", 0.2)  # the lock's wait and SQLite's alike
    opened = open_store(f"sqlite:///{tmp_path}/bridge.db")
    yield opened
    opened.close()


class Holder:
    """A thread inside a write transaction (the cursor `held` written, not yet committed)
    until told to commit."""

    def __init__(self, store: Store) -> None:
        self.inside = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._hold, args=(store,), daemon=True)
        self.thread.start()
        assert self.inside.wait(5)

    def _hold(self, store: Store) -> None:
        with store.begin() as tx:
            tx.set_cursor("held", "by the holder")
            self.inside.set()
            self.done.wait(5)

    def commit(self) -> None:
        self.done.set()
        self.thread.join(5)


def test_a_writer_waits_for_another_on_the_stores_lock_not_in_sqlite(store: Store) -> None:
    holder = Holder(store)
    assert store._writer is not None
    assert not store._writer.acquire(blocking=False)  # the holder's transaction has it
    assert store.engine.pool.checkedout() == 1
    with pytest.raises(sa.exc.OperationalError, match="database is locked"), store.begin():
        pass  # pragma: no cover - never entered
    assert store.engine.pool.checkedout() == 1  # waited without a connection of its own
    holder.commit()
    with store.begin() as tx:  # free again at once
        assert tx.cursor("held") == "by the holder"


def test_reading_takes_no_write_lock_and_sees_only_what_is_committed(store: Store) -> None:
    with store.begin() as tx:
        tx.set_cursor("held", "before")
    holder = Holder(store)
    with store.read() as tx:  # neither waits for the writer nor fails
        assert tx.cursor("held") == "before"
    holder.commit()
    with store.read() as tx:
        assert tx.cursor("held") == "by the holder"


def test_postgresql_has_no_process_lock(postgres_server: str) -> None:
    server = open_store(postgres_server)
    try:
        assert server._writer is None  # its writers do not exclude each other
        with server.read() as tx:
            assert tx.db_now() is not None
    finally:
        server.close()
