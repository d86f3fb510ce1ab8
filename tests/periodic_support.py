"""Test helpers for the engine's periodic schedules: read an owner's next slot, or move
it (into the past, to make a slot due rather than sleeping to it)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select

from shared.db import session_scope
from shared.engine import periodic
from shared.models import PeriodicSchedule


def next_slot(kind: str, owner_id: uuid.UUID) -> datetime | None:
    with session_scope() as session:
        return periodic.next_slot_at(session, kind=kind, owner_id=owner_id)


def set_next_slot(
    kind: str,
    owner_id: uuid.UUID,
    at: datetime | None,
    organisation_id: uuid.UUID | None = None,
) -> datetime | None:
    """Set the owner's next slot (its organisation is needed only when it has no schedule
    row yet); returns the slot as the database stored it."""
    with session_scope() as session:
        if organisation_id is None:
            organisation_id = session.scalar(
                select(PeriodicSchedule.organisation_id).where(
                    PeriodicSchedule.kind == kind, PeriodicSchedule.owner_id == owner_id
                )
            )
        if organisation_id is None:
            assert at is None, "no schedule row to move: give its organisation"
        else:
            periodic.schedule(
                session, kind=kind, owner_id=owner_id, organisation_id=organisation_id, at=at
            )
    return next_slot(kind, owner_id)
