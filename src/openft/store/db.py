"""Engine and sessions, on SQLite (the default) or PostgreSQL (`OPENFT_DB_URL=postgresql+psycopg://…`).

SQLite runs in WAL mode so the server and workers read while one writes, and every transaction
takes the write lock at BEGIN. On PostgreSQL, code that reads a row and then writes it depending
on what it read locks the row (`with_for_update`, a no-op on SQLite, where BEGIN IMMEDIATE has
already serialized it). The schema comes from the Alembic migrations (`store/migrate.py`)."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from openft.settings import Settings
from openft.store.migrate import upgrade


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # First: switching a new database to WAL takes its lock too, and without a timeout a process
    # that finds another one migrating fails at once ("database is locked").
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_immediate(connection) -> None:
    # Take the write lock when a transaction starts, so read-then-write transactions (claiming a
    # job) never fail halfway with SQLITE_BUSY; busy_timeout makes the others wait instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    def __init__(self, settings: Settings):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = settings.database_url
        sqlite = url.startswith("sqlite")
        # pre_ping: a database server restarted under a long-running worker must not fail its
        # next transaction with a dead pooled connection.
        self.engine: Engine = create_engine(url, pool_pre_ping=not sqlite)
        if sqlite:
            # Let SQLAlchemy, not pysqlite, issue BEGIN (the documented recipe for SQLite locking).
            @event.listens_for(self.engine, "connect")
            def _connect(dbapi_connection, record):
                dbapi_connection.isolation_level = None
                _sqlite_pragmas(dbapi_connection, record)

            event.listen(self.engine, "begin", _begin_immediate)
        upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session
