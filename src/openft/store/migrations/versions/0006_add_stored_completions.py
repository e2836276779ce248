"""add stored completions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 11:40:00.000000

Chat completions kept with `store: true`: the request and the response as JSON (their shapes are
OpenAI's and change with it, so they are not split into columns), the metadata the list filters
on, and a status that tells a complete reply from a stream the client dropped.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stored_completions",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("organization_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("served_by", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(op.f("ix_stored_completions_id"), "stored_completions", ["id"], unique=True)
    op.create_index(op.f("ix_stored_completions_organization_id"), "stored_completions", ["organization_id"])
    op.create_index(op.f("ix_stored_completions_created_at"), "stored_completions", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_stored_completions_created_at"), table_name="stored_completions")
    op.drop_index(op.f("ix_stored_completions_organization_id"), table_name="stored_completions")
    op.drop_index(op.f("ix_stored_completions_id"), table_name="stored_completions")
    op.drop_table("stored_completions")
