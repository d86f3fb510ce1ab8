"""worker capacity in executions

A worker process registers how many executions it holds in flight (``capacity``), not how
many groups it runs at once (``slots``): capacity is counted per execution since issue 16.
Rows of running workers are rewritten when they register again; until then their old
figure (groups) reads as a small capacity, which only makes dispatch cautious.

Revision ID: b8c9d0e1f2a3
Revises: a4b5c6d7e8f9
Create Date: 2026-12-04 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b8c9d0e1f2a3"
down_revision: str | None = "a4b5c6d7e8f9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("worker_processes") as table:
        table.alter_column("slots", new_column_name="capacity")


def downgrade() -> None:
    with op.batch_alter_table("worker_processes") as table:
        table.alter_column("capacity", new_column_name="slots")
