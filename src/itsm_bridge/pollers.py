"""Pollers that plugins contribute (`register_pollers`): each polls its system from a cursor.

`run_pollers` runs each once (what `sync --once` does; the daemon runs them on their own
intervals). The events a poll returns and its next cursor are stored in one transaction: a
poll that raises, or a store that fails, leaves the old cursor, so the next poll asks again
for what this one would have returned. Events are deduplicated by their keys in the inbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsm_bridge.errors import ConfigError
from itsm_bridge.plugins import PluginHost
from itsm_bridge.store import Store

log = logging.getLogger(__name__)

Poll = Callable[[str | None], tuple[list[dict[str, Any]], str | None]]
CURSOR_PREFIX = "poller."


@dataclass(frozen=True)
class Poller:
    name: str
    interval_seconds: float
    poll: Poll


def registered_pollers(host: PluginHost) -> list[Poller]:
    """Every poller the plugins register, in registration order (names are unique)."""
    pollers: dict[str, Poller] = {}

    def register(name: str, interval_seconds: float, poll: Poll) -> None:
        if name in pollers:
            raise ConfigError(f"two plugins register a poller named {name!r}")
        pollers[name] = Poller(name, float(interval_seconds), poll)

    host.hook.register_pollers(register=register)
    return list(pollers.values())


def run_poller(store: Store, poller: Poller) -> tuple[int, int]:
    """Poll once from the stored cursor; store the events and the new cursor together.

    Returns (events returned, events new). Raises what the poll raised (the cursor stays).
    """
    name = CURSOR_PREFIX + poller.name
    with store.read() as tx:
        cursor = tx.cursor(name)
    events, next_cursor = poller.poll(cursor)
    with store.begin() as tx:  # one statement for the events, whatever their number
        stored = len(tx.inbox_add_many(events))
        tx.set_cursor(name, next_cursor)
    return len(events), stored


def run_pollers(store: Store, host: PluginHost) -> list[str]:
    """Run every registered poller once; one line per poller that failed (cursor kept)."""
    failures = []
    for poller in registered_pollers(host):
        try:
            seen, new = run_poller(store, poller)
        except Exception as exc:
            log.warning("poller %s failed, its cursor stays: %s", poller.name, exc)
            failures.append(f"poller {poller.name} failed: {type(exc).__name__}: {exc}")
            continue
        log.info("poller %s: %d event(s), %d new", poller.name, seen, new)
    return failures
