"""The batches' own table: what a super.AI batch has that other jobs do not."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base


class Batch(Base):
    """A batch job's app (a project) and callback URL, keyed by the job. An app's batches
    are listed through ``app_id``'s index."""

    __tablename__ = "batches"

    job_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    app_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    callback_url: Mapped[str | None] = mapped_column(String(2048))
