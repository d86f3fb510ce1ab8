"""projects choose web search: ``projects.web_search`` (NULL: the provider's setting)

Revision ID: c4d5e6f7a8b9
Revises: b7e1c2d3a4f5
Create Date: 2026-11-29 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c4d5e6f7a8b9"
down_revision: str | None = "b7e1c2d3a4f5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch_op:
        batch_op.add_column(sa.Column("web_search", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch_op:
        batch_op.drop_column("web_search")
