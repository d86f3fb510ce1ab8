"""a job's trace context: the W3C traceparent its groups are published under

Nullable, written only while tracing is on (shared/tracing.py). Added and dropped with
each database's own ALTER TABLE (SQLite has both), never batch mode's copy of ``jobs``:
dropping it to copy it would cascade to every row that refers to a job.

Revision ID: d2e3f4a5b6c7
Revises: d0e1f2a3b4c5
Create Date: 2026-12-06 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d2e3f4a5b6c7"
down_revision: str | None = "d0e1f2a3b4c5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("traceparent", sa.String(length=128), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE jobs DROP COLUMN traceparent")
    else:
        op.drop_column("jobs", "traceparent")
