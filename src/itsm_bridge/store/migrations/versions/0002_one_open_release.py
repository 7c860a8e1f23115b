"""One open release per service and version, enforced by the database.

`release create` looks for an open release of the same service and version before it inserts;
on PostgreSQL two replicas could both look and both insert. A partial unique index (both
backends support `WHERE` on an index) makes the second insert fail instead.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OPEN = sa.text("state NOT IN ('closed', 'cancelled')")


def upgrade() -> None:
    op.create_index(
        "uq_releases_open_version",
        "releases",
        ["service", "version"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index("uq_releases_open_version", table_name="releases")
