"""add the job's method

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 11:50:00.000000

A job trains with OpenAI's `method.type`: "supervised" or "dpo" (preference pairs). Jobs from
before were all supervised, which the server default says for them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("method", sa.String(), server_default="supervised", nullable=False))


def downgrade() -> None:
    op.drop_column("jobs", "method")
