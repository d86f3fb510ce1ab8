"""Requested work: a job and the executions it fans out into.

The job row carries exact counters. Invariant at every commit (enforced by a CHECK
constraint): ``total = pending + retrying + success + failed``. ``total`` is fixed when the
job is accepted; executions not yet written by the fan-out count as pending (a cancel
during the fan-out removes the unwritten ones from ``total``).

An execution carries its piece of work as data (``item``, JSON), whatever the job type: the
engine never looks inside it. What the engine owns are the lifecycle columns: status,
attempts, the lease, the retry time and the dispatch stamp.

The job row holds what every job type has (counters, cost, payload, the client's metadata
and tags). What only some types have (the project a run is about, a batch's app and
callback URL) lives in the type's own table, keyed by the job.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models.base import (
    Base,
    JSONDocument,
    UTCDateTime,
    optional_timestamp,
    timestamp,
    utcnow,
    uuid_pk,
)
from shared.models.tenancy import User


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    PARTIAL_FAILED = "partial_failed"
    CANCELED = "canceled"


TERMINAL_JOB_STATUSES = (
    JobStatus.COMPLETED.value,
    JobStatus.FAILED.value,
    JobStatus.PARTIAL_FAILED.value,
    JobStatus.CANCELED.value,
)
ACTIVE_JOB_STATUSES = (JobStatus.PENDING.value, JobStatus.PROCESSING.value)


class ExecutionStatus(enum.StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    SUCCESS = "success"
    FAILED = "failed"


ACTIVE_EXECUTION_STATUSES = (ExecutionStatus.PENDING.value, ExecutionStatus.RETRYING.value)
_ACTIVE_SQL = "status IN ('pending', 'retrying')"


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
        # Dispatch looks at unfinished jobs only: keep that set an index scan.
        Index(
            "ix_jobs_active",
            "organisation_id",
            "last_dispatched_at",
            postgresql_where=text("status IN ('pending', 'processing')"),
            sqlite_where=text("status IN ('pending', 'processing')"),
        ),
    )

    id: Mapped[uuid_pk]
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.PENDING.value)
    total: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)
    retrying: Mapped[int] = mapped_column(Integer, default=0)
    success: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    # What the job's attempts cost so far (every attempt, failed ones included), in USD.
    cost: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # The attempt budget is fixed when the job is accepted, so a settings change never
    # alters the rules of work already in flight.
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    created_by_user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A client's own key-value pairs: an object, or an array (super.AI documents both).
    metadata_: Mapped[dict[str, Any] | list[Any]] = mapped_column(
        "metadata", JSONDocument, default=dict
    )
    tags: Mapped[list[Any]] = mapped_column(default=list)
    parked: Mapped[bool] = mapped_column(Boolean, default=False)
    # Why the job failed before any execution could run (its input file, say).
    error: Mapped[str | None] = mapped_column(Text)
    # When the fan-out task was last published (or last made progress), and when the
    # fan-out finished writing every execution. The sweep re-publishes jobs stuck between.
    dispatched_at: Mapped[optional_timestamp]
    fanned_out_at: Mapped[optional_timestamp]
    # The worker process writing the fan-out (its heartbeat row's id): when it dies, the
    # sweep hands the fan-out to another within the dead-worker window.
    fan_out_owner: Mapped[str | None] = mapped_column(String(120))
    # When a group of this job's executions was last handed to the broker: dispatch serves
    # the least recently served organisation, then its least recently served job.
    last_dispatched_at: Mapped[optional_timestamp]
    canceled_at: Mapped[optional_timestamp]
    # The job's trace context (a W3C traceparent) while tracing is on: the request's that
    # created it, then its fan-out's. Dispatch publishes the job's groups as its children,
    # long after the request (shared.tracing). NULL when tracing is off.
    traceparent: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[timestamp]
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[optional_timestamp]
    finished_at: Mapped[optional_timestamp]

    created_by: Mapped[User | None] = relationship(lazy="joined")


class Execution(Base):
    """One piece of a job: one model x run x query, one input, or one batch of rows.

    The id is derived from (job, item key), so a repeated fan-out names the same rows.
    """

    __tablename__ = "executions"
    __table_args__ = (
        # Listing order, and the order in which dispatch hands executions out.
        Index("ix_executions_job_seq", "job_id", "seq"),
        # What dispatch may hand out next: written, not in the broker, not finished, not
        # parked.
        Index(
            "ix_executions_ready",
            "job_id",
            "seq",
            postgresql_where=text(f"dispatched_at IS NULL AND {_ACTIVE_SQL} AND parked = false"),
            sqlite_where=text(f"dispatched_at IS NULL AND {_ACTIVE_SQL} AND parked = false"),
        ),
        # What is in the broker or in a worker's hands (queued groups and calls in flight), so
        # counting it and scanning it for dead leases stays cheap whatever the job sizes.
        Index(
            "ix_executions_outstanding",
            "dispatched_at",
            postgresql_where=text(f"dispatched_at IS NOT NULL AND {_ACTIVE_SQL}"),
            sqlite_where=text(f"dispatched_at IS NOT NULL AND {_ACTIVE_SQL}"),
        ),
    )

    id: Mapped[uuid_pk]
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # position in the job's plan, from 0
    item_key: Mapped[str] = mapped_column(String(255))
    item: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default=ExecutionStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[optional_timestamp]
    next_attempt_at: Mapped[optional_timestamp]
    dispatched_at: Mapped[optional_timestamp]
    # Written but held back until queued (a parked batch input): dispatch skips it.
    parked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    result: Mapped[dict[str, Any] | None] = mapped_column()
    # A small digest of the result that job summaries aggregate (the result itself may be
    # large and stored out of line; this stays small and in the row).
    summary: Mapped[dict[str, Any] | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    cost: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    created_at: Mapped[timestamp]
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[optional_timestamp]
    finished_at: Mapped[optional_timestamp]
