"""Which replica runs the pollers (and the inbox): the holder of a PostgreSQL advisory lock.

`pg_try_advisory_lock(key)` takes a session-level lock without waiting: it is held until the
session ends or `pg_advisory_unlock`. The leader keeps one dedicated connection (autocommit,
TCP keepalives) open for as long as it leads; when the process dies, PostgreSQL ends its
session and the lock is free for the next replica's `check()`. Each `check()` of the leader
runs `SELECT 1` on that session: a connection that broke means the lock may be someone
else's now, so this replica stops leading until it takes the lock again.

SQLite serves one daemon: it is always the leader (`AlwaysLeader`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.engine import make_url

from itsm_bridge.store.engine import database_reason

log = logging.getLogger(__name__)

LOCK_NAME = "itsm-bridge:pollers"
# The advisory lock's bigint key: the first 8 bytes of a digest of LOCK_NAME (signed).
LOCK_KEY = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)
CONNECT_TIMEOUT = 5
# Keepalives make a silently dropped connection fail within about 30 s instead of hours.
KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3}  # fmt: skip


class Leader(Protocol):
    def check(self) -> bool:
        """Whether this replica leads now (taking the lock when it is free)."""

    @property
    def held(self) -> bool:
        """The answer of the last `check()` (no query)."""

    def release(self) -> None:
        """Stop leading (at shutdown)."""


class AlwaysLeader:
    """SQLite: one daemon, always the leader."""

    held = True

    def check(self) -> bool:
        return True

    def release(self) -> None:
        return None


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL `postgresql+psycopg://...` as a libpq URI for `psycopg.connect`."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class AdvisoryLeader:
    """The holder of the advisory lock `LOCK_KEY` of the database at `url`."""

    def __init__(
        self,
        url: str,
        *,
        connect: Callable[..., Any] | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.url = url
        self._connect = connect
        self._conn: Any = None
        self._held = False
        self._lock = threading.Lock()
        self.on_change = on_change

    @property
    def held(self) -> bool:
        return self._held

    def _open(self) -> Any:
        connect = self._connect
        if connect is None:
            import psycopg

            connect = psycopg.connect
        return connect(
            libpq_url(self.url),
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="itsm-bridge leader",
            **KEEPALIVES,
        )

    def check(self) -> bool:
        """Take the lock if it is free, or confirm this session still holds it."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._held = False
                    self._conn = self._open()
                if self._held:
                    self._conn.execute("SELECT 1")  # the session, and so the lock, is alive
                    now = True
                else:
                    row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
                    now = bool(row.fetchone()[0])
            except Exception as exc:  # psycopg.Error, OSError: the database is away
                self._drop()
                if self._held:
                    log.warning(
                        "lost the poller lock (database: %s); pollers stop here",
                        database_reason(exc, self.url),
                    )
                now = False
            changed = now != self._held
            self._held = now
        if changed:
            if now:
                log.info("this replica holds the poller lock: it runs the pollers")
            if self.on_change is not None:
                self.on_change(now)
        return now

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                conn.close()

    def release(self) -> None:
        """Unlock, then close the session. (Closing alone frees the lock only once the
        server's backend has exited, which another replica's next try may beat.)"""
        with self._lock:
            if self._held and self._conn is not None and not self._conn.closed:
                with contextlib.suppress(Exception):  # the database is away: the lock with it
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            self._drop()
            self._held = False


def make_leader(url: str, on_change: Callable[[bool], None] | None = None) -> Leader:
    """An advisory-lock leader on PostgreSQL, else (SQLite) always the leader."""
    if make_url(url).get_backend_name() == "postgresql":
        return AdvisoryLeader(url, on_change=on_change)
    return AlwaysLeader()
