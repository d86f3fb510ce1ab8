"""Quotas: how much work one request may create, and how much an organisation may have
unfinished at once.

Every request that creates jobs calls :func:`admit` in the transaction that writes them,
before it writes anything:

- **per request** — the executions and jobs the request would create, summed over every
  job it creates, are at most ``JOBYARD_MAX_EXECUTIONS_PER_REQUEST`` and
  ``JOBYARD_MAX_JOBS_PER_REQUEST``. Over them the request can never succeed as it is:
  :class:`~shared.errors.Unprocessable` (422) naming the figures.
- **per organisation** — its executions still pending or retrying (read from the job rows'
  counters over its unfinished jobs, an index scan of ``ix_jobs_active``, never a count of
  executions) plus the request's, and its unfinished jobs plus the request's, are at most
  ``JOBYARD_MAX_ACTIVE_EXECUTIONS_PER_ORGANISATION`` and
  ``JOBYARD_MAX_ACTIVE_JOBS_PER_ORGANISATION``. Over them the request may succeed later:
  :class:`QuotaExceeded` (429, code ``LIMIT_EXCEEDED`` where a family shows codes).

The check and the create are serialised per organisation by a transaction-scoped advisory
lock (PostgreSQL): a concurrent request of the same organisation waits for this one to
commit, then counts its jobs too, so concurrent requests cannot overshoot the cap together.
SQLite serialises writers anyway.

Scheduled runs (beat) are not requests and are not refused here: a schedule the user set up
keeps running.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass

from sqlalchemy import func, select

from shared.db import dialect_name
from shared.engine.counters import Executor
from shared.errors import DomainError, Unprocessable
from shared.models import ACTIVE_JOB_STATUSES, Job
from shared.settings import get_settings

# The first key of the two-key advisory lock space ("quot"): no other lock of ours uses
# the two-key form, and PostgreSQL keeps it apart from the one-key (bigint) locks.
QUOTA_LOCK_SPACE = 0x71756F74


class QuotaExceeded(DomainError):
    """The organisation has too much unfinished work to accept more now (retry later)."""

    http_status = 429

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message, details=details, code="LIMIT_EXCEEDED")


@dataclass(frozen=True)
class ActiveWork:
    """An organisation's unfinished work."""

    jobs: int
    executions: int


def check_request(*, jobs: int, executions: int) -> None:
    """Refuse (422) a request that would create more than one request may."""
    settings = get_settings()
    if executions > settings.max_executions_per_request:
        raise Unprocessable(
            f"This request would create {executions} executions; at most "
            f"{settings.max_executions_per_request} may be created by one request "
            "(JOBYARD_MAX_EXECUTIONS_PER_REQUEST)"
        )
    if jobs > settings.max_jobs_per_request:
        raise Unprocessable(
            f"This request would create {jobs} jobs; at most {settings.max_jobs_per_request} "
            "may be created by one request (JOBYARD_MAX_JOBS_PER_REQUEST)"
        )


def lock_organisation(connection: Executor, organisation_id: uuid.UUID) -> None:
    """Serialise the organisation's quota checks and creates until the transaction ends."""
    if dialect_name(connection) == "postgresql":
        key = zlib.crc32(organisation_id.bytes) - 2**31  # a signed int4
        connection.execute(select(func.pg_advisory_xact_lock(QUOTA_LOCK_SPACE, key)))


def active_work(connection: Executor, organisation_id: uuid.UUID) -> ActiveWork:
    """The organisation's unfinished jobs and their pending + retrying executions."""
    jobs, executions = connection.execute(
        select(func.count(), func.coalesce(func.sum(Job.pending + Job.retrying), 0)).where(
            Job.organisation_id == organisation_id, Job.status.in_(ACTIVE_JOB_STATUSES)
        )
    ).one()
    return ActiveWork(jobs=int(jobs), executions=int(executions))


def admit(connection: Executor, organisation_id: uuid.UUID, *, jobs: int, executions: int) -> None:
    """Refuse the request unless both quotas leave room for it (see the module docstring);
    call it in the transaction that writes the jobs, before writing them."""
    check_request(jobs=jobs, executions=executions)
    settings = get_settings()
    lock_organisation(connection, organisation_id)
    active = active_work(connection, organisation_id)
    if active.executions + executions > settings.max_active_executions_per_organisation:
        raise QuotaExceeded(
            f"Too much unfinished work: the organisation has {active.executions} executions "
            f"pending or retrying and this request would add {executions}; at most "
            f"{settings.max_active_executions_per_organisation} may be unfinished at once "
            "(JOBYARD_MAX_ACTIVE_EXECUTIONS_PER_ORGANISATION). Retry when jobs have finished.",
            details=[
                f"active executions: {active.executions}",
                f"requested executions: {executions}",
                f"limit: {settings.max_active_executions_per_organisation}",
            ],
        )
    if active.jobs + jobs > settings.max_active_jobs_per_organisation:
        raise QuotaExceeded(
            f"Too many unfinished jobs: the organisation has {active.jobs} jobs pending or "
            f"processing and this request would add {jobs}; at most "
            f"{settings.max_active_jobs_per_organisation} may be unfinished at once "
            "(JOBYARD_MAX_ACTIVE_JOBS_PER_ORGANISATION). Retry when jobs have finished.",
            details=[
                f"active jobs: {active.jobs}",
                f"requested jobs: {jobs}",
                f"limit: {settings.max_active_jobs_per_organisation}",
            ],
        )
