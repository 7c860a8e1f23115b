"""Part of `Tx`: a release's external records and its audit trail (append-only)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from itsm_bridge.models import Event, ExternalRecord
from itsm_bridge.store import schema as t
from itsm_bridge.store.queues import QueueRows


class AuditRows(QueueRows):
    """The `records` and `events` tables."""

    # -- external records ----------------------------------------------------------------
    def records(self, release_id: str) -> list[ExternalRecord]:
        rows = self.conn.execute(
            sa.select(t.records)
            .where(t.records.c.release_id == release_id)
            .order_by(t.records.c.id)
        ).mappings()
        return [
            ExternalRecord(
                system=r["system"],
                kind=r["kind"],
                id=r["external_id"],
                number=r["number"],
                url=r["url"],
                key=r["key"] or None,
            )
            for r in rows
        ]

    def add_record(self, release_id: str, record: ExternalRecord) -> bool:
        """Remember an external record once; False when it was already known."""
        return self._insert_new(
            t.records,
            ["release_id", "system", "kind", "key", "external_id"],
            release_id=release_id,
            system=record.system,
            kind=record.kind,
            key=record.key or "",
            external_id=record.id,
            number=record.number,
            url=record.url,
        )

    # -- audit trail ---------------------------------------------------------------------
    def add_event(self, release_id: str, event: Event) -> None:
        self.conn.execute(
            t.events.insert().values(
                release_id=release_id,
                at=event.at,
                actor=event.actor,
                kind=event.kind,
                message=event.message,
                evidence=event.evidence,
            )
        )

    def events(self, release_id: str, limit: int | None = None) -> list[Event]:
        """The audit trail, oldest first (the newest `limit` when given)."""
        query = sa.select(t.events).where(t.events.c.release_id == release_id)
        if limit:
            query = query.order_by(t.events.c.id.desc()).limit(limit)
        else:
            query = query.order_by(t.events.c.id)
        rows = list(self.conn.execute(query).mappings())
        if limit:
            rows.reverse()
        return [_event_from_row(r) for r in rows]

    def events_after(self, release_id: str, after_id: int) -> list[tuple[int, Event]]:
        """Events with an id above `after_id` (the outbox of `release_changed`)."""
        rows = self.conn.execute(
            sa.select(t.events)
            .where(t.events.c.release_id == release_id, t.events.c.id > after_id)
            .order_by(t.events.c.id)
        ).mappings()
        return [(r["id"], _event_from_row(r)) for r in rows]

    def count_events(self, release_id: str) -> int:
        return int(
            self.conn.execute(
                sa.select(sa.func.count()).where(t.events.c.release_id == release_id)
            ).scalar_one()
        )


def _event_from_row(row: Any) -> Event:
    return Event(
        at=row["at"],
        actor=row["actor"],
        kind=row["kind"],
        message=row["message"],
        evidence=row["evidence"] or {},
    )
