"""Idempotency keys: a create's answer, kept per organisation and key for 24 h, so that a
client retrying the create (``Idempotency-Key``) gets the same answer and no second job."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, timestamp, uuid_pk


class IdempotencyKey(Base):
    """One key of one organisation. While ``status_code`` is null the request that took
    the key is still running (since ``locked_at``); then it holds that request's answer."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        # The guard against concurrent duplicates: the second INSERT of a key conflicts.
        UniqueConstraint("organisation_id", "key"),
        # Housekeeping deletes by age.
        Index("ix_idempotency_keys_created_at", "created_at"),
    )

    id: Mapped[uuid_pk]
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of what makes two requests "the same": method, path, query, body and the
    # context headers (see api/idempotency.py).
    fingerprint: Mapped[str] = mapped_column(String(64))
    locked_at: Mapped[timestamp]
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[timestamp]
