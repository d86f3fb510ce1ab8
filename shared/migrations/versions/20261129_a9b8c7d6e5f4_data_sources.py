"""data sources: an organisation's source databases, their URLs encrypted

Revision ID: a9b8c7d6e5f4
Revises: f7a8b9c0d1e2
Create Date: 2026-11-29 22:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.models.base

revision: str = "a9b8c7d6e5f4"
down_revision: str | None = "f7a8b9c0d1e2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_sources",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("engine", sa.String(length=40), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("database", sa.String(length=1024), nullable=True),
        sa.Column("url_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", shared.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_data_sources_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_sources")),
        sa.UniqueConstraint(
            "organisation_id", "name", name=op.f("uq_data_sources_organisation_id")
        ),
    )
    op.create_index(op.f("ix_data_sources_organisation_id"), "data_sources", ["organisation_id"])


def downgrade() -> None:
    op.drop_table("data_sources")
