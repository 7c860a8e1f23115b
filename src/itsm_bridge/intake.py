"""Steps 1-2 as a poller: demands and problems become backlog items.

Durable first: each work item is stored in the inbox (deduplicated by its source key) before
anything is created from it; then each stored item is taken into the backlog once. Each intake
plugin has its own cursor, moved only when that plugin answered: a source that fails keeps its
cursor (and counts as a failure of the cycle), so nothing it would have returned is lost.
Without a backlog plugin the stored items stay pending, and are taken once one is enabled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from itsm_bridge.models import WorkItem, utcnow
from itsm_bridge.plugins import PluginHost
from itsm_bridge.store import Store

log = logging.getLogger(__name__)

CURSOR = "intake.work_items"  # + ".<plugin>"; the bare name is the cursor of releases <= 0.1
OVERLAP = timedelta(minutes=5)
BATCH = 500


@dataclass
class IntakeResult:
    collected: int = 0
    created: int = 0
    waiting: int = 0  # stored, but no backlog plugin takes them yet
    errors: list[str] = field(default_factory=list)  # one line per failure of the cycle

    @property
    def failed(self) -> int:
        return len(self.errors)


def run_intake(store: Store, host: PluginHost) -> IntakeResult:
    """One intake cycle: collect from each source since its cursor, store, take into the backlog."""
    result = IntakeResult()
    for plugin in host.implementers("collect_work_items"):
        collect(store, host, plugin, result)
    with store.begin() as tx:
        pending = tx.inbox_pending(limit=BATCH, kind="work_item")
    if not host.implementers("add_to_backlog"):
        result.waiting = len(pending)
        return result
    for row in pending:
        take_into_backlog(store, host, row, result)
    return result


def collect(store: Store, host: PluginHost, plugin: str, result: IntakeResult) -> None:
    """Store what one source returns since its cursor; the cursor moves only on success."""
    name = f"{CURSOR}.{plugin}"
    with store.begin() as tx:
        cursor = tx.cursor(name) or tx.cursor(CURSOR)
    since = datetime.fromisoformat(cursor) - OVERLAP if cursor else None
    started = utcnow()
    try:
        answers = host.call_one("collect_work_items", plugin, since=since)
    except Exception as exc:
        log.info("intake: %s failed, its cursor stays: %s", plugin, exc)  # in result.errors
        result.errors.append(f"intake from {plugin} failed: {type(exc).__name__}: {exc}")
        return
    items = [item for answer in answers for item in answer]
    result.collected += len(items)
    with store.begin() as tx:
        for item in items:
            tx.inbox_add(
                "intake", f"intake:{item.source_key}", "work_item", item.model_dump(mode="json")
            )
        tx.set_cursor(name, started.isoformat())


def take_into_backlog(
    store: Store, host: PluginHost, row: dict[str, object], result: IntakeResult
) -> None:
    """Create (or find) the backlog item of one stored work item; it stays pending on failure."""
    item = WorkItem.model_validate(row["payload"])
    try:
        backlog = host.hook.add_to_backlog(item=item)
        if backlog is None:
            result.waiting += 1
            return
        host.hook.work_item_added(item=item, backlog_item=backlog)
    except Exception as exc:
        log.info("intake: %s not taken into the backlog yet: %s", item.source_key, exc)
        result.errors.append(f"backlog item for {item.source_key} not created: {exc}")
        return
    result.created += 1
    with store.begin() as tx:
        tx.inbox_done(int(str(row["id"])), None, f"backlog item {backlog.key}")
