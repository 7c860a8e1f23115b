"""Waking the workers of every replica (PostgreSQL `LISTEN`/`NOTIFY`).

A release created or woken, by any replica or by the CLI, is a `NOTIFY itsm_bridge_wake` sent
inside that transaction (`Tx.notify_wake`): PostgreSQL delivers it at commit to every session
listening on the channel. An inbox event is stored without one (the webhook path stays as
fast as a plain insert); the replica that stored it calls `Notifier.notify()`, which sends one
NOTIFY from a thread of its own for any number of calls since the last one (a burst of
webhooks is one notification).

`Listener` holds one dedicated connection (autocommit, `LISTEN`) and calls `on_wake` for each
notification (psycopg 3: `Connection.notifies()`; notifications that arrive between two calls
are kept in the connection's backlog, not lost). When the connection breaks it reconnects with
backoff, and wakes the worker once connected again: what was notified meanwhile is not lost
either, since the worker reads the database, not the notifications.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from itsm_bridge.daemon.leader import CONNECT_TIMEOUT, KEEPALIVES, libpq_url
from itsm_bridge.store import Store
from itsm_bridge.store.claims import WAKE_CHANNEL
from itsm_bridge.store.engine import database_reason

log = logging.getLogger(__name__)

WAIT_SECONDS = 5.0  # how long one `notifies()` call waits (then the stop flag is read)
MAX_BACKOFF = 30.0


class Listener:
    """`LISTEN itsm_bridge_wake` on its own connection; `on_wake()` per notification."""

    def __init__(
        self, url: str, on_wake: Callable[[], None], *, connect: Callable[..., Any] | None = None
    ) -> None:
        self.url = url
        self.on_wake = on_wake
        self._connect = connect
        self.stopping = threading.Event()
        self.listening = threading.Event()  # set while LISTEN is in effect (tests wait on it)
        self.backend_pid = 0  # the listening session's server process

    def _open(self) -> Any:
        connect = self._connect
        if connect is None:
            import psycopg

            connect = psycopg.connect
        return connect(
            libpq_url(self.url),
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="itsm-bridge listener",
            **KEEPALIVES,
        )

    def run(self) -> None:
        """Listen until `stop()`; reconnect with backoff (1 s doubling to 30 s) on failure."""
        failures = 0
        while not self.stopping.is_set():
            try:
                with self._open() as conn:
                    conn.execute(f"LISTEN {WAKE_CHANNEL}")
                    self.backend_pid = conn.info.backend_pid
                    self.listening.set()
                    if failures:
                        log.info("listening for wake-ups again")
                    failures = 0
                    self.on_wake()  # whatever happened while not listening
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=WAIT_SECONDS):
                            self.on_wake()
            except Exception as exc:  # psycopg.Error, OSError: the database is away
                self.listening.clear()
                if self.stopping.is_set():
                    return
                if not failures:
                    log.warning(
                        "not listening for wake-ups (database: %s); retrying",
                        database_reason(exc, self.url),
                    )
                failures += 1
                self.stopping.wait(min(2 ** (failures - 1), MAX_BACKOFF))
        self.listening.clear()

    def stop(self) -> None:
        self.stopping.set()


class Notifier:
    """Sends `NOTIFY itsm_bridge_wake` once for any number of `notify()` calls since the last."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending = threading.Event()
        self.stopping = threading.Event()
        self.sent = 0

    def notify(self) -> None:
        """Ask for one NOTIFY soon (never blocks, never raises)."""
        self._pending.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            self._pending.wait()
            self._pending.clear()
            if self.stopping.is_set():
                return
            try:
                with self.store.begin() as tx:
                    tx.notify_wake()
                self.sent += 1
            except Exception as exc:  # the database is away: the listeners reconnect later
                log.debug("NOTIFY not sent: %s", type(exc).__name__)
                self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()
        self._pending.set()
