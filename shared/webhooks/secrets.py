"""Each organisation's signing secret, ``whsec_`` + base64 of 24 random bytes (the format
Standard Webhooks libraries take). It is shown once, when created; a rotation keeps the
previous secrets valid for 24 h, and every delivery meanwhile is signed by each of them."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from shared.models import WebhookSecret
from shared.models import utcnow as utcnow  # the clock the callers compare with

PREFIX = "whsec_"
ROTATION_OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def rotate(session: Session, organisation_id: uuid.UUID) -> WebhookSecret:
    """A new current secret; the ones before it expire 24 h from now (at the latest)."""
    now = utcnow()
    session.execute(
        update(WebhookSecret)
        .where(
            WebhookSecret.organisation_id == organisation_id,
            or_(
                WebhookSecret.expires_at.is_(None),
                WebhookSecret.expires_at > now + ROTATION_OVERLAP,
            ),
        )
        .values(expires_at=now + ROTATION_OVERLAP)
    )
    created = WebhookSecret(organisation_id=organisation_id, secret=new_secret(), created_at=now)
    session.add(created)
    session.flush()
    return created


def signing_secrets(
    session: Session, organisation_id: uuid.UUID, now: datetime
) -> list[WebhookSecret]:
    """The secrets that sign now: the current one first, then those still overlapping."""
    return list(
        session.scalars(
            select(WebhookSecret)
            .where(
                WebhookSecret.organisation_id == organisation_id,
                or_(WebhookSecret.expires_at.is_(None), WebhookSecret.expires_at > now),
            )
            .order_by(WebhookSecret.created_at.desc())
        )
    )
