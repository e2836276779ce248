"""Engine and sessions. SQLite runs in WAL mode so the server and workers read while one writes."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from openft.settings import Settings
from openft.store.tables import Base


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
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
        self.engine: Engine = create_engine(url)
        if url.startswith("sqlite"):
            # Let SQLAlchemy, not pysqlite, issue BEGIN (the documented recipe for SQLite locking).
            @event.listens_for(self.engine, "connect")
            def _connect(dbapi_connection, record):
                dbapi_connection.isolation_level = None
                _sqlite_pragmas(dbapi_connection, record)

            event.listen(self.engine, "begin", _begin_immediate)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session
