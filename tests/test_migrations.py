"""The schema comes from Alembic migrations, on SQLite and PostgreSQL alike: an empty database is
brought to head, the migrations match the tables in `store/tables.py` exactly (what `alembic
check` checks), processes that start together migrate once, and a database that `create_all`
made before migrations existed is adopted, rows and all."""

import os
import subprocess
import sys
import time

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text

from openft.settings import Settings
from openft.store.db import Database
from openft.store.migrate import BASELINE, alembic_config, upgrade
from openft.store.tables import Base, FileRow

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def version(engine) -> str:
    with engine.connect() as connection:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


def test_an_empty_database_is_migrated_to_head(db_url, tmp_path):
    db = Database(Settings(data_dir=tmp_path / "data", db_url=db_url))
    assert version(db.engine) == HEAD
    assert set(inspect(db.engine).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
    with db.session() as session:
        session.add(
            FileRow(
                id="file-1",
                organization_id="org",
                bytes=3 * 2**30,
                created_at=1,
                filename="f",
                purpose="assistants",
                status="processed",
                location="files/file-1",
            )
        )
    with db.session() as session:
        assert session.scalar(select(FileRow.bytes)) == 3 * 2**30  # over int4: files.bytes is a bigint


def test_the_migrations_match_the_tables(db_url):
    engine = create_engine(db_url)
    upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_the_files_path_column_becomes_location_with_its_values(db_url):
    engine = create_engine(db_url)
    upgrade(engine, "0002")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO files (id, organization_id, bytes, created_at, filename, purpose, status, path) "
                "VALUES ('file-1', 'org', 1, 1, 'f', 'fine-tune', 'processed', 's3://bucket/files/file-1')"
            )
        )
    upgrade(engine, "0003")
    with engine.connect() as connection:
        assert connection.execute(select(FileRow.location)).scalar_one() == "s3://bucket/files/file-1"
    engine.dispose()


def test_processes_starting_together_migrate_once(db_url, tmp_path):
    # Processes, not threads: Alembic's `op`/`context` are process-wide proxies. Each imports
    # first, then waits for the starting signal, so their migrations really overlap.
    go = tmp_path / "go"
    opens = (
        "import os, time; from openft.settings import Settings; from openft.store.db import Database\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
        "Database(Settings())"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", opens],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "OPENFT_DB_URL": db_url, "OPENFT_DATA_DIR": str(tmp_path / f"d{i}")},
        )
        for i in range(4)
    ]
    time.sleep(3)
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in processes if p.wait(timeout=120) != 0]
    assert errors == []
    engine = create_engine(db_url)
    assert version(engine) == HEAD
    engine.dispose()


def test_a_database_made_by_create_all_is_stamped_and_kept(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    upgrade(old, BASELINE)  # the schema create_all made before migrations existed…
    with old.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))  # …which had no version table
        connection.execute(  # the baseline's columns, not today's tables
            text(
                "INSERT INTO files (id, organization_id, bytes, created_at, filename, purpose, status, path) "
                "VALUES ('file-old', 'org', 1, 1, 'f', 'assistants', 'processed', 'files/file-old')"
            )
        )
    old.dispose()

    db = Database(Settings(data_dir=tmp_path / "data", db_url=url))
    assert version(db.engine) == HEAD
    with db.session() as session:
        assert session.execute(select(FileRow.id, FileRow.location)).one() == ("file-old", "files/file-old")
    assert BASELINE <= HEAD
