"""Alembic migrations for the store (SQLite and PostgreSQL); `openft.store.migrate` runs them."""
