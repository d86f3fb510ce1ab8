"""Requested work: a job and the executions it fans out into.

The job row carries exact counters. Invariant at every commit (enforced by a CHECK
constraint): ``total = pending + retrying + success + failed``. ``total`` is fixed when the
job is accepted; executions not yet written by the fan-out count as pending.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models.base import Base, UTCDateTime, optional_timestamp, timestamp, utcnow, uuid_pk
from shared.models.tenancy import User


class JobType(enum.StrEnum):
    AI_QUERIES = "ai_queries"
    BATCH = "batch"
    KB_SYNC = "kb_sync"


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    PARTIAL_FAILED = "partial_failed"
    CANCELED = "canceled"


class ExecutionStatus(enum.StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    SUCCESS = "success"
    FAILED = "failed"


ACTIVE_EXECUTION_STATUSES = (ExecutionStatus.PENDING.value, ExecutionStatus.RETRYING.value)


class Job(Base):
    """One unit of requested work, with exact per-status execution counters."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("total = pending + retrying + success + failed", name="counters_sum"),
        CheckConstraint(
            "pending >= 0 AND retrying >= 0 AND success >= 0 AND failed >= 0",
            name="counters_non_negative",
        ),
        Index("ix_jobs_org_created", "organisation_id", "created_at"),
        Index(
            "ix_jobs_undispatched",
            "created_at",
            postgresql_where=text("fanned_out_at IS NULL"),
            sqlite_where=text("fanned_out_at IS NULL"),
        ),
    )

    id: Mapped[uuid_pk]
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE")
    )
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.PENDING.value)
    total: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)
    retrying: Mapped[int] = mapped_column(Integer, default=0)
    success: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    # The attempt budget is fixed when the job is accepted, so a settings change never
    # alters the rules of work already in flight.
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    created_by_user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    parked: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the fan-out task was last published, and when the fan-out finished writing
    # and publishing every execution. The sweep re-publishes jobs stuck between the two.
    dispatched_at: Mapped[optional_timestamp]
    fanned_out_at: Mapped[optional_timestamp]
    canceled_at: Mapped[optional_timestamp]
    created_at: Mapped[timestamp]
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[optional_timestamp]
    finished_at: Mapped[optional_timestamp]

    created_by: Mapped[User | None] = relationship(lazy="joined")


class Execution(Base):
    """One piece of a job: one model x run x query, one input, or one batch of rows."""

    __tablename__ = "executions"
    __table_args__ = (
        UniqueConstraint("job_id", "item_key", name="uq_executions_job_item"),
        Index("ix_executions_job_status", "job_id", "status"),
        # The sweep looks only at non-terminal rows; keep that index small on PostgreSQL.
        Index(
            "ix_executions_active",
            "status",
            "lease_expires_at",
            postgresql_where=text("status IN ('pending', 'retrying')"),
        ),
    )

    id: Mapped[uuid_pk]
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"))
    item_key: Mapped[str] = mapped_column(String(255))
    query_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    model: Mapped[str | None] = mapped_column(String(64))
    run_number: Mapped[int | None] = mapped_column(Integer)
    input_index: Mapped[int | None] = mapped_column(Integer)
    language: Mapped[str | None] = mapped_column(String(5))
    country: Mapped[str | None] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(20), default=ExecutionStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    lease_expires_at: Mapped[optional_timestamp]
    next_attempt_at: Mapped[optional_timestamp]
    dispatched_at: Mapped[optional_timestamp]
    result: Mapped[dict[str, Any] | None] = mapped_column()
    # Whether the answer mentions the project's own brand (kept beside the result so
    # that per-model mention rates are one aggregate, not a scan of JSON documents).
    primary_mentioned: Mapped[bool | None] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[timestamp]
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[optional_timestamp]
    finished_at: Mapped[optional_timestamp]
