"""Row leases on releases: one owner advances a release at a time, and only while it holds it.

A lease is taken before a release is advanced and renewed, on the database's clock, by a
heartbeat while a plugin call runs. The heartbeat stops after `max_hold` (a hung call must not
keep a release forever), and stops for good once a renewal fails. Every commit of a step renews
the lease in its own transaction first (`Tx.renew_release_lease`): an owner whose lease expired
or changed hands cannot commit, so another replica's progress is never overwritten.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from itsm_bridge.store import Store

log = logging.getLogger(__name__)

MIN_BEAT_SECONDS = 0.05
IDLE_SECONDS = 30.0  # the heartbeat thread ends after this long with no lease to renew


class LeaseLost(Exception):
    """This owner no longer holds the release's lease: its outcome was not committed."""


@dataclass
class _Beat:
    """One lease a `heartbeat` keeps: renewed at `next_at` until `deadline` (monotonic)."""

    store: Store
    release_id: str
    owner: str
    ttl: timedelta
    interval: float
    next_at: float
    deadline: float
    max_hold: timedelta


class _Heartbeats:
    """One thread renews every lease the process' `heartbeat`s hold, each when it is due.

    A thread per plugin call would cost a thread start and join around every step and
    every delivery; this one starts with the first lease and ends after `IDLE_SECONDS`
    without any. A renewal that fails on the database is tried again at the next beat; one
    that finds the lease gone (or past `max_hold`) stops renewing that lease for good. A
    renewal that lands after its `heartbeat` ended is harmless: the owner's lease was then
    dropped or renewed by the commit, and renewing needs the same owner.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._beats: dict[int, _Beat] = {}
        self._numbers = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, beat: _Beat) -> int:
        with self._changed:
            number = next(self._numbers)
            self._beats[number] = beat
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-heartbeat")
                self._thread.daemon = True
                self._thread.start()
            self._changed.notify()
            return number

    def remove(self, number: int) -> None:
        with self._changed:
            self._beats.pop(number, None)

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._beats:
                    self._changed.wait(IDLE_SECONDS)
                    if not self._beats:
                        self._thread = None
                        return
                now = time.monotonic()
                due = [(n, b) for n, b in self._beats.items() if b.next_at <= now]
                if not due:
                    self._changed.wait(min(b.next_at for b in self._beats.values()) - now)
                    continue
                for _, beat in due:
                    beat.next_at = now + beat.interval
            for number, beat in due:
                if not _renew(beat):
                    self.remove(number)


def _renew(beat: _Beat) -> bool:
    """Renew one lease; False when it must not be renewed again."""
    if time.monotonic() >= beat.deadline:
        log.warning(
            "release %s: a step ran longer than %s; its lease is no longer renewed",
            beat.release_id,
            beat.max_hold,
        )
        return False
    try:
        with beat.store.begin() as tx:
            return tx.renew_release_lease(beat.release_id, beat.owner, beat.ttl)
    except Exception as exc:  # the database is away: the next beat tries again
        log.warning("release %s: lease renewal failed: %s", beat.release_id, exc)
        return True


_HEARTBEATS = _Heartbeats()


@contextmanager
def heartbeat(
    store: Store, release_id: str, owner: str, ttl: timedelta, max_hold: timedelta
) -> Iterator[None]:
    """Renew the lease every third of `ttl` while the body runs, for at most `max_hold`."""
    interval = max(ttl.total_seconds() / 3, MIN_BEAT_SECONDS)
    now = time.monotonic()
    beat = _Beat(
        store=store,
        release_id=release_id,
        owner=owner,
        ttl=ttl,
        interval=interval,
        next_at=now + interval,
        deadline=now + max_hold.total_seconds(),
        max_hold=max_hold,
    )
    number = _HEARTBEATS.add(beat)
    try:
        yield
    finally:
        _HEARTBEATS.remove(number)
