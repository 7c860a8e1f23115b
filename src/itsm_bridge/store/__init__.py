"""Persistence: SQLAlchemy Core tables, Alembic migrations, SQLite (WAL) and PostgreSQL."""

from itsm_bridge.store.repository import StepRow, Store, Tx, open_store

__all__ = ["StepRow", "Store", "Tx", "open_store"]
