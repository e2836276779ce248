"""upstream per organization and stored completion keys

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00.000000

An organization's switch for relaying to the upstream (off for every organization, as the gateway
now requires) and its own upstream key. A stored completion's id is unique within its
organization only, and is the id openft minted; the id an upstream gave its reply is kept apart.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "organizations", sa.Column("upstream_enabled", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("organizations", sa.Column("upstream_api_key", sa.String(), nullable=True))
    op.add_column("stored_completions", sa.Column("upstream_id", sa.String(), nullable=True))
    op.drop_index("ix_stored_completions_id", table_name="stored_completions")
    op.drop_index("ix_stored_completions_organization_id", table_name="stored_completions")
    op.create_index(
        "ix_stored_completions_organization_id_id", "stored_completions", ["organization_id", "id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_stored_completions_organization_id_id", table_name="stored_completions")
    op.create_index("ix_stored_completions_organization_id", "stored_completions", ["organization_id"])
    op.create_index("ix_stored_completions_id", "stored_completions", ["id"], unique=True)
    op.drop_column("stored_completions", "upstream_id")
    op.drop_column("organizations", "upstream_api_key")
    op.drop_column("organizations", "upstream_enabled")
