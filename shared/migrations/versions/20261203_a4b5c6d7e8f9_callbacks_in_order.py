"""callbacks in order: message chains and closing messages

A message about an execution (a data point's callback) follows the one written before it
(``follows_id``, unique: a chain never forks), and a message that closes its job (a
batch's own callback) waits for every message about the job's executions; the sender's
claim reads both. Existing batch callbacks close their jobs; existing messages start no
chain (each was written alone).

Revision ID: a4b5c6d7e8f9
Revises: f2a3b4c5d6e7
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a4b5c6d7e8f9"
down_revision: str | None = "f2a3b4c5d6e7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_messages", sa.Column("follows_id", sa.Uuid(), nullable=True))
    op.add_column(
        "webhook_messages",
        sa.Column("closes_job", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.execute("UPDATE webhook_messages SET closes_job = true WHERE event = 'batch.finished'")
    op.create_index(
        "uq_webhook_messages_follows_id", "webhook_messages", ["follows_id"], unique=True
    )
    op.create_index("ix_webhook_messages_job_id_state", "webhook_messages", ["job_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_webhook_messages_job_id_state", table_name="webhook_messages")
    op.drop_index("uq_webhook_messages_follows_id", table_name="webhook_messages")
    with op.batch_alter_table("webhook_messages") as batch_op:
        batch_op.drop_column("closes_job")
        batch_op.drop_column("follows_id")
