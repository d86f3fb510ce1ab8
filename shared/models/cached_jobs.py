"""Cached jobs: a recurring per-query execution plan; every run of it is an ai_queries Job."""

from __future__ import annotations

import enum
import uuid
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models.base import Base, optional_timestamp, timestamp, utcnow, uuid_pk
from shared.models.jobs import Job
from shared.models.projects import Query


class CachedJobStatus(enum.StrEnum):
    PENDING = "pending"  # created (or re-enabled), never run since
    ACTIVE = "active"  # its last run is in progress
    ENDED = "ended"  # its last run finished (it may contain failures)
    INACTIVE = "inactive"  # switched off: the project's recurrence is paused


class CachedJob(Base):
    """A query's recurring plan: which models, how many runs each; one per (project, query).

    ``ai_models`` are the concrete model ids that runs use; ``provider_keys`` the keys the
    client asked for (``openai``...). The stored ``status`` is authoritative except for
    the step active → ended, which follows from the last job's status (see
    :func:`shared.mentionlab.cached_jobs.effective_status`).
    """

    __tablename__ = "cached_jobs"
    __table_args__ = (
        UniqueConstraint("project_id", "query_id", name="uq_cached_jobs_project_query"),
    )

    id: Mapped[uuid_pk]
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE")
    )
    query_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("queries.id", ondelete="CASCADE"), index=True
    )
    ai_models: Mapped[list[Any]] = mapped_column(default=list)
    provider_keys: Mapped[list[Any]] = mapped_column(default=list)
    execution_count: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(20), default=CachedJobStatus.PENDING.value)
    restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    last_job_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="SET NULL")
    )
    last_run_at: Mapped[optional_timestamp]
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp] = mapped_column(default=utcnow, onupdate=utcnow)

    query: Mapped[Query] = relationship(lazy="joined")
    last_job: Mapped[Job | None] = relationship(lazy="joined")
