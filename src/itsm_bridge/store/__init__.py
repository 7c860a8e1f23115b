"""Persistence: SQLAlchemy Core tables, Alembic migrations, SQLite (WAL) and PostgreSQL."""

from itsm_bridge.store.engine import Store, open_store
from itsm_bridge.store.repository import StepRow, Tx

__all__ = ["StepRow", "Store", "Tx", "open_store"]
