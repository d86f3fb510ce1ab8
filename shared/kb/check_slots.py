"""Connection checks are bounded per organisation, across every API process.

A connection check (POST /databases, and the table check of a new sync job) holds a
request thread while a tenant's server answers, up to ``JOBYARD_SOURCE_CHECK_SECONDS``.
So an organisation may run at most ``JOBYARD_SOURCE_CHECKS_PER_ORGANISATION`` checks at
once, counted in Redis (:class:`~shared.semaphore.RedisSemaphore`) so that the bound holds
across every API process and replica: one tenant can never take every request thread.
Beyond the bound a check is refused at once, before it connects or changes anything
(:class:`TooManyChecks`, 429 with Retry-After). When Redis cannot count them, checks are
refused too (:class:`ChecksUncounted`, 503): an uncounted check would be unbounded.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import redis

from shared.errors import DomainError
from shared.semaphore import RedisSemaphore
from shared.settings import get_settings

KEY_PREFIX = "jobyard:source-checks"


class CheckRefused(DomainError):
    """A connection check that did not start; the same request may succeed later."""

    def __init__(self, message: str, *, retry_after_seconds: int, code: str) -> None:
        super().__init__(message, details=[message], code=code)
        self.retry_after = retry_after_seconds


class TooManyChecks(CheckRefused):
    """The organisation already runs as many connection checks as it may."""

    http_status = 429


class ChecksUncounted(CheckRefused):
    """Redis, which counts the checks, does not answer."""

    http_status = 503


@lru_cache(maxsize=4)
def _client(redis_url: str) -> redis.Redis:
    # Short timeouts: this is on a request's path, and a check is refused without Redis.
    return redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)


def _semaphore(organisation_id: uuid.UUID) -> RedisSemaphore:
    settings = get_settings()
    # A hold outlives the longest check (connecting is within it), so a slot is only
    # given back early by a process that died, and then within this lease.
    lease = settings.source_check_seconds * 2 + 5
    return RedisSemaphore(
        _client(settings.redis_url),
        f"{KEY_PREFIX}:{organisation_id}",
        settings.source_checks_per_organisation,
        lease,
    )


@contextmanager
def check_slot(organisation_id: uuid.UUID) -> Iterator[None]:
    """Hold one of the organisation's check slots for the block (TooManyChecks, or
    ChecksUncounted, at once otherwise)."""
    settings = get_settings()
    retry_after = max(1, math.ceil(settings.source_check_seconds))
    semaphore = _semaphore(organisation_id)
    try:
        token = semaphore.try_acquire()
    except redis.RedisError as exc:
        raise ChecksUncounted(
            "Connection checks cannot be counted now (Redis does not answer): retry later",
            retry_after_seconds=retry_after,
            code="SERVICE_UNAVAILABLE",
        ) from exc
    if token is None:
        limit = settings.source_checks_per_organisation
        raise TooManyChecks(
            f"Too many connection checks at once: this organisation runs {limit} already, "
            f"and at most {limit} may run at once (JOBYARD_SOURCE_CHECKS_PER_ORGANISATION). "
            f"Retry in {retry_after} s.",
            retry_after_seconds=retry_after,
            code="LIMIT_EXCEEDED",
        )
    try:
        yield
    finally:
        with contextlib.suppress(redis.RedisError):  # else the hold expires with its lease
            semaphore.release(token)
