"""add evals api tables

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 03:30:00.000000

OpenAI's Evals API (`/v1/evals`): evals, their runs (queued work under a lease, like jobs and
exports) and the runs' output items. New tables: nothing before them is changed; `evals` stays
the table of `openft eval` reports.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eval_specs",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("organization_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("data_source_config", sa.JSON(), nullable=False),
        sa.Column("testing_criteria", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(op.f("ix_eval_specs_id"), "eval_specs", ["id"], unique=True)
    op.create_index(op.f("ix_eval_specs_organization_id"), "eval_specs", ["organization_id"], unique=False)
    op.create_table(
        "eval_runs",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("eval_id", sa.String(), nullable=False),
        sa.Column("organization_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("data_source", sa.JSON(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_expires_at", sa.Double(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.Integer(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("result_counts", sa.JSON(), nullable=True),
        sa.Column("per_testing_criteria_results", sa.JSON(), nullable=True),
        sa.Column("per_model_usage", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(op.f("ix_eval_runs_id"), "eval_runs", ["id"], unique=True)
    op.create_index(op.f("ix_eval_runs_eval_id"), "eval_runs", ["eval_id"], unique=False)
    op.create_index(op.f("ix_eval_runs_organization_id"), "eval_runs", ["organization_id"], unique=False)
    op.create_index(op.f("ix_eval_runs_status"), "eval_runs", ["status"], unique=False)
    op.create_table(
        "eval_output_items",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("eval_id", sa.String(), nullable=False),
        sa.Column("organization_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("datasource_item_id", sa.Integer(), nullable=False),
        sa.Column("datasource_item", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("sample", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(op.f("ix_eval_output_items_id"), "eval_output_items", ["id"], unique=True)
    op.create_index(
        "ix_eval_output_items_run_id_row", "eval_output_items", ["run_id", "datasource_item_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_eval_output_items_run_id_row", table_name="eval_output_items")
    op.drop_index(op.f("ix_eval_output_items_id"), table_name="eval_output_items")
    op.drop_table("eval_output_items")
    for column in ("status", "organization_id", "eval_id", "id"):
        op.drop_index(op.f(f"ix_eval_runs_{column}"), table_name="eval_runs")
    op.drop_table("eval_runs")
    op.drop_index(op.f("ix_eval_specs_organization_id"), table_name="eval_specs")
    op.drop_index(op.f("ix_eval_specs_id"), table_name="eval_specs")
    op.drop_table("eval_specs")
