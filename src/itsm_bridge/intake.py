"""Steps 1-2 as a poller: demands and problems become backlog items.

Durable first: each work item is stored in the inbox (deduplicated by its source key) before
anything is created from it; then each stored item is taken into the backlog once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsm_bridge.models import WorkItem, utcnow
from itsm_bridge.plugins import PluginHost
from itsm_bridge.store import Store

log = logging.getLogger(__name__)

CURSOR = "intake.work_items"
OVERLAP = timedelta(minutes=5)


@dataclass
class IntakeResult:
    collected: int = 0
    created: int = 0
    failed: int = 0


def run_intake(store: Store, host: PluginHost) -> IntakeResult:
    """One intake cycle: collect since the cursor (with overlap), store, take into the backlog."""
    result = IntakeResult()
    with store.begin() as tx:
        cursor = tx.cursor(CURSOR)
    since = datetime.fromisoformat(cursor) - OVERLAP if cursor else None
    started = utcnow()
    try:
        answers = host.hook.collect_work_items(since=since)
    except Exception:
        log.exception("intake: collect_work_items failed")
        answers = []
    items = [item for answer in answers for item in answer]
    result.collected = len(items)
    with store.begin() as tx:
        for item in items:
            tx.inbox_add(
                "intake", f"intake:{item.source_key}", "work_item", item.model_dump(mode="json")
            )
        tx.set_cursor(CURSOR, started.isoformat())
        pending = [row for row in tx.inbox_pending(limit=500) if row["kind"] == "work_item"]
    for row in pending:
        item = WorkItem(**row["payload"])
        try:
            backlog = host.hook.add_to_backlog(item=item)
            if backlog is None:
                outcome = "no backlog plugin enabled"
            else:
                host.hook.work_item_added(item=item, backlog_item=backlog)
                outcome = f"backlog item {backlog.key}"
                result.created += 1
        except Exception as exc:
            log.warning("intake: %s not taken into the backlog yet: %s", item.source_key, exc)
            result.failed += 1
            continue
        with store.begin() as tx:
            tx.inbox_done(row["id"], None, outcome)
    return result
