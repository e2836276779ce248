"""add exports table

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00.000000

Exports are queued work (`POST /v1/openft/exports`), claimed under a lease by the exporters of
the hosts (runner/exporter.py), like jobs. A new table: nothing before it is changed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exports",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("organization_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("quantization", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_expires_at", sa.Double(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.Integer(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("filename", sa.String(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(op.f("ix_exports_id"), "exports", ["id"], unique=True)
    op.create_index(op.f("ix_exports_organization_id"), "exports", ["organization_id"], unique=False)
    op.create_index(op.f("ix_exports_status"), "exports", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_exports_status"), table_name="exports")
    op.drop_index(op.f("ix_exports_organization_id"), table_name="exports")
    op.drop_index(op.f("ix_exports_id"), table_name="exports")
    op.drop_table("exports")
