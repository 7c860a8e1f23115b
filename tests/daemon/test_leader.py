"""The poller lock: a PostgreSQL advisory lock held by one replica's session; SQLite: always."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from itsm_bridge.daemon.leader import LOCK_KEY, AdvisoryLeader, AlwaysLeader, make_leader


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    yield postgres_server


def terminate(url: str, pid: int) -> None:
    """End a session as kill -9 of its replica does, and wait until it is gone (the server
    signals the backend and answers at once; its locks go when it has exited)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid}).scalar()
    engine.dispose()


def lock_holders(url: str) -> list[int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND objid::bigint = (CAST(:key AS bigint) & 4294967295) "
                "AND classid::bigint = ((CAST(:key AS bigint) >> 32) & 4294967295)"
            ),
            {"key": LOCK_KEY},
        )
        pids = [int(r[0]) for r in rows]
    engine.dispose()
    return pids


def test_sqlite_serves_one_daemon_which_always_leads(tmp_path: Path) -> None:
    leader = make_leader(f"sqlite:///{tmp_path}/b.db")
    assert isinstance(leader, AlwaysLeader)
    assert leader.check() and leader.held


def test_one_replica_holds_the_lock_until_it_lets_go(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    changes: list[tuple[str, bool]] = []
    a = AdvisoryLeader(pg_url, on_change=lambda held: changes.append(("a", held)))
    b = AdvisoryLeader(pg_url, on_change=lambda held: changes.append(("b", held)))
    assert isinstance(make_leader(pg_url), AdvisoryLeader)
    try:
        assert a.check() is True
        assert b.check() is False
        assert a.check() is True and b.check() is False  # a keeps it
        assert a.held and not b.held
        assert lock_holders(pg_url) == [a._conn.info.backend_pid]
        assert changes == [("a", True)]  # a callback on changes only
        assert caplog.text.count("this replica holds the poller lock") == 1
        a.release()  # a graceful stop frees the lock at once
        assert not a.held
        assert b.check() is True
        assert changes == [("a", True), ("b", True)]
    finally:
        a.release()
        b.release()


def test_a_leader_whose_session_died_stops_leading_and_another_takes_over(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = AdvisoryLeader(pg_url), AdvisoryLeader(pg_url)
    try:
        assert a.check() and not b.check()
        terminate(pg_url, a._conn.info.backend_pid)  # what kill -9 of the replica does
        assert b.check() is True  # the session ended: the lock is free
        assert a.check() is False  # a notices, and does not get it back
        assert "lost the poller lock" in caplog.text
        assert lock_holders(pg_url) == [b._conn.info.backend_pid]
    finally:
        a.release()
        b.release()


def test_an_unreachable_database_means_not_leading_without_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    leader = AdvisoryLeader("postgresql+psycopg://nobody:secret-pw@127.0.0.1:9/none")
    assert leader.check() is False
    assert leader.check() is False
    assert "secret-pw" not in caplog.text
