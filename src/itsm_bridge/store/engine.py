"""Opening the database: SQLite (WAL) or PostgreSQL, and its schema migrations.

A database that cannot be opened or created is an `OperationFailed` whose message is one line:
where (the SQLite file's absolute path, or the URL with its password masked), the reason and
the fix. A relative SQLite path (`sqlite:///var/bridge.db`) is relative to the working
directory of the process.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from itsm_bridge.errors import ConfigError, OperationFailed
from itsm_bridge.store import schema as t
from itsm_bridge.store.repository import Tx

# How long a SQLite writer waits for the write lock before "database is locked".
BUSY_SECONDS = 30
READ_ONLY = "itsm_bridge_read_only"  # execution option of `Store.read` connections


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(
            "database: not a database URL; use sqlite:///path/bridge.db or "
            "postgresql+psycopg://user@host/db"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            directory = Path(parsed.database.removeprefix("file:")).parent  # URI filenames too
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                reason = f"cannot create the directory {directory.absolute()}: {exc.strerror}"
                raise OperationFailed(cannot_open(url, reason)) from exc
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_SECONDS})

        # The recipe from SQLAlchemy's SQLite notes: stop pysqlite from deferring BEGIN, and
        # take the write lock up front so two processes never deadlock on lock upgrades.
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError("database: only sqlite and postgresql+psycopg URLs are supported")
    try:
        return sa.create_engine(url, pool_pre_ping=True)
    except ImportError as exc:
        raise OperationFailed(
            cannot_open(url, f"its driver is not installed ({exc.name or exc})")
            + " (pip install 'psycopg[binary]')"
        ) from None


def database_location(url: str) -> str:
    """Where a database URL points: a SQLite file's absolute path, else the URL, no password."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(str(parsed.database).removeprefix("file:"))  # also a URI filename
        relative = "" if path.is_absolute() else " (relative to the working directory)"
        return f"{path.absolute()}{relative}"
    return parsed.render_as_string(hide_password=True)


def database_reason(exc: BaseException, url: str | None = None) -> str:
    """The driver's own reason for a database error: its first line, never the password."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    password = None
    if url:
        try:
            password = make_url(url).password
        except sa.exc.ArgumentError:
            password = None
    return text.replace(str(password), "***") if password else text


def cannot_open(url: str, reason: str, verb: str = "open") -> str:
    """The one-line message for a database that cannot be opened (or written), with the fix."""
    if make_url(url).get_backend_name() == "sqlite":
        fix = (
            "check that the directory exists and this user may write there, or set `database` "
            "in the configuration"
        )
    else:
        fix = "check that the server runs and the URL, user and password are right"
    return f"cannot {verb} database {database_location(url)}: {reason}; {fix}"


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("itsm_bridge.store") / "migrations")
    )
    config.attributes["connection"] = connection
    return config


class Store:
    """The bridge's database (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        # SQLite has one writer, and every transaction here takes its lock (BEGIN
        # IMMEDIATE). The threads of this process queue for it on a lock of their own, which
        # hands it over as soon as it is free; SQLite's busy handler, which the other
        # processes (the CLI) still meet, polls with sleeps growing to 100 ms, so that a
        # webhook waiting behind the worker's transaction would wait for the next poll.
        self._writer = threading.RLock() if self.dialect == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self) -> None:
        """Apply every pending migration (idempotent; a no-op without Alembic when current)."""
        if self.current_revision() == t.SCHEMA_REVISION:
            return
        from alembic import command

        with self.engine.begin() as connection:
            command.upgrade(_alembic_config(connection), "head")

    def current_revision(self) -> str | None:
        """The schema revision recorded in the database (None for an empty database)."""
        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def head_revision(self) -> str | None:
        """The newest revision among the migration scripts."""
        from alembic.script import ScriptDirectory

        with self.engine.connect() as connection:
            return ScriptDirectory.from_config(_alembic_config(connection)).get_current_head()

    @contextmanager
    def begin(self) -> Iterator[Tx]:
        """A transaction: everything done through the `Tx` commits together, or nothing."""
        if self._writer is None:
            with self.engine.begin() as connection:
                yield Tx(connection)
            return
        if not self._writer.acquire(timeout=BUSY_SECONDS):
            raise sa.exc.OperationalError(
                "BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked")
            )
        try:
            with self.engine.begin() as connection:
                yield Tx(connection)
        finally:
            self._writer.release()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only transaction: one consistent snapshot, for reading only. On SQLite it
        takes no write lock (a deferred BEGIN: in WAL mode readers neither wait for the
        writer nor hold it up), so reading never delays a commit."""
        with self.engine.connect() as connection:
            connection.execution_options(**{READ_ONLY: True})
            with connection.begin():
                yield Tx(connection)

    def close(self) -> None:
        self.engine.dispose()

    def check_writable(self, marker: str, value: str) -> None:
        """One small write (the cursor `marker`); `OperationFailed` (where, why, the fix) when
        the database refuses it, e.g. a read-only file."""
        try:
            with self.begin() as tx:
                tx.set_cursor(marker, value)
        except sa.exc.SQLAlchemyError as exc:
            reason = database_reason(exc, self.url)
            raise OperationFailed(cannot_open(self.url, reason, verb="write to")) from exc


def open_store(url: str, *, upgrade: bool = True) -> Store:
    """Open the database and bring its schema up to date.

    Raises `OperationFailed` (one line: where, why, the fix) when it cannot be opened, created
    or migrated, and `ConfigError` when the URL is not a supported database URL.
    """
    store = Store(url)
    try:
        with store.engine.connect():
            pass
        if upgrade:
            store.upgrade()
    except sa.exc.SQLAlchemyError as exc:
        store.close()
        raise OperationFailed(cannot_open(url, database_reason(exc, url))) from exc
    return store
