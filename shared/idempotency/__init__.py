"""Idempotency keys (Stripe's semantics), the storage half; the HTTP half is
``api/idempotency.py``.

Everything happens in the create's own transaction (the request's unit of work): the key
is *claimed* there, the create runs, and its answer is *stored* there, so the three
commit together or not at all. A process that dies anywhere before the commit leaves
neither a job nor a key: a retry with the same key runs the create afresh, once. An
error answer rolls the whole transaction back, so the key stays free.

Two requests with the same key never both run the create:

- On PostgreSQL the claim takes a transaction-scoped advisory lock on a hash of
  (organisation, key) with ``pg_try_advisory_xact_lock``: a second request finds it held
  and answers "in progress" (409) at once, rather than waiting as long as the first takes.
  Once the first commits, the lock is gone and its answer is visible: the next request
  replays it.
- On SQLite every write transaction holds the database's write lock from its start
  (:mod:`shared.sqlite`): the second request's transaction begins only after the first's
  commit, and finds its answer.
- Either way the unique (organisation, key) is the last word: a store that finds the key
  taken raises Conflict, and the create it would have answered rolls back with it.

Keys live ``JOBYARD_IDEMPOTENCY_KEY_TTL_SECONDS`` (24 h): an expired key is deleted when it
is used again, and the recovery sweep purges the others.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.db import dialect_name
from shared.errors import Conflict
from shared.idempotency.models import IdempotencyKey
from shared.models import utcnow
from shared.settings import get_settings

PURGE_BATCH = 5000


@dataclass(frozen=True)
class Claimed:
    """This transaction holds the key: run the create, then store its answer."""

    organisation_id: uuid.UUID
    key: str
    fingerprint: str


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


def lock_key(session: Session, organisation_id: uuid.UUID, key: str) -> bool:
    """Take the key's advisory lock for the rest of the transaction, without waiting;
    False when another transaction holds it (PostgreSQL; SQLite's writer lock already
    serializes the requests)."""
    if dialect_name(session) != "postgresql":
        return True
    digest = hashlib.sha256(f"idempotency\n{organisation_id}\n{key}".encode()).digest()
    lock = int.from_bytes(digest[:8], "big", signed=True)
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(lock))))


def claim(session: Session, organisation_id: uuid.UUID, key: str, fingerprint: str) -> Outcome:
    """Claim ``key`` for the request of this ``fingerprint`` in the caller's transaction,
    or say why not."""
    if not lock_key(session, organisation_id, key):
        return InProgress()
    session.execute(  # expired: free again
        delete(IdempotencyKey).where(
            IdempotencyKey.organisation_id == organisation_id,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at < _expiry(utcnow()),
        )
    )
    row = session.execute(
        select(IdempotencyKey).where(
            IdempotencyKey.organisation_id == organisation_id, IdempotencyKey.key == key
        )
    ).scalar_one_or_none()
    if row is None or row.status_code is None:
        # (A row without an answer is a claim of the former three-transaction scheme,
        # whose request died: the key is free.)
        if row is not None:
            session.delete(row)
            session.flush()
        return Claimed(organisation_id, key, fingerprint)
    if row.fingerprint != fingerprint:
        return Mismatch()
    return Replay(row.status_code, row.response_body or b"", row.response_headers)


def store(
    session: Session, claimed: Claimed, status_code: int, body: bytes, headers: dict[str, str]
) -> None:
    """Keep the create's answer under its key, in the create's transaction. Conflict when
    another transaction took the key meanwhile (its lock was bypassed): the create rolls
    back with this transaction."""
    now = utcnow()
    insert = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    stored = session.execute(
        insert(IdempotencyKey)
        .values(
            id=uuid.uuid4(),
            organisation_id=claimed.organisation_id,
            key=claimed.key,
            fingerprint=claimed.fingerprint,
            locked_at=now,
            status_code=status_code,
            response_body=body,
            response_headers=headers,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["organisation_id", "key"])
        .returning(IdempotencyKey.id)
    ).scalar_one_or_none()
    if stored is None:
        raise Conflict(
            f"A request with Idempotency-Key {claimed.key!r} is still in progress: "
            "retry it in a moment"
        )


def purge_expired(session: Session, now: datetime | None = None) -> int:
    """Delete up to PURGE_BATCH expired keys (oldest first); how many went."""
    cutoff = _expiry(now or utcnow())
    ids = session.scalars(
        select(IdempotencyKey.id)
        .where(IdempotencyKey.created_at < cutoff)
        .order_by(IdempotencyKey.created_at)
        .limit(PURGE_BATCH)
    ).all()
    if ids:
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids)))
    return len(ids)
