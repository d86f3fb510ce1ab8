"""Knowledge-base sync: source databases, knowledge bases and their chunks."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, optional_timestamp, timestamp, uuid_pk


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
    # (kb_id, chunk_id) serves a KB's reads and upserts; (kb_id, row_id) finds a row's
    # chunks when it is written again.
    __table_args__ = (
        UniqueConstraint("kb_id", "chunk_id"),
        Index("ix_kb_chunks_kb_id_row_id", "kb_id", "row_id"),
    )

    id: Mapped[uuid_pk]
    kb_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("knowledge_bases.id", ondelete="CASCADE")
    )
    row_id: Mapped[str] = mapped_column(String(255))
    chunk_id: Mapped[str] = mapped_column(String(300))
    content: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[timestamp]


class SyncJobStatus:
    SCHEDULED = "scheduled"  # runs on its slots until end_time
    PAUSED = "paused"  # keeps its place; no slot runs until resumed
    COMPLETED = "completed"  # past end_time: no slot will run again


class SyncJob(Base):
    """A scheduled sync of one source table into one knowledge base (Smart DB's job).

    ``watermark`` is ``{"value": <encoded filter value>, "ids": [row keys at that value
    already written]}``: the next run reads ``filter_column >= value`` and drops the rows it
    names. It moves only when a batch commits. Its slots (``start_time`` + k x interval
    until ``end_time``) are an engine schedule (:mod:`shared.kb.scheduled_runs`).
    """

    __tablename__ = "sync_jobs"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[uuid_pk]
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    source_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("data_sources.id", ondelete="RESTRICT"), index=True
    )
    source_table: Mapped[str] = mapped_column(String(127))  # "database.table", as given
    table_name: Mapped[str] = mapped_column(String(63))
    kb_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("knowledge_bases.id", ondelete="RESTRICT"), index=True
    )
    content_columns: Mapped[list[Any]] = mapped_column(default=list)
    filter_column: Mapped[str] = mapped_column(String(63))
    interval: Mapped[str] = mapped_column(String(40))  # as given: "10 MINUTES"
    interval_seconds: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[timestamp]
    end_time: Mapped[timestamp]
    status: Mapped[str] = mapped_column(String(20), default=SyncJobStatus.SCHEDULED)
    watermark: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp]


class SyncRun(Base):
    """One run of a sync job: the Job of type ``kb_sync`` doing it, and what it did.

    One run per slot (unique): two beats that both found a slot due cannot both start it.
    ``progress`` records each committed batch (its last filter value and the keys at it),
    from which the watermark advances over the batches committed in order.
    """

    __tablename__ = "sync_runs"
    __table_args__ = (UniqueConstraint("sync_job_id", "slot_at"),)

    job_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    sync_job_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("sync_jobs.id", ondelete="CASCADE"), index=True
    )
    trigger: Mapped[str] = mapped_column(String(20))  # schedule | manual | api
    slot_at: Mapped[optional_timestamp]
    run_start: Mapped[timestamp]
    run_end: Mapped[optional_timestamp]
    status: Mapped[str] = mapped_column(String(20), default="running")
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_written: Mapped[int] = mapped_column(Integer, default=0)
    rows_without_filter_value: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    watermark_from: Mapped[dict[str, Any] | None] = mapped_column()
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
