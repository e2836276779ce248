"""rename files path to location

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 08:18:16.424884

The column holds a storage location (a path, or a URL under OPENFT_STORAGE_URL), not a local
path. Autogenerate sees a rename as a dropped column and a new one, which would lose the rows'
values; this renames it instead. In batch mode: SQLite copies the table (nothing references
`files`), PostgreSQL runs ALTER TABLE … RENAME COLUMN.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.alter_column("path", new_column_name="location")


def downgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.alter_column("location", new_column_name="path")
