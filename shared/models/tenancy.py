"""Who is calling: organisations, their users and their API keys."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models.base import Base, optional_timestamp, short_text, timestamp, uuid_pk


class Organisation(Base):
    """A tenant: every project, job and key belongs to exactly one organisation."""

    __tablename__ = "organisations"

    id: Mapped[uuid_pk]
    name: Mapped[short_text]
    created_at: Mapped[timestamp]


class User(Base):
    """A person who can sign in (with a JWT) to the organisations they are a member of."""

    __tablename__ = "users"

    id: Mapped[uuid_pk]
    email: Mapped[str] = mapped_column(String(320), unique=True)
    first_name: Mapped[str] = mapped_column(String(120), default="")
    last_name: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[timestamp]


class Membership(Base):
    """A user's membership of an organisation."""

    __tablename__ = "memberships"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(20), default="member")
    created_at: Mapped[timestamp]


class ApiKey(Base):
    """An organisation-scoped API key; only its SHA-256 hash is stored."""

    __tablename__ = "api_keys"

    id: Mapped[uuid_pk]
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[short_text]
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[timestamp]
    revoked_at: Mapped[optional_timestamp]

    created_by: Mapped[User | None] = relationship(lazy="joined")
