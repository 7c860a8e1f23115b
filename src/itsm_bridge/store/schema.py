"""The tables of the store (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Alembic migrations under `migrations/` create exactly these; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData()

# The newest Alembic revision: when the database is at it, opening the store skips Alembic.
SCHEMA_REVISION = "0002"
OPEN_RELEASE = sa.text("state NOT IN ('closed', 'cancelled')")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite has no time zones)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


releases = sa.Table(
    "releases",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("service", sa.String(200), nullable=False),
    sa.Column("version", sa.String(200), nullable=False),
    sa.Column("name", sa.String(500), nullable=False, server_default=""),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("major", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("state", sa.String(30), nullable=False),
    sa.Column("not_before", UTCDateTime),
    sa.Column("duration_seconds", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("window_start", UTCDateTime),
    sa.Column("window_end", UTCDateTime),
    sa.Column("deploy_started_at", UTCDateTime),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("next_run_at", UTCDateTime),
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_expires_at", UTCDateTime),
    sa.Index("ix_releases_state", "state"),
    sa.Index("ix_releases_next_run_at", "next_run_at"),
    sa.Index("ix_releases_service_version", "service", "version"),
    # one open release per service and version (migration 0002)
    sa.Index(
        "uq_releases_open_version",
        "service",
        "version",
        unique=True,
        sqlite_where=OPEN_RELEASE,
        postgresql_where=OPEN_RELEASE,
    ),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("release_id", sa.String(64), sa.ForeignKey("releases.id"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("state", sa.JSON, nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("release_id", sa.String(64), sa.ForeignKey("releases.id"), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("record", sa.JSON),
    sa.Column("job", sa.JSON),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("release_id", sa.String(64), sa.ForeignKey("releases.id"), nullable=False),
    sa.Column("system", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(100), nullable=False),
    sa.Column("key", sa.String(200), nullable=False, server_default=""),
    sa.Column("external_id", sa.String(500), nullable=False),
    sa.Column("number", sa.String(200)),
    sa.Column("url", sa.Text),
    sa.UniqueConstraint("release_id", "system", "kind", "key", "external_id", name="uq_records"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("release_id", sa.String(64), sa.ForeignKey("releases.id"), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Index("ix_events_release_id_id", "release_id", "id"),
)

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("dedupe_key", sa.String(500), nullable=False, unique=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("processed_at", UTCDateTime),
    sa.Column("release_id", sa.String(64)),
    sa.Column("outcome", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_inbox_unprocessed", "processed_at", "id"),
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)
