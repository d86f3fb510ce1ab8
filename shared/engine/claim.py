"""Claiming a group: one guarded UPDATE leases every claimable execution among its ids.

The guard: the row is pending or retrying, its lease is free (or expired), its retry time
has come, and its attempts are under the job's budget. Rows not returned are duplicates or
stale messages (another attempt holds them, or they are finished): they are dropped.
Delivery is at least once; counting is exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from sqlalchemy import Table, Uuid, any_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql

from shared.db import dialect_name
from shared.engine.counters import Executor
from shared.metrics import CLAIM_BATCH_SIZE
from shared.models import ACTIVE_EXECUTION_STATUSES, Execution, Job, utcnow
from shared.models.base import UTCDateTime
from shared.settings import get_settings

EXECUTIONS: Table = Execution.__table__  # type: ignore[assignment]
JOBS: Table = Job.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Claim:
    """An execution leased to one attempt; only the holder of ``lease_token`` may finish it."""

    execution_id: uuid.UUID
    job_id: uuid.UUID
    job_type: str
    lease_token: uuid.UUID
    status: str  # the status at claim time (pending or retrying)
    attempt: int
    max_attempts: int
    item: dict[str, Any]
    organisation_id: uuid.UUID | None = None  # the job's (for log lines)


def _ids_match(dialect: str) -> Any:
    if dialect == "postgresql":  # one array parameter: one plan, whatever the group size
        return EXECUTIONS.c.id == any_(bindparam("ids", type_=postgresql.ARRAY(Uuid())))
    return EXECUTIONS.c.id.in_(bindparam("ids", expanding=True))


@cache
def _claim_statement(dialect: str) -> Any:
    now = bindparam("now", type_=UTCDateTime())
    job_of_row = JOBS.c.id == EXECUTIONS.c.job_id
    max_attempts = select(JOBS.c.max_attempts).where(job_of_row).scalar_subquery()
    job_type = select(JOBS.c.type).where(job_of_row).scalar_subquery()
    organisation = select(JOBS.c.organisation_id).where(job_of_row).scalar_subquery()
    return (
        update(EXECUTIONS)
        .where(
            _ids_match(dialect),
            EXECUTIONS.c.status.in_(ACTIVE_EXECUTION_STATUSES),
            or_(EXECUTIONS.c.lease_expires_at.is_(None), EXECUTIONS.c.lease_expires_at < now),
            or_(EXECUTIONS.c.next_attempt_at.is_(None), EXECUTIONS.c.next_attempt_at <= now),
            EXECUTIONS.c.attempts < max_attempts,
        )
        .values(
            attempts=EXECUTIONS.c.attempts + 1,
            lease_token=bindparam("token", type_=Uuid()),
            lease_owner=bindparam("owner"),
            lease_expires_at=bindparam("lease_until", type_=UTCDateTime()),
            # A leased row is in a worker's hands: never "ready" for dispatch again.
            dispatched_at=func.coalesce(EXECUTIONS.c.dispatched_at, now),
            started_at=func.coalesce(EXECUTIONS.c.started_at, now),
            updated_at=now,
        )
        .returning(
            EXECUTIONS.c.id,
            EXECUTIONS.c.job_id,
            job_type,
            EXECUTIONS.c.status,
            EXECUTIONS.c.attempts,
            max_attempts,
            EXECUTIONS.c.item,
            organisation,
        )
    )


def claim_group(connection: Executor, ids: Sequence[uuid.UUID], owner: str) -> list[Claim]:
    """Lease every claimable execution among ``ids`` to ``owner`` for one attempt each.

    One statement; the lease lasts ``JOBYARD_LEASE_SECONDS`` at most (the owner's heartbeat
    keeps it: when the heartbeat stops, the recovery sweep releases it sooner).
    """
    if not ids:
        return []
    now = utcnow()
    token = uuid.uuid4()
    rows = connection.execute(
        _claim_statement(dialect_name(connection)),
        {
            "ids": list(ids),
            "now": now,
            "token": token,
            "owner": owner,
            "lease_until": now + timedelta(seconds=get_settings().lease_seconds),
        },
    ).all()
    CLAIM_BATCH_SIZE.observe(len(rows))
    return [
        Claim(
            execution_id=row[0],
            job_id=row[1],
            job_type=row[2],
            lease_token=token,
            status=row[3],
            attempt=row[4],
            max_attempts=row[5],
            item=dict(row[6] or {}),
            organisation_id=row[7],
        )
        for row in rows
    ]


def seconds_until_due(connection: Executor, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, float]:
    """Among unclaimed ``ids``: those whose message came before their retry time, with the
    seconds still to wait (the message is published again for that long)."""
    if not ids:
        return {}
    now = utcnow()
    rows = connection.execute(
        select(Execution.id, Execution.next_attempt_at).where(
            Execution.id.in_(list(ids)),
            Execution.status.in_(ACTIVE_EXECUTION_STATUSES),
            Execution.lease_token.is_(None),
            Execution.next_attempt_at > now,
        )
    ).all()
    return {row[0]: (row[1] - now).total_seconds() for row in rows if row[1] is not None}
