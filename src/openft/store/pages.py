"""Cursor pages, as OpenAI lists them (`data`, `has_more`): one row more than the page is asked
for, and its presence says that more follow."""

from typing import Any

from sqlalchemy import Select

from openft.store.db import Database


def fetch_page(db: Database, query: Select, limit: int) -> tuple[list[Any], bool]:
    """The first `limit` rows of the ordered `query`, and whether more follow."""
    with db.session() as session:
        rows = list(session.scalars(query.limit(limit + 1)))
    return rows[:limit], len(rows) > limit
