"""batches: parked executions, a job's failure reason, an app's processor

``executions.parked``: a parked execution is written but not handed out until it is queued
(the ready index leaves it out, so a big parked batch costs dispatch nothing).
``jobs.error``: why a job failed before any execution ran (e.g. its input file).
``projects.processor``: how an app (a project) processes each batch input.

Revision ID: e1f2a3b4c5d6
Revises: c4d5e6f7a8b9
Create Date: 2026-11-29 22:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e1f2a3b4c5d6"
down_revision: str | None = "c4d5e6f7a8b9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ACTIVE = "status IN ('pending', 'retrying')"
READY_BEFORE = f"dispatched_at IS NULL AND {ACTIVE}"
READY_AFTER = f"dispatched_at IS NULL AND {ACTIVE} AND parked = false"


def _ready_index(batch_op: object, where: str, *, create: bool) -> None:
    method = batch_op.create_index if create else batch_op.drop_index  # type: ignore[attr-defined]
    kwargs = {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)}
    if create:
        method("ix_executions_ready", ["job_id", "seq"], **kwargs)
    else:
        method("ix_executions_ready", **kwargs)


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch_op:
        batch_op.add_column(
            sa.Column("parked", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        _ready_index(batch_op, READY_BEFORE, create=False)
        _ready_index(batch_op, READY_AFTER, create=True)
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
    with op.batch_alter_table("projects") as batch_op:
        batch_op.add_column(sa.Column("processor", JSON_DOCUMENT, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch_op:
        batch_op.drop_column("processor")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("error")
    with op.batch_alter_table("executions") as batch_op:
        _ready_index(batch_op, READY_AFTER, create=False)
        _ready_index(batch_op, READY_BEFORE, create=True)
        batch_op.drop_column("parked")
