"""webhook receivers: each message's origin, and a circuit breaker per origin

The sender takes messages fairly across (organisation, receiver) and backs off a failing
receiver as a whole; ``receiver`` is the origin of the message's URL (scheme://host:port),
filled in here for the messages still being tried (the others are never taken again, but
a resend: it fills theirs).

Revision ID: b7c8d9e0f1a2
Revises: b8c9d0e1f2a3
Create Date: 2026-12-04 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.models.base

revision: str = "b7c8d9e0f1a2"
down_revision: str | None = "b8c9d0e1f2a3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = shared.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    from shared.webhooks.receivers import origin_of

    op.add_column(
        "webhook_messages",
        sa.Column("receiver", sa.String(300), server_default="", nullable=False),
    )
    messages = sa.table(
        "webhook_messages", sa.column("id", sa.Uuid()), sa.column("url"), sa.column("receiver")
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT id, url FROM webhook_messages WHERE state = 'sending'")
    )
    updates = [{"message_id": row[0], "origin": origin_of(row[1])} for row in rows]
    if updates:
        connection.execute(
            messages.update()
            .where(messages.c.id == sa.bindparam("message_id"))
            .values(receiver=sa.bindparam("origin")),
            updates,
        )
    op.create_index(
        "ix_webhook_messages_receiver_due",
        "webhook_messages",
        ["state", "organisation_id", "receiver", "next_attempt_at"],
    )
    op.create_table(
        "webhook_receivers",
        sa.Column("origin", sa.String(300), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("opened", sa.Integer(), nullable=False),
        sa.Column("open_until", WHEN, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_receivers")
    op.drop_index("ix_webhook_messages_receiver_due", table_name="webhook_messages")
    with op.batch_alter_table("webhook_messages") as batch_op:
        batch_op.drop_column("receiver")
