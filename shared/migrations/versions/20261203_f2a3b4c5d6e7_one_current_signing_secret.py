"""one current signing secret per organisation

An organisation has one current signing secret (no ``expires_at``): where concurrent
rotations left several, the newest stays current and the others expire like a rotation's
(24 h from now). Organisations without one get it on first use (the sender about to sign,
and ``GET /v1/webhooks/secret``, create it), not here: that covers every organisation
however it was made, and this revision writes no secret.

Revision ID: f2a3b4c5d6e7
Revises: e1f2a3b4c5d7
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import shared.models.base

revision: str = "f2a3b4c5d6e7"
down_revision: str | None = "e1f2a3b4c5d7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROTATION_OVERLAP = timedelta(hours=24)
WHEN = shared.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    _one_current_secret_each()
    op.create_index(
        "uq_webhook_secrets_current",
        "webhook_secrets",
        ["organisation_id"],
        unique=True,
        postgresql_where=sa.text("expires_at IS NULL"),
        sqlite_where=sa.text("expires_at IS NULL"),
    )


def _one_current_secret_each() -> None:
    """Of several current secrets of one organisation, the newest stays current."""
    secrets = sa.table(
        "webhook_secrets",
        sa.column("id", sa.Uuid()),
        sa.column("organisation_id", sa.Uuid()),
        sa.column("created_at", WHEN),
        sa.column("expires_at", WHEN),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(secrets.c.id, secrets.c.organisation_id)
        .where(secrets.c.expires_at.is_(None))
        .order_by(secrets.c.organisation_id, secrets.c.created_at.desc(), secrets.c.id)
    ).all()
    seen: set[object] = set()
    older = []
    for secret_id, organisation_id in rows:
        if organisation_id in seen:
            older.append(secret_id)
        seen.add(organisation_id)
    if older:
        connection.execute(
            sa.update(secrets)
            .where(secrets.c.id.in_(older))
            .values(expires_at=datetime.now(UTC) + ROTATION_OVERLAP)
        )


def downgrade() -> None:
    op.drop_index("uq_webhook_secrets_current", table_name="webhook_secrets")
