"""The one organisation-scoped get: another tenant's row is exactly as absent as no row."""

from __future__ import annotations

import uuid
from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session

from shared.errors import NotFound


class OrganisationOwned(Protocol):
    organisation_id: Any


T = TypeVar("T", bound=OrganisationOwned)


def get_owned(
    session: Session, model: type[T], row_id: uuid.UUID, organisation_id: uuid.UUID, what: str
) -> T:
    """The row of ``model`` with ``row_id`` if it belongs to ``organisation_id``; else
    NotFound ("<what> <id> not found"), also for another organisation's row (never 403)."""
    row = session.get(model, row_id)
    if row is None or row.organisation_id != organisation_id:
        raise NotFound(f"{what} {row_id} not found")
    return row
