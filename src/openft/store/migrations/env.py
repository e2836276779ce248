"""Alembic's entry point. `openft.store.migrate` hands it an open connection (inside the
transaction that holds the migration lock) through `config.attributes["connection"]`."""

from alembic import context

from openft.store.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
