"""cached jobs

Cached jobs (one recurring plan per project and query; unique on the pair, so posting the
same query again updates its plan) and the projects' next scheduled run.

Revision ID: 585be6912392
Revises: 53f5491468b1
Create Date: 2026-11-22 15:18:28.202148
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import shared.models.base

revision: str = "585be6912392"
down_revision: str | None = "53f5491468b1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cached_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("query_id", sa.Uuid(), nullable=False),
        sa.Column(
            "ai_models",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "provider_keys",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("execution_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("restricted", sa.Boolean(), nullable=False),
        sa.Column("last_job_id", sa.Uuid(), nullable=True),
        sa.Column("last_run_at", shared.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", shared.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["last_job_id"],
            ["jobs.id"],
            name=op.f("fk_cached_jobs_last_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_cached_jobs_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_cached_jobs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["query_id"],
            ["queries.id"],
            name=op.f("fk_cached_jobs_query_id_queries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cached_jobs")),
        sa.UniqueConstraint("project_id", "query_id", name="uq_cached_jobs_project_query"),
    )
    with op.batch_alter_table("cached_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cached_jobs_organisation_id"), ["organisation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_cached_jobs_query_id"), ["query_id"], unique=False)

    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("next_run_at", shared.models.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_projects_next_run_at", ["next_run_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_index("ix_projects_next_run_at")
        batch_op.drop_column("next_run_at")

    with op.batch_alter_table("cached_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cached_jobs_query_id"))
        batch_op.drop_index(batch_op.f("ix_cached_jobs_organisation_id"))

    op.drop_table("cached_jobs")
