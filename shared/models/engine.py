"""The engine's own bookkeeping: live worker processes, the job-finished outbox and the
periodic schedules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UTCDateTime, optional_timestamp, timestamp, utcnow, uuid_pk


class WorkerProcess(Base):
    """An execution-worker process and its heartbeat.

    A worker owns the leases it takes (``executions.lease_owner``); when its heartbeat
    stops, the recovery sweep releases them at once instead of waiting for them to expire.
    ``capacity`` is how many executions it holds in flight at most (0: a dispatcher,
    which runs none): dispatch keeps a few groups in the broker for each live worker.
    """

    __tablename__ = "worker_processes"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    capacity: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[timestamp]
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class OutboxEvent(Base):
    """One event for one consumer, written in the transaction that caused it.

    A job becoming terminal writes one row per registered consumer of ``job.finished``;
    each consumer takes its rows (``FOR UPDATE SKIP LOCKED``), handles them and deletes
    them, so a consumer added later never blocks another and none misses an event.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_consumer", "consumer", "available_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    consumer: Mapped[str] = mapped_column(String(80))
    topic: Mapped[str] = mapped_column(String(80))
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[timestamp]


class PeriodicSchedule(Base):
    """When an owner's next slot falls, for one periodic kind (see :mod:`shared.engine.periodic`).

    ``kind`` names who owns the schedule and what a slot does; ``owner_id`` is that kind's
    own row (no foreign key: the engine names no domain table). ``next_slot_at`` is the
    slot a tick will claim, null when none is due (paused, unscheduled, or past the last
    slot); ``last_slot_at`` the latest slot that ran, so that a slot never runs twice.
    """

    __tablename__ = "periodic_schedules"
    __table_args__ = (
        UniqueConstraint("kind", "owner_id"),
        # The tick looks for due slots: keep that lookup an index range scan.
        Index("ix_periodic_schedules_next_slot_at", "next_slot_at"),
    )

    id: Mapped[uuid_pk]
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(80))
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    next_slot_at: Mapped[optional_timestamp]
    last_slot_at: Mapped[optional_timestamp]
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp] = mapped_column(default=utcnow, onupdate=utcnow)
