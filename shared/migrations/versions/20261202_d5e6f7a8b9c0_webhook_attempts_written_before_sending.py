"""webhook attempts written before sending: completed_at, and the indexes the log pages by

An attempt row is now written before its request leaves and completed after it, so a row
without ``completed_at`` is an attempt whose outcome was never recorded (its sender died).
Every row written before this revision was written after its request: it is complete.
The delivery log is read in cursor pages, a job's messages by (created_at, id) and a
message's attempts by number; those indexes replace the single-column ones they start with.

Revision ID: d5e6f7a8b9c0
Revises: c3d4e5f6a7b8
Create Date: 2026-12-02 13:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.models.base

revision: str = "d5e6f7a8b9c0"
down_revision: str | None = "c3d4e5f6a7b8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = shared.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("completed_at", WHEN, nullable=True))
    op.execute("UPDATE webhook_deliveries SET completed_at = attempted_at")
    op.drop_index("ix_webhook_deliveries_message_id", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_message_id_attempt", "webhook_deliveries", ["message_id", "attempt"]
    )
    op.drop_index("ix_webhook_messages_job_id", table_name="webhook_messages")
    op.create_index(
        "ix_webhook_messages_job_id_created_at", "webhook_messages", ["job_id", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_messages_job_id_created_at", table_name="webhook_messages")
    op.create_index("ix_webhook_messages_job_id", "webhook_messages", ["job_id"])
    op.drop_index("ix_webhook_deliveries_message_id_attempt", table_name="webhook_deliveries")
    op.create_index("ix_webhook_deliveries_message_id", "webhook_deliveries", ["message_id"])
    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.drop_column("completed_at")
