"""Instants a client sends: the ends of datetime's range, exactly, and OutOfRange beyond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.instants import (
    MAX_UNIX_MS,
    MIN_UNIX_MS,
    OutOfRange,
    as_utc,
    from_unix_ms,
    parse_iso,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-19T18:00:00", datetime(2026, 6, 19, 18, tzinfo=UTC)),
        ("2026-06-19T18:00:00Z", datetime(2026, 6, 19, 18, tzinfo=UTC)),
        ("2026-06-19T20:00:00+02:00", datetime(2026, 6, 19, 18, tzinfo=UTC)),
        ("0001-01-01T00:00:00-01:00", datetime(1, 1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59+23:59", datetime(9999, 12, 31, 0, 0, 59, tzinfo=UTC)),
        (" 9999-12-31T23:59:59.999999z ", datetime.max.replace(tzinfo=UTC)),
    ],
)
def test_iso_times_are_aware_utc(text: str, expected: datetime) -> None:
    value = parse_iso(text)
    assert value == expected and value.tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-01:00"]
)
def test_iso_times_beyond_the_range_once_in_utc_are_out_of_range(text: str) -> None:
    """Python raises OverflowError converting these, which is not a ValueError."""
    with pytest.raises(OutOfRange, match="out of range in UTC"):
        parse_iso(text)


@pytest.mark.parametrize("text", ["0000-01-01T00:00:00", "10000-01-01T00:00:00", "soon"])
def test_not_iso_times_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso(text)


def test_as_utc_takes_naive_as_utc_and_refuses_overflow() -> None:
    assert as_utc(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    west = timezone(-timedelta(hours=1))
    with pytest.raises(OutOfRange):
        as_utc(datetime(9999, 12, 31, 23, 30, tzinfo=west))


def test_unix_milliseconds_are_exact_to_both_ends() -> None:
    """Through a float, the last millisecond was 23:59:59.998993."""
    assert from_unix_ms(MAX_UNIX_MS) == datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    assert from_unix_ms(MIN_UNIX_MS) == datetime(1, 1, 1, tzinfo=UTC)
    assert from_unix_ms(1_781_892_000_123) == datetime(2026, 6, 19, 18, 0, 0, 123_000, tzinfo=UTC)
    assert MAX_UNIX_MS == 253_402_300_799_999


@pytest.mark.parametrize("ms", [MAX_UNIX_MS + 1, MIN_UNIX_MS - 1, 10**30, -(10**30)])
def test_unix_milliseconds_beyond_the_range_are_out_of_range(ms: int) -> None:
    with pytest.raises(OutOfRange):
        from_unix_ms(ms)
