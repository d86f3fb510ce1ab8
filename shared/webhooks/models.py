"""Webhooks: signing secrets per organisation, messages to send, and every delivery attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, Uuid, false, text
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UTCDateTime, optional_timestamp, timestamp, uuid_pk


class WebhookSecret(Base):
    """An organisation's signing secret (``whsec_…``, Standard Webhooks). A rotation gives
    the previous secrets an ``expires_at`` 24 h ahead: until then deliveries carry a
    signature by each, so receivers verify with either. The current one (no
    ``expires_at``) is one per organisation."""

    __tablename__ = "webhook_secrets"
    __table_args__ = (
        Index(
            "uq_webhook_secrets_current",
            "organisation_id",
            unique=True,
            postgresql_where=text("expires_at IS NULL"),
            sqlite_where=text("expires_at IS NULL"),
        ),
    )

    id: Mapped[uuid_pk]
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[timestamp]
    expires_at: Mapped[optional_timestamp]


class WebhookMessage(Base):
    """One event to deliver to one URL, at least once; its id is the ``webhook-id``.

    Messages about one execution (a data point's callbacks) form a chain: each
    ``follows`` the one written before it, and is sent only once that one is settled
    (delivered, failed or gone). A message that ``closes_job`` (a batch's own callback) is
    sent only once every message about the job's executions is settled."""

    __tablename__ = "webhook_messages"
    __table_args__ = (
        # What the sender picks up: due messages still being tried, receiver by receiver.
        Index("ix_webhook_messages_due", "state", "next_attempt_at"),
        Index(
            "ix_webhook_messages_receiver_due",
            "state",
            "organisation_id",
            "receiver",
            "next_attempt_at",
        ),
        # A job's delivery log, read in cursor pages ordered by (created_at, id).
        Index("ix_webhook_messages_job_id_created_at", "job_id", "created_at", "id"),
        # Whether any message of a job is still being tried (what a closing message waits on).
        Index("ix_webhook_messages_job_id_state", "job_id", "state"),
        Index("uq_webhook_messages_follows_id", "follows_id", unique=True),
    )

    id: Mapped[uuid_pk]
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"))
    execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    # The message about the same execution written just before this one (None: the first).
    # Unique: a chain never forks, so no two messages wait on the same one.
    follows_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    closes_job: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    event: Mapped[str] = mapped_column(String(40))  # datapoint.finished | batch.finished
    url: Mapped[str] = mapped_column(String(2048))
    # The URL's origin (scheme://host:port): the sender takes messages fairly across
    # (organisation, receiver), bounds each receiver, and backs a failing one off whole.
    receiver: Mapped[str] = mapped_column(String(300), default="", server_default="")
    payload: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(20))  # sending | delivered | failed | gone
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[optional_timestamp]
    created_at: Mapped[timestamp]
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One attempt to deliver a message: what was answered, and how fast.

    The row is written (committed) before the request is sent, without an outcome, and
    completed after it (``completed_at`` and the answer or the error): a sender that dies
    in between leaves the attempt logged, its outcome unknown."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # A message's attempts, in order (numbered 1, 2, ... per message).
        Index("ix_webhook_deliveries_message_id_attempt", "message_id", "attempt"),
    )

    id: Mapped[uuid_pk]
    message_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhook_messages.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(2048))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)  # the first KB
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    attempted_at: Mapped[timestamp]  # when the request was about to leave
    completed_at: Mapped[optional_timestamp]  # None: no outcome recorded (yet)


class WebhookReceiver(Base):
    """A receiver's circuit breaker, shared by every sender process: keyed by origin
    (scheme://host:port). ``failures`` counts attempts in a row that got no usable answer
    (no connection, no answer in time, a 5xx or 429). At the threshold the breaker opens
    until ``open_until``: the receiver's messages wait, their attempts unspent. Once that
    passes, one sender sends one message (the probe, leased by moving ``open_until``
    ahead); an answer closes the breaker, a failure opens it again for twice as long
    (``opened`` times in a row, capped)."""

    __tablename__ = "webhook_receivers"

    origin: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    opened: Mapped[int] = mapped_column(Integer, default=0)
    open_until: Mapped[optional_timestamp]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
