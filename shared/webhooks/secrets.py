"""Each organisation's signing secret, ``whsec_`` + base64 of 24 random bytes (the format
Standard Webhooks libraries take).

Every organisation has one from the start: it is created with the organisation, and for
an organisation that has none (one made before secrets were, or by any other path) on
first use, by the sender about to sign or by its owner reading it. Its owner reads it at
any time (like Svix's endpoint secret); a rotation makes a new current one and keeps the
previous ones valid for 24 h, and every delivery meanwhile is signed by each of them.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.db import dialect_name
from shared.models import utcnow as utcnow  # the clock the callers compare with
from shared.models.base import UTCDateTime
from shared.webhooks.models import WebhookSecret

PREFIX = "whsec_"
ROTATION_OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True)
class CurrentSecret:
    """The secret that signs from now on, and until when the previous ones sign too."""

    secret: WebhookSecret
    previous_expire_at: datetime | None  # None: no previous secret signs any more


def ensure_current(session: Session, organisation_ids: Collection[uuid.UUID]) -> None:
    """Give each of these organisations that has no current secret a new one, in the
    caller's transaction. Concurrent callers make one each at most: the current secret is
    unique per organisation, and a conflicting insert does nothing."""
    if not organisation_ids:
        return
    insert = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    now = utcnow()
    session.execute(
        insert(WebhookSecret)
        .values(
            [
                {
                    "id": uuid.uuid4(),
                    "organisation_id": o,
                    "secret": new_secret(),
                    "created_at": now,
                }
                for o in sorted(organisation_ids)  # one lock order for concurrent callers
            ]
        )
        .on_conflict_do_nothing(
            index_elements=["organisation_id"], index_where=WebhookSecret.expires_at.is_(None)
        )
    )


def current(session: Session, organisation_id: uuid.UUID) -> CurrentSecret:
    """The organisation's current secret (made now if it has none), for its owner to read."""
    ensure_current(session, [organisation_id])
    now = utcnow()
    valid = signing_secrets(session, organisation_id, now)
    (newest,) = [s for s in valid if s.expires_at is None]
    overlap = [s.expires_at for s in valid if s.expires_at is not None]
    return CurrentSecret(newest, max(overlap) if overlap else None)


def rotate(session: Session, organisation_id: uuid.UUID) -> CurrentSecret:
    """A new current secret; the ones before it expire 24 h from now (at the latest)."""
    # Rotations of one organisation take turns on its current secret's row: the second
    # expires the first's new secret, never inserts beside it.
    session.execute(
        select(WebhookSecret.id)
        .where(WebhookSecret.organisation_id == organisation_id, WebhookSecret.expires_at.is_(None))
        .with_for_update()
    )
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
    return current(session, organisation_id)


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


def signing_secrets_of(
    session: Session, organisation_ids: Collection[uuid.UUID], now: datetime
) -> dict[uuid.UUID, list[str]]:
    """The secrets that sign now for each of these organisations, current first; an
    organisation without a current secret gets one first, so none has an empty list."""
    by_organisation = _signing_secrets_of(session, organisation_ids, now)
    # Every organisation has its current secret from the start; one made otherwise gets
    # it here, before anything of it is signed (looked for first: a sender's every take
    # comes here, and an insert each time would cost more than the look-up).
    lacking = [o for o, (current, _) in by_organisation.items() if not current]
    if lacking:
        ensure_current(session, lacking)
        by_organisation.update(_signing_secrets_of(session, lacking, now))
    return {o: current + previous for o, (current, previous) in by_organisation.items()}


@cache
def _signing_statement() -> Any:
    """Built once: a sender runs it every take."""
    return (
        select(WebhookSecret.organisation_id, WebhookSecret.secret, WebhookSecret.expires_at)
        .where(
            WebhookSecret.organisation_id.in_(bindparam("organisations", expanding=True)),
            or_(
                WebhookSecret.expires_at.is_(None),
                WebhookSecret.expires_at > bindparam("now", type_=UTCDateTime()),
            ),
        )
        .order_by(WebhookSecret.created_at.desc())
    )


def _signing_secrets_of(
    session: Session, organisation_ids: Collection[uuid.UUID], now: datetime
) -> dict[uuid.UUID, tuple[list[str], list[str]]]:
    """Per organisation, (its current secret, if any; the previous ones that still sign)."""
    by_organisation: dict[uuid.UUID, tuple[list[str], list[str]]] = {
        o: ([], []) for o in organisation_ids
    }
    for organisation_id, secret, expires_at in session.execute(
        _signing_statement(), {"organisations": list(organisation_ids), "now": now}
    ):
        current, previous = by_organisation[organisation_id]
        (current if expires_at is None else previous).append(secret)
    return by_organisation
