"""What the daemon's worker asks the store: claiming due releases, the next due time, and the
wake-up signal that crosses replicas.

`claim_due` takes the leases of due releases in one transaction. On PostgreSQL the rows are
read `FOR UPDATE SKIP LOCKED`: replicas claiming at the same moment take different rows
instead of queueing behind each other, and a row another claim has locked is never read
(so never claimed twice). SQLite takes its write lock at `BEGIN IMMEDIATE`: claims are
serialised there.

`notify_wake` sends `NOTIFY itsm_bridge_wake` inside the transaction (PostgreSQL delivers it
at commit, and only if the transaction commits): every replica listening wakes its worker.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

import sqlalchemy as sa

from itsm_bridge.store import schema as t
from itsm_bridge.store.scheduling import ScheduleRows

WAKE_CHANNEL = "itsm_bridge_wake"


class ClaimRows(ScheduleRows):
    """Part of `Tx`: the worker's queries."""

    def _free(self, now: datetime) -> sa.ColumnElement[bool]:
        """A release nobody holds: no lease, or an expired one (database clock)."""
        c = t.releases.c
        return sa.or_(c.lease_owner.is_(None), c.lease_expires_at < now)

    def claim_due(
        self,
        now: datetime,
        owner: str,
        ttl: timedelta,
        limit: int,
        exclude: Collection[str] = (),
    ) -> list[str]:
        """Lease up to `limit` releases due at `now` (oldest due first) to `owner`; their ids.

        `exclude`: releases this process is still advancing (their lease may have expired
        while a step ran long; they must not be started twice here).
        """
        if limit <= 0:
            return []
        db_now = self.db_now()
        c = t.releases.c
        query = (
            sa.select(c.id)
            .where(c.next_run_at.is_not(None), c.next_run_at <= now, self._free(db_now))
            .order_by(c.next_run_at, c.id)
            .limit(limit)
        )
        if exclude:
            query = query.where(c.id.not_in(list(exclude)))
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(self.conn.execute(query).scalars())
        if not ids:
            return []
        self.conn.execute(
            t.releases.update()
            .where(c.id.in_(ids))
            .values(lease_owner=owner, lease_expires_at=db_now + ttl)
        )
        return ids

    def next_due_in(self, now: datetime, exclude: Collection[str] = ()) -> float | None:
        """Seconds until the worker has something to claim (<= 0: now); None: nothing is due.

        The earliest `next_run_at` of a free release, or the earliest expiry of a lease held
        on a release that has a next run (another owner may die: its release is taken over
        then). `exclude`: releases this process is advancing (it is woken when they finish).
        """
        db_now = self.db_now()
        c = t.releases.c
        scheduled = [c.next_run_at.is_not(None)]
        if exclude:
            scheduled.append(c.id.not_in(list(exclude)))
        due = self.conn.execute(
            sa.select(sa.func.min(c.next_run_at)).where(*scheduled, self._free(db_now))
        ).scalar_one_or_none()
        held = self.conn.execute(
            sa.select(sa.func.min(c.lease_expires_at)).where(
                *scheduled, c.lease_owner.is_not(None), c.lease_expires_at >= db_now
            )
        ).scalar_one_or_none()
        waits = []
        if due is not None:  # min() keeps the column's type: an aware UTC datetime
            waits.append((due - now).total_seconds())
        if held is not None:
            waits.append((held - db_now).total_seconds())
        return min(waits, default=None)

    def health(self, release_id: str) -> tuple[str, str, str, str]:
        """(state, attention, numbers of the failed steps joined by commas, failure reason)
        of a release; empty strings when there is none. Read around each advance, to tell
        what it broke: two narrow queries, nothing built."""
        c = t.releases.c
        row = self.conn.execute(
            sa.select(
                c.state, c.data["attention"].as_string(), c.data["failure_reason"].as_string()
            ).where(c.id == release_id)
        ).first()
        if row is None:
            return "", "", "", ""
        failed = self.conn.execute(
            sa.select(t.steps.c.number)
            .where(t.steps.c.release_id == release_id, t.steps.c.status == "failed")
            .order_by(t.steps.c.number)
        ).scalars()
        state, attention, failure = row
        return str(state), attention or "", ",".join(map(str, failed)), failure or ""

    def notify_wake(self) -> None:
        """Wake every listening replica when this transaction commits (PostgreSQL only)."""
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(sa.select(sa.func.pg_notify(WAKE_CHANNEL, "")))
