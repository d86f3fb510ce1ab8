"""Knowledge-base sync: source databases, knowledge bases and their chunks."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, timestamp, uuid_pk


class DataSource(Base):
    """A source database by name. Its SQLAlchemy URL (credentials included) is stored
    encrypted (Fernet) and never answered back: only its engine, host and database."""

    __tablename__ = "data_sources"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[uuid_pk]
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    engine: Mapped[str] = mapped_column(String(40))  # postgresql, sqlite, mysql...
    host: Mapped[str | None] = mapped_column(String(255))
    database: Mapped[str | None] = mapped_column(String(1024))
    url_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[timestamp]


class KnowledgeBase(Base):
    """A searchable store of chunks of rows. ``version`` moves on every change of its
    chunks, so a process's cached matrix knows when it is stale."""

    __tablename__ = "knowledge_bases"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[uuid_pk]
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    embedder: Mapped[str] = mapped_column(String(100))
    dimensions: Mapped[int] = mapped_column(Integer)
    id_column: Mapped[str | None] = mapped_column(String(63))
    metadata_columns: Mapped[list[Any]] = mapped_column(default=list)
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[timestamp]


class KbChunk(Base):
    """One chunk of one row: its text, metadata and embedding (float32 bytes)."""

    __tablename__ = "kb_chunks"
    __table_args__ = (UniqueConstraint("kb_id", "chunk_id"),)

    id: Mapped[uuid_pk]
    kb_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True
    )
    row_id: Mapped[str] = mapped_column(String(255))
    chunk_id: Mapped[str] = mapped_column(String(300))
    content: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[timestamp]
