"""Part of `Tx`: when releases are due, and their row leases (on the database's clock)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from itsm_bridge.store import schema as t
from itsm_bridge.store.queues import QueueRows


class ScheduleRows(QueueRows):
    """The `next_run_at` and lease columns of `releases`."""

    def set_next_run(self, release_id: str, at: datetime | None) -> None:
        self.conn.execute(
            t.releases.update().where(t.releases.c.id == release_id).values(next_run_at=at)
        )

    def next_run(self, release_id: str) -> datetime | None:
        value: datetime | None = self.conn.execute(
            sa.select(t.releases.c.next_run_at).where(t.releases.c.id == release_id)
        ).scalar_one_or_none()
        return value

    def due_release_ids(self, now: datetime, limit: int = 100) -> list[str]:
        query = (
            sa.select(t.releases.c.id)
            .where(t.releases.c.next_run_at.is_not(None), t.releases.c.next_run_at <= now)
            .order_by(t.releases.c.next_run_at)
            .limit(limit)
        )
        return list(self.conn.execute(query).scalars())

    def lease_release(self, release_id: str, owner: str, ttl: timedelta) -> bool:
        """Take (or renew) the row lease of a release; False when another owner holds it.

        Times are the database's clock (`db_now`), so replicas with skewed clocks agree.
        """
        now = self.db_now()
        c = t.releases.c
        result = self.conn.execute(
            t.releases.update()
            .where(
                c.id == release_id,
                sa.or_(c.lease_owner.is_(None), c.lease_owner == owner, c.lease_expires_at < now),
            )
            .values(lease_owner=owner, lease_expires_at=now + ttl)
        )
        return result.rowcount == 1

    def renew_release_lease(self, release_id: str, owner: str, ttl: timedelta) -> bool:
        """Extend a lease this owner still holds; False once it expired or changed hands.

        Unlike `lease_release` it never takes an expired lease back: whoever lost a lease must
        not write again (another replica may have advanced the release meanwhile). Run in the
        transaction that commits a step, it is the fence that refuses a late commit.
        """
        now = self.db_now()
        c = t.releases.c
        result = self.conn.execute(
            t.releases.update()
            .where(c.id == release_id, c.lease_owner == owner, c.lease_expires_at > now)
            .values(lease_expires_at=now + ttl)
        )
        return result.rowcount == 1

    def drop_release_lease(self, release_id: str, owner: str) -> None:
        c = t.releases.c
        self.conn.execute(
            t.releases.update()
            .where(c.id == release_id, c.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )
