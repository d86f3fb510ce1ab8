"""Knowledge-base sync: the source databases an organisation registers."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, Uuid
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
