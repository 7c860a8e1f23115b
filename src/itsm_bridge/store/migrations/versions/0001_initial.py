"""The initial store: releases, steps, tasks, records, events, inbox, cursors, leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from itsm_bridge.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "releases",
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
    )
    op.create_index("ix_releases_state", "releases", ["state"])
    op.create_index("ix_releases_next_run_at", "releases", ["next_run_at"])
    op.create_index("ix_releases_service_version", "releases", ["service", "version"])
    op.create_table(
        "steps",
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
    op.create_table(
        "tasks",
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
    op.create_table(
        "records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("release_id", sa.String(64), sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("system", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("key", sa.String(200), nullable=False, server_default=""),
        sa.Column("external_id", sa.String(500), nullable=False),
        sa.Column("number", sa.String(200)),
        sa.Column("url", sa.Text),
        sa.UniqueConstraint(
            "release_id", "system", "kind", "key", "external_id", name="uq_records"
        ),
    )
    op.create_table(
        "events",
        sa.Column("id", BIGINT, primary_key=True),
        sa.Column("release_id", sa.String(64), sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
    )
    op.create_index("ix_events_release_id_id", "events", ["release_id", "id"])
    op.create_table(
        "inbox",
        sa.Column("id", BIGINT, primary_key=True),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("dedupe_key", sa.String(500), nullable=False, unique=True),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("processed_at", UTCDateTime),
        sa.Column("release_id", sa.String(64)),
        sa.Column("outcome", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_inbox_unprocessed", "inbox", ["processed_at", "id"])
    op.create_table(
        "cursors",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("leases", "cursors", "inbox", "events", "records", "tasks", "steps", "releases"):
        op.drop_table(table)
