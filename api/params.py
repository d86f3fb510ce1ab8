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


class WholeNumber(fields.Integer):
    """A count a JSON body gives as a number (the seeds type ``executionCount`` as
    ``number``): ``3`` and ``3.0`` are 3; ``3.5`` is refused as not whole (never
    truncated, as a lenient integer field would), and ``"3"`` or ``true`` as not a
    number. Documented as an integer: what a generated client should send."""

    default_error_messages = {"not_whole": "Must be a whole number."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> int:
        if isinstance(value, bool):  # an int to Python, not a number to JSON
            raise self.make_error("invalid", input=value)
        if isinstance(value, float):
            if not value.is_integer():  # 3.5, and inf or nan (never in a parsed body)
                raise self.make_error("not_whole", input=value)
            value = int(value)
        number: int = super()._validated(value)
        return number


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
