"""What is being watched: projects (brands) and the queries asked about them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, short_text, timestamp, utcnow, uuid_pk


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
