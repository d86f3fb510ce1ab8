"""Mentionlab's tables: what is being watched (projects, i.e. brands, and the queries asked
about them) and cached jobs (a query's recurring plan; every run of it is an ai_queries Job)."""

from __future__ import annotations

import enum
import uuid
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models import Job
from shared.models.base import (
    Base,
    optional_timestamp,
    short_text,
    timestamp,
    utcnow,
    uuid_pk,
)


class Project(Base):
    """A brand to watch: its name, aliases and competitors, and how it is run."""

    __tablename__ = "projects"

    id: Mapped[uuid_pk]
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[short_text]
    description: Mapped[str] = mapped_column(Text, default="")
    website: Mapped[str] = mapped_column(String(2048), default="")
    industry: Mapped[str] = mapped_column(String(255), default="")
    name_aliases: Mapped[list[Any]] = mapped_column(default=list)
    competitors: Mapped[list[Any]] = mapped_column(default=list)
    llm_providers: Mapped[list[Any]] = mapped_column(default=list)
    execution_count: Mapped[int] = mapped_column(Integer, default=3)
    # Ask models with their web search (None: as the provider's setting says; False: the
    # bare model, for users who want what the model knows without searching).
    web_search: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=None)
    # As an app of the batches API: how each input is processed ({promptTemplate, model,
    # webSearch}); None: the defaults (see shared.batches.processor).
    processor: Mapped[dict[str, Any] | None] = mapped_column(nullable=True, default=None)
    recurrence: Mapped[str] = mapped_column(String(20), default="manual")
    # Its next scheduled run is an engine schedule (shared.mentionlab.recurrence).
    recurrence_status: Mapped[str] = mapped_column(String(20), default="active")
    created_by_user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp] = mapped_column(default=utcnow, onupdate=utcnow)


class Query(Base):
    """A question asked of AI models about a project, in a language and country."""

    __tablename__ = "queries"

    id: Mapped[uuid_pk]
    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(5), default="en")
    country: Mapped[str] = mapped_column(String(2), default="US")
    tag_ids: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp] = mapped_column(default=utcnow, onupdate=utcnow)


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


class AiRun(Base):
    """The project an ai_queries job is about: Mentionlab's part of the job, kept out of
    the engine's row. A project's runs are listed through ``project_id``'s index."""

    __tablename__ = "ai_runs"

    job_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
