"""The rows that are not a release's: leases, the inbox of inbound events, poller cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from itsm_bridge.models import utcnow
from itsm_bridge.store import schema as t


class QueueRows:
    """Part of `Tx`: what several releases or replicas share."""

    conn: Connection

    def db_now(self) -> datetime:
        """Now by the database's clock (PostgreSQL), so that every replica reads one clock.

        SQLite is embedded: its clock is this host's, which every process on it shares.
        """
        if self.conn.dialect.name == "postgresql":
            value = self.conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
            return value.astimezone(UTC)
        return utcnow()

    def take_lease(self, name: str, owner: str, ttl: timedelta) -> bool:
        """A named lease (the pollers' leader lock); False when another owner holds it."""
        now = self.db_now()
        c = t.leases.c
        updated = self.conn.execute(
            t.leases.update()
            .where(c.name == name, sa.or_(c.owner == owner, c.expires_at < now))
            .values(owner=owner, expires_at=now + ttl)
        )
        if updated.rowcount == 1:
            return True
        return self._insert_new(t.leases, ["name"], name=name, owner=owner, expires_at=now + ttl)

    def _insert_new(self, table: sa.Table, keys: list[str], **values: Any) -> bool:
        """INSERT ... ON CONFLICT DO NOTHING: True when this call inserted the row.

        Safe under concurrency on both backends (no look-then-insert race).
        """
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=keys)
            .returning(table.c[keys[0]])
        )
        return self.conn.execute(statement).first() is not None

    # -- inbox ---------------------------------------------------------------------------
    def inbox_add(
        self,
        source: str,
        dedupe_key: str,
        kind: str,
        payload: dict[str, Any],
        release_id: str | None = None,
    ) -> bool:
        """Store an inbound event once; False when its dedupe key was seen before."""
        return self._insert_new(
            t.inbox,
            ["dedupe_key"],
            source=source,
            dedupe_key=dedupe_key,
            kind=kind,
            payload=payload,
            release_id=release_id,
            received_at=utcnow(),
        )

    def inbox_pending(
        self, limit: int = 100, *, kind: str | None = None, exclude_kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Events not yet processed, oldest first (of one kind, or of every other kind)."""
        c = t.inbox.c
        query = sa.select(t.inbox).where(c.processed_at.is_(None))
        if kind is not None:
            query = query.where(c.kind == kind)
        if exclude_kind is not None:
            query = query.where(c.kind != exclude_kind)
        rows = self.conn.execute(query.order_by(c.id).limit(limit)).mappings()
        return [dict(r) for r in rows]

    def inbox_done(self, inbox_id: int, release_id: str | None, outcome: str) -> None:
        self.conn.execute(
            t.inbox.update()
            .where(t.inbox.c.id == inbox_id)
            .values(processed_at=utcnow(), release_id=release_id, outcome=outcome[:2000])
        )

    # -- poller cursors ------------------------------------------------------------------
    def cursor(self, name: str) -> str | None:
        return self.conn.execute(
            sa.select(t.cursors.c.value).where(t.cursors.c.name == name)
        ).scalar_one_or_none()

    def set_cursor(self, name: str, value: str | None) -> None:
        now = utcnow()
        updated = self.conn.execute(
            t.cursors.update().where(t.cursors.c.name == name).values(value=value, updated_at=now)
        )
        if updated.rowcount == 0:
            self.conn.execute(t.cursors.insert().values(name=name, value=value, updated_at=now))
