"""The one organisation-scoped get: another tenant's row is exactly as absent as no row."""

from __future__ import annotations

import uuid
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
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


def get_named(
    session: Session, model: type[T], organisation_id: uuid.UUID, name: str, what: str
) -> T:
    """The organisation's row of ``model`` called ``name`` (a unique name per
    organisation); NotFound otherwise, another organisation's included."""
    column = model.name  # type: ignore[attr-defined]
    row = session.scalar(
        select(model).where(model.organisation_id == organisation_id, column == name)
    )
    if row is None:
        raise NotFound(f"{what} {name!r} not found", code="NOT_FOUND")
    return row


def list_named(session: Session, model: type[T], organisation_id: uuid.UUID) -> list[T]:
    """The organisation's rows of ``model``, by name."""
    return list(
        session.scalars(
            select(model).where(model.organisation_id == organisation_id).order_by(model.name)  # type: ignore[attr-defined]
        )
    )
