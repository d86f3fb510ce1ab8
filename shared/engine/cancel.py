"""Canceling a job: no new attempt starts, no more executions are written, counters exact."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from shared.engine import outbox, progress
from shared.engine.counters import move_counters
from shared.engine.finish import ended_failed
from shared.engine.locks import lock_job
from shared.errors import Conflict
from shared.models import (
    ACTIVE_EXECUTION_STATUSES,
    TERMINAL_JOB_STATUSES,
    Execution,
    ExecutionStatus,
    Job,
    JobStatus,
    utcnow,
)

CANCELED_ERROR = "canceled"
DEADLOCK_RETRIES = 5
DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE for a deadlock it broke

log = logging.getLogger(__name__)


def cancel_executions(session: Session, job_id: uuid.UUID) -> None:
    """Cancel a job in the caller's transaction.

    Every execution not yet finished ends failed with error ``canceled``; an attempt still
    running finds its lease gone when it finishes, and its outcome is not counted. Under
    the job's lock (the one each fan-out chunk takes), so the fan-out writes no chunk
    after this: executions it had not written yet are taken out of ``total`` rather than
    written as canceled. The transaction writes the job's ``job.finished`` event.

    Raises Conflict when the job finished on its own meanwhile.

    The cancel updates every unfinished execution of the job while workers claim and
    finish some of them, each statement locking its rows in its own order: PostgreSQL may
    find a deadlock and abort one side. When it is the cancel, its savepoint is rolled back
    (its locks go with it, so the worker goes on) and the cancel is tried again, up to
    :data:`DEADLOCK_RETRIES` times, instead of failing the caller's request.
    """
    for attempt in range(1, DEADLOCK_RETRIES + 1):
        try:
            with session.begin_nested():
                _cancel_executions(session, job_id)
            return
        except DBAPIError as error:
            if attempt == DEADLOCK_RETRIES or not _deadlocked(error):
                raise
            log.info("cancel of job %s: deadlock with a worker, tried again (%d)", job_id, attempt)


def _deadlocked(error: DBAPIError) -> bool:
    return getattr(error.orig, "sqlstate", None) == DEADLOCK_DETECTED


def _cancel_executions(session: Session, job_id: uuid.UUID) -> None:

    now = utcnow()
    lock_job(session, job_id)
    canceled = session.scalars(
        update(Execution)
        .where(Execution.job_id == job_id, Execution.status.in_(ACTIVE_EXECUTION_STATUSES))
        .values(**ended_failed(CANCELED_ERROR, now))
        .returning(Execution.id)
    ).all()
    job = session.execute(
        select(Job.status, Job.organisation_id, Job.type).where(Job.id == job_id).with_for_update()
    ).one()
    if job.status in TERMINAL_JOB_STATUSES and not canceled:
        raise Conflict(f"Job {job_id} has already finished ({job.status})")
    outbox.emit_executions_finished(session, canceled, now)
    written = session.scalar(select(func.count()).where(Execution.job_id == job_id)) or 0
    # Stamped after the update above, which waited for attempts finishing at that moment:
    # every success counted before the cancel has finished_at < canceled_at.
    now = utcnow()
    counters = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            # Counted as pending but never written: they leave the job.
            total=written,
            failed=Job.failed + Job.pending + Job.retrying - (Job.total - written),
            pending=0,
            retrying=0,
            canceled_at=now,
            status=JobStatus.CANCELED.value,
            updated_at=now,
            finished_at=now,
        )
        .returning(*progress.SNAPSHOT_COLUMNS)
    ).one()
    progress.note(session, progress.Snapshot.of(job_id, *counters))
    outbox.emit_job_finished(
        session, job_id, job.organisation_id, job.type, JobStatus.CANCELED.value, now
    )


def cancel_execution(session: Session, job_id: uuid.UUID, execution_id: uuid.UUID) -> bool:
    """Cancel one unfinished execution in the caller's transaction: it ends failed with
    error ``canceled`` and one count moves to ``failed`` (an attempt still running finds its
    lease gone when it finishes, and is not counted). False when it had already finished.

    The execution's row lock is taken before its status is read, so of a cancel and a
    finisher exactly one moves it; the job row's lock (in the counter move) orders this
    with the other finishers of the job, as they do among themselves.
    """
    status = session.scalar(
        select(Execution.status)
        .where(Execution.id == execution_id, Execution.job_id == job_id)
        .with_for_update()
    )
    if status not in ACTIVE_EXECUTION_STATUSES:
        return False
    now = utcnow()
    session.execute(
        update(Execution)
        .where(Execution.id == execution_id)
        .values(**ended_failed(CANCELED_ERROR, now))
    )
    outbox.emit_executions_finished(session, [execution_id], now)
    move_counters(session, job_id, {(status, ExecutionStatus.FAILED.value): 1}, now)
    return True
