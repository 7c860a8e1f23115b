"""Row leases on releases: one owner advances a release at a time, and only while it holds it.

A lease is taken before a release is advanced and renewed, on the database's clock, by a
heartbeat while a plugin call runs. The heartbeat stops after `max_hold` (a hung call must not
keep a release forever), and stops for good once a renewal fails. Every commit of a step renews
the lease in its own transaction first (`Tx.renew_release_lease`): an owner whose lease expired
or changed hands cannot commit, so another replica's progress is never overwritten.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from itsm_bridge.store import Store

log = logging.getLogger(__name__)

MIN_BEAT_SECONDS = 0.05


class LeaseLost(Exception):
    """This owner no longer holds the release's lease: its outcome was not committed."""


@contextmanager
def heartbeat(
    store: Store, release_id: str, owner: str, ttl: timedelta, max_hold: timedelta
) -> Iterator[None]:
    """Renew the lease every third of `ttl` while the body runs, for at most `max_hold`."""
    stop = threading.Event()
    interval = max(ttl.total_seconds() / 3, MIN_BEAT_SECONDS)
    deadline = time.monotonic() + max_hold.total_seconds()

    def beat() -> None:
        while not stop.wait(interval):
            if time.monotonic() >= deadline:
                log.warning(
                    "release %s: a step ran longer than %s; its lease is no longer renewed",
                    release_id,
                    max_hold,
                )
                return
            try:
                with store.begin() as tx:
                    held = tx.renew_release_lease(release_id, owner, ttl)
            except Exception as exc:  # the database is away: the next beat tries again
                log.warning("release %s: lease renewal failed: %s", release_id, exc)
                continue
            if not held:
                return

    thread = threading.Thread(target=beat, name=f"lease-{release_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
