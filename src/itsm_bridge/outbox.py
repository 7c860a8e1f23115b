"""The outbox of `release_changed`: every event of a release reaches the plugins, in order.

Events are rows of the audit trail; the release's core data keeps the id of the last event
delivered. Delivery is at least once: a crash between the call and that mark delivers again.

A failed delivery is retried later, never in a tight loop: the attempt count and the time of
the next attempt are persisted with the release (`delivery_attempts`, `delivery_retry_at`),
with exponential backoff. A passing fault (timeout, 5xx) is retried without limit. A fault
only a person can fix (`NeedsHuman`: a rotated password, a 401) holds delivery and marks the
release as needing attention (`attention`, shown by `release show`) until a later attempt
succeeds; nothing is given up. Any other error is given up after `DELIVERY_ATTEMPTS` spaced
attempts with a `sync_failed` audit event, so one bad event cannot hold back every later one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.models import ACTOR, Event
from itsm_bridge.plugins import PluginHost
from itsm_bridge.store import Store, Tx

log = logging.getLogger(__name__)

DELIVERY_ATTEMPTS = 5
FIRST_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=1)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min ... capped at one hour, after the `attempts`-th failure."""
    return min(FIRST_DELAY * 2 ** max(attempts - 1, 0), MAX_DELAY)


def retry_at(core: dict[str, Any]) -> datetime | None:
    """When the held delivery of a release is due again (None: not held)."""
    value = core.get("delivery_retry_at")
    return datetime.fromisoformat(value) if value else None


class Outbox:
    def __init__(
        self,
        store: Store,
        host: PluginHost,
        clock: Callable[[], datetime],
        transient: tuple[type[BaseException], ...],
        fence: Callable[[Tx, str], None],
    ) -> None:
        self.store = store
        self.host = host
        self.clock = clock
        self.transient = transient
        self.fence = fence  # raises LeaseLost unless the caller still holds the release

    def deliver(self, release_id: str, *, force: bool = False) -> None:
        """Deliver the release's pending events, unless a held delivery is not due yet."""
        with self.store.read() as tx:
            core = tx.core_data(release_id)
            pending = tx.events_after(release_id, int(core.get("delivered_event_id", 0)))
            release = tx.release(release_id) if pending else None
        due = retry_at(core)
        if not pending or release is None or (due and due > self.clock() and not force):
            return
        attempts = int(core.get("delivery_attempts", 0))
        for event_id, event in pending:
            try:
                self.host.hook.release_changed(release=release, event=event)
            except Exception as exc:
                attempts += 1
                if self._hold(release_id, event_id, event, exc, attempts):
                    return
            self._mark(release_id, event_id)
            attempts = 0

    def _hold(
        self, release_id: str, event_id: int, event: Event, exc: Exception, attempts: int
    ) -> bool:
        """Persist a failed attempt; False when the event is given up (delivery goes on)."""
        needs_human = isinstance(exc, NeedsHuman)
        if needs_human or isinstance(exc, self.transient) or attempts < DELIVERY_ATTEMPTS:
            when = self.clock() + backoff(attempts)
            log.warning(
                "release %s: release_changed failed (attempt %d), next at %s: %s",
                release_id,
                attempts,
                when.isoformat(timespec="seconds"),
                exc,
            )
            values: dict[str, Any] = {
                "delivery_attempts": attempts,
                "delivery_retry_at": when.isoformat(),
            }
            if needs_human:
                values["attention"] = f"plugins cannot be told about the release: {exc}"
            with self.store.begin() as tx:
                self.fence(tx, release_id)
                tx.set_core_data(release_id, **values)
            return True
        with self.store.begin() as tx:
            self.fence(tx, release_id)
            tx.add_event(
                release_id,
                Event(
                    at=self.clock(),
                    actor=ACTOR,
                    kind="sync_failed",
                    message=f"gave up telling plugins about event {event_id} "
                    f"after {attempts} attempts: {exc}",
                    evidence={"event": event.message},
                ),
            )
        return False

    def _mark(self, release_id: str, event_id: int) -> None:
        with self.store.begin() as tx:
            self.fence(tx, release_id)
            tx.set_core_data(
                release_id,
                delivered_event_id=event_id,
                delivery_attempts=0,
                delivery_retry_at=None,
                attention=None,
            )
