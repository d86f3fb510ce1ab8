"""Sync jobs' schedules: the seed's interval formats, and the slots they give.

A job's slots are ``start_time + k x interval`` for k = 0, 1, ... up to ``end_time``. A
slot missed (the system was down, the job paused) is not caught up: the next run is the
next slot after now. Times are UTC; an ISO time with an offset is honoured, a naive one
is UTC.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from shared import instants

MINUTE, HOUR, DAY = 60, 3600, 86400
MIN_INTERVAL_SECONDS = MINUTE
MAX_DURATION = timedelta(days=30)

_COUNTED = re.compile(r"^(\d{1,6}) (MINUTE|MINUTES|HOUR|HOURS|DAY|DAYS)$")
_UNITS = {"MINUTE": MINUTE, "HOUR": HOUR, "DAY": DAY}
_NAMED = {"HOURLY": HOUR, "DAILY": DAY, "WEEKLY": 7 * DAY}
FORMATS = "X MINUTES, X HOURS, X DAYS (singular or plural), HOURLY, DAILY or WEEKLY"


class BadInterval(ValueError):
    pass


def interval_seconds(text: str) -> int:
    """The seconds between runs for one of the seed's formats (case and surrounding
    spaces aside); BadInterval otherwise, or below one minute, or beyond 30 days."""
    normal = " ".join(text.split()).upper()
    if normal in _NAMED:
        return _NAMED[normal]
    match = _COUNTED.match(normal)
    if match is None:
        raise BadInterval(f"invalid interval format {text!r}: use {FORMATS}")
    seconds = int(match.group(1)) * _UNITS[match.group(2).rstrip("S")]
    if seconds < MIN_INTERVAL_SECONDS:
        raise BadInterval("interval must be at least 1 minute")
    if seconds > MAX_DURATION.total_seconds():
        raise BadInterval("interval must be at most 30 days")
    return seconds


def parse_time(text: str) -> datetime:
    """An ISO 8601 time as aware UTC (naive means UTC); ValueError when it is not one,
    :class:`shared.instants.OutOfRange` (a ValueError) when no UTC datetime holds it."""
    return instants.parse_iso(text)


def first_run(start: datetime, end: datetime, every: int, now: datetime) -> datetime | None:
    """When a new (or resumed) job runs first: its start, or now when the start has
    passed (its first slot is due, not missed), or None when the window is over."""
    if now > end:
        return None
    return max(start, now)


def next_slot_after(start: datetime, end: datetime, every: int, now: datetime) -> datetime | None:
    """The first slot strictly after ``now`` (missed ones are skipped), or None when it
    would fall after ``end``."""
    if now < start:
        slot = start
    else:
        elapsed = (now - start).total_seconds()
        slot = start + timedelta(seconds=(math.floor(elapsed / every) + 1) * every)
    return slot if slot <= end else None
