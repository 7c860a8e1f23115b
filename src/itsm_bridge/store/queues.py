"""The rows that are not a release's: leases, the inbox of inbound events, poller cursors."""

from __future__ import annotations

import functools
from collections.abc import Collection
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
        event = {"source": source, "dedupe_key": dedupe_key, "kind": kind, "payload": payload}
        return bool(self.inbox_add_many([{**event, "release_id": release_id}]))

    def inbox_add_many(self, events: list[dict[str, Any]]) -> set[str]:
        """Store inbound events (dicts with `source`, `dedupe_key`, `kind`, `payload` and
        optionally `release_id`), each key once; returns the dedupe keys stored now (a key
        seen before, or twice among `events`, is stored once).

        One statement for them all: an `INSERT ... ON CONFLICT DO NOTHING RETURNING` that
        SQLAlchemy sends as multi-row VALUES ("insertmanyvalues"), so a batch of events costs
        about one row's round trip, not one each.
        """
        if not events:
            return set()
        now = utcnow()
        rows = [
            {
                "source": e["source"],
                "dedupe_key": e["dedupe_key"],
                "kind": e["kind"],
                "payload": e["payload"],
                "release_id": e.get("release_id"),
                "received_at": now,
            }
            for e in events
        ]
        result = self.conn.execute(_inbox_insert(self.conn.dialect.name), rows)
        return {str(key) for key in result.scalars()}

    def inbox_pending(
        self,
        limit: int = 100,
        *,
        kind: str | None = None,
        exclude_kind: str | None = None,
        payloads: bool = True,
    ) -> list[dict[str, Any]]:
        """Events not yet processed, oldest first (of one kind, or of every other kind);
        without `payloads`, every column but the payload (see `inbox_payloads`)."""
        c = t.inbox.c
        columns = list(t.inbox.c) if payloads else [col for col in c if col.name != "payload"]
        query = sa.select(*columns).where(c.processed_at.is_(None))
        if kind is not None:
            query = query.where(c.kind == kind)
        if exclude_kind is not None:
            query = query.where(c.kind != exclude_kind)
        rows = self.conn.execute(query.order_by(c.id).limit(limit)).mappings()
        return [dict(r) for r in rows]

    def inbox_payloads(self, ids: Collection[int]) -> dict[int, Any]:
        """The payloads of the events `ids`, by id."""
        if not ids:
            return {}
        c = t.inbox.c
        rows = self.conn.execute(sa.select(c.id, c.payload).where(c.id.in_(list(ids))))
        return {int(row.id): row.payload for row in rows}

    def inbox_done(self, inbox_id: int, release_id: str | None, outcome: str) -> None:
        self.inbox_done_many([(inbox_id, release_id, outcome)])

    def inbox_done_many(self, done: list[tuple[int, str | None, str]]) -> None:
        """Mark events processed: `(inbox id, release id, outcome)` each; one statement per
        distinct (release id, outcome), which is one for a batch that woke the same
        releases."""
        groups: dict[tuple[str | None, str], list[int]] = {}
        for inbox_id, release_id, outcome in done:
            groups.setdefault((release_id, outcome[:2000]), []).append(inbox_id)
        now = utcnow()
        for (release_id, outcome), ids in groups.items():
            self.conn.execute(
                t.inbox.update()
                .where(t.inbox.c.id.in_(ids))
                .values(processed_at=now, release_id=release_id, outcome=outcome)
            )

    def known_release_ids(self, ids: Collection[str]) -> set[str]:
        """Which of `ids` are releases (for the inbox: an event may name an unknown one)."""
        if not ids:
            return set()
        c = t.releases.c
        rows = self.conn.execute(sa.select(c.id).where(c.id.in_(list(ids))))
        return {str(rid) for rid in rows.scalars()}

    def release_ids_in(self, states: Collection[str]) -> list[str]:
        """The ids of the releases in any of `states`, oldest first (`releases_in` without
        reading the releases)."""
        c = t.releases.c
        query = sa.select(c.id).where(c.state.in_([str(s) for s in states]))
        return [str(rid) for rid in self.conn.execute(query.order_by(c.created_at)).scalars()]

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


@functools.cache
def _inbox_insert(dialect: str) -> sa.Insert:
    """The inbox's insert-once statement for a dialect, built once (building one per call
    costs more than executing it)."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = (postgresql if dialect == "postgresql" else sqlite).insert(t.inbox)
    return insert.on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(
        t.inbox.c.dedupe_key
    )
