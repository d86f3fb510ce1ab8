"""Moving executions between a job's counters, in the caller's transaction.

Every change of an execution's status moves exactly one count from one counter to another
in the same transaction, and the job's status is derived from the new counters in the same
UPDATE, so ``total = pending + retrying + success + failed`` holds at every commit. The
move that makes a job terminal writes its ``job.finished`` event (see :mod:`outbox`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, Uuid, bindparam, case, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from shared.engine import outbox, progress
from shared.engine.status import JOBS, status_expression
from shared.models import TERMINAL_JOB_STATUSES, ExecutionStatus
from shared.models.base import UTCDateTime

# The hot path runs on a plain Connection in the worker, the rest on an ORM Session; both
# execute Core statements alike.
Executor = Session | Connection

Moves = Mapping[tuple[str, str], int]  # {(from status, to status): count}


def _delta(name: str) -> Any:
    return bindparam(f"d_{name}", type_=Integer)


def _build_move_counters() -> Any:
    # Built once: the hot path binds parameters instead of compiling SQL each time.
    pending = JOBS.c.pending + _delta("pending")
    success = JOBS.c.success + _delta("success")
    failed = JOBS.c.failed + _delta("failed")
    now = bindparam("now", type_=UTCDateTime())
    return (
        update(JOBS)
        .where(JOBS.c.id == bindparam("job_id", type_=Uuid()))
        .values(
            pending=pending,
            retrying=JOBS.c.retrying + _delta("retrying"),
            success=success,
            failed=failed,
            cost=JOBS.c.cost + bindparam("d_cost", type_=Float),
            status=status_expression(pending, success, failed),
            updated_at=now,
            finished_at=case((success + failed == JOBS.c.total, now), else_=None),
        )
        .returning(
            JOBS.c.organisation_id,
            JOBS.c.type,
            JOBS.c.status,
            JOBS.c.total,
            JOBS.c.pending,
            JOBS.c.retrying,
            JOBS.c.success,
            JOBS.c.failed,
        )
    )


MOVE_COUNTERS = _build_move_counters()


def move_counters(
    connection: Executor, job_id: uuid.UUID, moves: Moves, now: datetime, cost: float = 0.0
) -> str | None:
    """Apply ``moves`` (and add ``cost``) to the job's counters; re-derive its status.

    Returns the job's new status when this move made it terminal (and then writes its
    ``job.finished`` event), else None. Only a move into success or failed can end a job,
    and the job row's lock serialises finishers, so exactly one transaction sees the
    transition: the one whose counts completed it. The job's new counters are noted for
    the live progress streams (:mod:`progress`), published after the commit.
    """
    delta = {s.value: 0 for s in ExecutionStatus}
    for (source, target), count in moves.items():
        delta[source] -= count
        delta[target] += count
    if not any(delta.values()) and not cost:
        return None
    params = {f"d_{name}": value for name, value in delta.items()}
    row = connection.execute(
        MOVE_COUNTERS, {"job_id": job_id, "now": now, "d_cost": cost, **params}
    ).one_or_none()
    if row is None:
        return None
    organisation_id, job_type, status, *counts = row
    # Published once the caller's transaction commits: the live progress streams.
    progress.note(connection, progress.Snapshot.of(job_id, status, *counts))
    ended = delta[ExecutionStatus.SUCCESS.value] + delta[ExecutionStatus.FAILED.value] > 0
    if status in TERMINAL_JOB_STATUSES and ended:
        outbox.emit_job_finished(connection, job_id, organisation_id, job_type, status, now)
        return str(status)
    return None
