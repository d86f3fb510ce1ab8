"""Instants a client sends (ISO 8601 texts, Unix milliseconds) as aware UTC datetimes.

Every date or time a request carries is read here: the API's fields
(:class:`api.params.UtcDateTime`, :class:`api.params.UnixMillis`), Smart DB's schedule
(:func:`shared.kb.schedule.parse_time`) and the list cursors (:mod:`shared.paging`).
Python's ``datetime`` holds years 1 to 9999 only, and an ISO time within them may fall
outside them once converted to UTC (``9999-12-31T23:59:59-23:59`` is in year 10000 in
UTC, ``0001-01-01T00:00:00+01:00`` in year 0): the conversion raises OverflowError, which
a caller that expects ValueError lets through (a 500). Here every instant out of range is
an :class:`OutOfRange` (a ValueError) with a message a client can act on, which each
caller answers with a 400 naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)
RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"
# The Unix milliseconds of EARLIEST and of the last millisecond before LATEST's end.
MIN_UNIX_MS = (EARLIEST - EPOCH) // timedelta(milliseconds=1)
MAX_UNIX_MS = (LATEST - EPOCH) // timedelta(milliseconds=1)


class OutOfRange(ValueError):
    """An instant that no aware UTC datetime can hold."""


def as_utc(value: datetime) -> datetime:
    """``value`` as aware UTC (a naive one is UTC already); OutOfRange when its UTC
    instant falls outside years 1 to 9999."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise OutOfRange(f"{value.isoformat()} is out of range in UTC (from {RANGE})") from None


def parse_iso(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; naive means UTC) as aware UTC; ValueError
    when it is not one (or its year is 0 or 10000), OutOfRange (a ValueError) when its
    UTC instant is out of range."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return as_utc(value)


def from_unix_ms(ms: int) -> datetime:
    """Unix milliseconds as aware UTC, exactly (no float on the way); OutOfRange beyond
    :data:`MIN_UNIX_MS` .. :data:`MAX_UNIX_MS`."""
    if not MIN_UNIX_MS <= ms <= MAX_UNIX_MS:
        raise OutOfRange(f"{ms} is out of range (Unix milliseconds {MIN_UNIX_MS} to {MAX_UNIX_MS})")
    return EPOCH + timedelta(milliseconds=ms)
