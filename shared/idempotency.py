"""Idempotency keys (Stripe's semantics), the storage half; the HTTP half is
``api/idempotency.py``.

A request with a key first *claims* it: one INSERT of (organisation, key) that the unique
constraint lets succeed once; a concurrent duplicate's INSERT conflicts (on PostgreSQL it
waits for the first to commit), so two requests never both run. The claimer runs the
create and then *stores* its answer, or *releases* the key when the create failed (a
refused create wrote nothing, so running it again is safe). Every later request with the
key is answered from the row: the stored answer (same request), a mismatch (another
request under the same key), or "in progress".

A claim records when it was taken (``locked_at``); a request whose process died leaves a
claim no answer will fill, so after ``JOBYARD_IDEMPOTENCY_LOCK_SECONDS`` another request may
take it over (a compare-and-set on ``locked_at``). Store and release are guarded the same
way, so a request that lost its claim cannot overwrite its successor's.

Keys live ``JOBYARD_IDEMPOTENCY_KEY_TTL_SECONDS`` (24 h): an expired key is deleted when it
is used again, and the recovery sweep purges the others.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.db import dialect_name, session_scope
from shared.models import IdempotencyKey, utcnow
from shared.settings import get_settings

PURGE_BATCH = 5000


@dataclass(frozen=True)
class Claimed:
    """This request holds the key: run the create, then store or release."""

    id: uuid.UUID
    locked_at: datetime


@dataclass(frozen=True)
class Replay:
    """The key's request finished: answer what it answered."""

    status_code: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Mismatch:
    """The key was used for another request."""


@dataclass(frozen=True)
class InProgress:
    """The key's request is still running."""


Outcome = Claimed | Replay | Mismatch | InProgress


def _expiry(now: datetime) -> datetime:
    return now - timedelta(seconds=get_settings().idempotency_key_ttl_seconds)


def claim(organisation_id: uuid.UUID, key: str, fingerprint: str) -> Outcome:
    """Claim ``key`` for the request of this ``fingerprint``, or say why not."""
    settings = get_settings()
    for _ in range(3):  # a key released between our INSERT and SELECT: claim again
        now = utcnow()
        with session_scope() as session:
            session.execute(  # expired: free again
                delete(IdempotencyKey).where(
                    IdempotencyKey.organisation_id == organisation_id,
                    IdempotencyKey.key == key,
                    IdempotencyKey.created_at < _expiry(now),
                )
            )
            insert = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
            claimed_id = session.execute(
                insert(IdempotencyKey)
                .values(
                    id=uuid.uuid4(),
                    organisation_id=organisation_id,
                    key=key,
                    fingerprint=fingerprint,
                    locked_at=now,
                    response_headers={},
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["organisation_id", "key"])
                .returning(IdempotencyKey.id)
            ).scalar_one_or_none()
            if claimed_id is not None:
                return Claimed(claimed_id, now)
            row = session.execute(
                select(IdempotencyKey).where(
                    IdempotencyKey.organisation_id == organisation_id, IdempotencyKey.key == key
                )
            ).scalar_one_or_none()
            if row is None:
                continue
            if row.fingerprint != fingerprint:
                return Mismatch()
            if row.status_code is not None:
                return Replay(row.status_code, row.response_body or b"", row.response_headers)
            if row.locked_at >= now - timedelta(seconds=settings.idempotency_lock_seconds):
                return InProgress()
            taken = session.execute(  # its request died: take the key over
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.id == row.id,
                    IdempotencyKey.locked_at == row.locked_at,
                    IdempotencyKey.status_code.is_(None),
                )
                .values(locked_at=now)
            )
            if taken.rowcount:  # type: ignore[attr-defined]
                return Claimed(row.id, now)
            return InProgress()
    return InProgress()


def _held(claimed: Claimed) -> Any:
    return (
        IdempotencyKey.id == claimed.id,
        IdempotencyKey.locked_at == claimed.locked_at,
        IdempotencyKey.status_code.is_(None),
    )


def store(claimed: Claimed, status_code: int, body: bytes, headers: dict[str, str]) -> None:
    """Keep the answer of the request that holds the claim."""
    with session_scope() as session:
        session.execute(
            update(IdempotencyKey)
            .where(*_held(claimed))
            .values(status_code=status_code, response_body=body, response_headers=headers)
        )


def release(claimed: Claimed) -> None:
    """Free the key: its request failed and wrote nothing."""
    with session_scope() as session:
        session.execute(delete(IdempotencyKey).where(*_held(claimed)))


def purge_expired(now: datetime | None = None) -> int:
    """Delete up to PURGE_BATCH expired keys (oldest first); how many went."""
    cutoff = _expiry(now or utcnow())
    with session_scope() as session:
        ids = session.scalars(
            select(IdempotencyKey.id)
            .where(IdempotencyKey.created_at < cutoff)
            .order_by(IdempotencyKey.created_at)
            .limit(PURGE_BATCH)
        ).all()
        if ids:
            session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids)))
    return len(ids)
