"""Schema migrations (Alembic), run by every process that opens the store.

`upgrade` holds a lock while it migrates (PostgreSQL: a transaction-scoped advisory lock; SQLite:
the write lock that BEGIN IMMEDIATE takes), so N workers starting at once migrate once and the
others find the schema at head. A database that `create_all` made before migrations existed
(tables, no `alembic_version`) is stamped with the baseline first, then upgraded.

A schema change is a new module in `migrations/versions/`; draft one from the tables with

    python -m openft.store.migrate "add evals table"

which autogenerates `NNNN_add_evals_table.py` against a scratch SQLite database at head.
"""

import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
# Any constant that every openft process shares: the key of the PostgreSQL advisory lock.
_ADVISORY_LOCK = 0x6F70656E6674


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision`, in one transaction, under the migration lock."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
        config = alembic_config(connection)
        tables = set(inspect(connection).get_table_names())
        if "jobs" in tables and "alembic_version" not in tables:
            command.stamp(config, BASELINE)
        command.upgrade(config, revision)


def new_revision(message: str) -> Path:
    """Autogenerate the next numbered migration from the difference between the tables in
    `store/tables.py` and the schema at head; review it before committing."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    rev_id = f"{int(head) + 1:04d}"
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{scratch}/scratch.db")
        upgrade(engine)
        with engine.begin() as connection:
            script = command.revision(alembic_config(connection), message=message, autogenerate=True, rev_id=rev_id)
        engine.dispose()
    return Path(script.path)


if __name__ == "__main__":
    print(new_revision(" ".join(sys.argv[1:]) or "schema change"))
