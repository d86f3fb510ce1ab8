"""Request parameters every family reads the same way."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from marshmallow import fields

from shared import instants
from shared.errors import NotFound


def path_uuid(raw: str, what: str) -> uuid.UUID:
    """A path id; an id that is not a UUID cannot exist, so it is a 404."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"{what} {raw} not found") from None


class UtcDateTime(fields.AwareDateTime):
    """An ISO 8601 time (naive means UTC), loaded as aware UTC: one whose UTC instant
    no datetime holds (``9999-12-31T23:59:59-23:59``) is a validation error of the field,
    not an OverflowError in the query that uses it (:mod:`shared.instants`)."""

    default_error_messages = {
        "out_of_range": f"Out of range: must be from {instants.RANGE} once in UTC."
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(default_timezone=UTC, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        try:
            return instants.as_utc(super()._deserialize(value, attr, data, **kwargs))
        except instants.OutOfRange:
            raise self.make_error("out_of_range") from None
