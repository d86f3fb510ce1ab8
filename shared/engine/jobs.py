"""Accepting jobs, reading them back and canceling them: the same for every job type.

Accepting follows the lifecycle's first step: the job is written and committed, and only
then is its fan-out published (:func:`dispatch_after_commit` registers that with the unit
of work that writes the job). When publishing fails the job is still accepted; its
``dispatched_at`` is cleared so the recovery sweep publishes it once the broker is back.
An accepted request is never lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import logs, metrics, tracing
from shared.db import UnitOfWork, session_scope
from shared.engine import dispatch
from shared.engine.cancel import cancel_execution, cancel_executions
from shared.errors import Conflict, NotFound
from shared.messaging import publisher
from shared.models import (
    TERMINAL_JOB_STATUSES,
    Execution,
    ExecutionStatus,
    Job,
    JobStatus,
    utcnow,
)
from shared.paging import KeysetPage, Page, keyset_page, paginate
from shared.scoping import get_owned
from shared.settings import get_settings


def new_job(
    *,
    organisation_id: uuid.UUID,
    job_type: str,
    total: int,
    payload: dict[str, Any],
    created_by_user_id: uuid.UUID | None = None,
    metadata: dict[str, Any] | list[Any] | None = None,
    tags: list[Any] | None = None,
    parked: bool = False,
) -> Job:
    """A Job with its counters set (every execution pending) and the attempt budget of
    today's settings; the caller adds it to its session and dispatches it after commit."""
    return Job(
        organisation_id=organisation_id,
        type=job_type,
        status=JobStatus.PENDING.value,
        total=total,
        pending=total,
        retrying=0,
        success=0,
        failed=0,
        cost=0.0,
        max_attempts=get_settings().max_attempts,
        created_by_user_id=created_by_user_id,
        payload=payload,
        metadata_=metadata if metadata is not None else {},
        tags=tags or [],
        parked=parked,
        dispatched_at=None if parked else utcnow(),
        traceparent=tracing.current_traceparent(),  # the creating request's (or task's)
    )


def dispatch_jobs(job_ids: list[uuid.UUID]) -> int:
    """Publish committed jobs' fan-outs (one broker connection for all of them); those
    that could not be published are left to the recovery sweep. Returns how many went.

    It runs after the commit that wrote the jobs (:func:`dispatch_after_commit`), so the
    mark it clears for the sweep is a transaction of its own."""
    unpublished = publisher.publish_fan_outs(job_ids)
    if unpublished:
        with session_scope() as session:
            session.execute(update(Job).where(Job.id.in_(unpublished)).values(dispatched_at=None))
    return len(job_ids) - len(unpublished)


def dispatch_after_commit(
    work: UnitOfWork, job_ids: list[uuid.UUID], on_published: Callable[[int], object] | None = None
) -> None:
    """Publish the jobs' fan-outs once ``work`` has committed (``on_published`` is told
    how many went)."""

    def publish() -> None:
        metrics.JOBS_ACCEPTED.labels(metrics.current_family.get()).inc(len(job_ids))
        published = dispatch_jobs(job_ids)
        if on_published is not None:
            on_published(published)

    logs.note_jobs(job_ids)  # the request's (or task's) log lines name the jobs it created
    if job_ids:
        work.after_commit(publish)


def record_preparation(
    session: Session, job_id: uuid.UUID, prepared: dict[str, Any], total: int
) -> bool:
    """A preparer's result, written once: the job's payload gains ``prepared`` and its
    count becomes ``total`` executions (every one pending), in the caller's transaction.

    A job whose items are fetched first is accepted counting one placeholder execution;
    its preparer runs before the fan-out, maybe twice (a fan-out taken over, a duplicate
    message). Only the first result counts: nothing is written when the job is gone,
    canceled, or already holds the prepared keys, and the counters move only from the
    placeholder's 1/1, so ``total = pending + ...`` holds whatever raced. Returns whether
    it was written."""
    job = session.get(Job, job_id, with_for_update={"of": Job})
    if job is None or job.canceled_at is not None or prepared.keys() & job.payload.keys():
        return False
    moved = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.total == 1, Job.pending == 1)
        .values(payload={**job.payload, **prepared}, total=total, pending=total)
    )
    return bool(getattr(moved, "rowcount", 0))


def get_job(
    session: Session, organisation_id: uuid.UUID, job_id: uuid.UUID, job_type: str | None = None
) -> Job:
    """The organisation's job, or NotFound (also for another tenant's, and for a job of
    another type than ``job_type`` when one is given: an API family that serves one job
    type does not know the others)."""
    job = get_owned(session, Job, job_id, organisation_id, "Job")
    if job_type is not None and job.type != job_type:
        raise NotFound(f"Job {job_id} not found")
    return job


def cancel_job(
    work: UnitOfWork, organisation_id: uuid.UUID, job_id: uuid.UUID, job_type: str | None = None
) -> Job:
    """Cancel the organisation's job (of ``job_type``, when given): no new attempt
    starts, no more executions are written, and every unfinished one ends failed with
    error ``canceled``. Canceling a canceled job changes nothing; a finished job cannot
    be canceled (Conflict). Returns the job as the cancel left it."""
    job = get_job(work.session, organisation_id, job_id, job_type)
    if job.canceled_at is None:
        if job.status in TERMINAL_JOB_STATUSES:
            raise Conflict(f"Job {job_id} has already finished ({job.status})")
        cancel_executions(work.session, job.id)
        work.session.refresh(job)
        work.after_commit(publisher.publish_outbox_drain)  # its job.finished event
    return job


def get_execution(
    session: Session,
    organisation_id: uuid.UUID,
    execution_id: uuid.UUID,
    what: str,
    job_type: str | None = None,
) -> Execution:
    """The organisation's execution (of a job of ``job_type``, when given), or NotFound."""
    row = session.execute(
        select(Execution, Job.organisation_id, Job.type)
        .join(Job, Job.id == Execution.job_id)
        .where(Execution.id == execution_id)
    ).one_or_none()
    if row is None or row[1] != organisation_id or job_type not in (None, row[2]):
        raise NotFound(f"{what} {execution_id} not found")
    execution: Execution = row[0]
    return execution


def list_executions(
    session: Session,
    organisation_id: uuid.UUID,
    job_id: uuid.UUID,
    *,
    limit: int,
    page: int,
    job_type: str | None = None,
) -> Page:
    """A job's executions in plan order, one page (of a job of ``job_type``, when given)."""
    job = get_job(session, organisation_id, job_id, job_type)
    stmt = select(Execution).where(Execution.job_id == job.id).order_by(Execution.seq)
    return paginate(session, stmt, limit, page)


# Sortable job fields, by their public names.
JOB_SORTS = {"createdAt": Job.created_at, "updatedAt": Job.updated_at, "status": Job.status}


def browse_jobs(
    session: Session,
    organisation_id: uuid.UUID,
    *,
    job_types: list[str] | None = None,
    status: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    sort: str = "createdAt",
    descending: bool = True,
    cursor: str | None = None,
    limit: int,
    parameter: str = "lastEvaluatedKey",
) -> KeysetPage:
    """The organisation's jobs of every type, filtered, in cursor pages that neither skip
    nor repeat a job while new ones are created (``parameter``: the cursor's name, as an
    error about it says)."""
    stmt = select(Job).where(Job.organisation_id == organisation_id)
    if job_types is not None:
        stmt = stmt.where(Job.type.in_(job_types))
    if status:
        stmt = stmt.where(Job.status == status)
    if created_from is not None:
        stmt = stmt.where(Job.created_at >= created_from)
    if created_to is not None:
        stmt = stmt.where(Job.created_at <= created_to)
    return keyset_page(
        session,
        stmt,
        sort=sort,
        column=JOB_SORTS[sort],
        id_column=Job.id,
        descending=descending,
        cursor=cursor,
        limit=limit,
        parameter=parameter,
    )


def cancel_one(
    work: UnitOfWork, organisation_id: uuid.UUID, execution_id: uuid.UUID, what: str
) -> Execution:
    """Cancel the organisation's unfinished execution (Conflict when it has finished);
    the execution as the cancel left it."""
    execution = get_execution(work.session, organisation_id, execution_id, what)
    if not cancel_execution(work.session, execution.job_id, execution.id):
        raise Conflict(f"{what} {execution_id} has already finished ({execution.status})")
    work.session.refresh(execution)
    work.after_commit(publisher.publish_outbox_drain)  # a job.finished event, if any
    return execution


def queue_parked(
    work: UnitOfWork, organisation_id: uuid.UUID, execution_id: uuid.UUID, what: str
) -> Execution:
    """Release a parked execution to be handed out (Conflict when it is not parked or has
    finished); dispatch hands it out after the commit."""
    execution = get_execution(work.session, organisation_id, execution_id, what)
    queued = work.session.execute(
        update(Execution)
        .where(
            Execution.id == execution.id,
            Execution.parked.is_(True),
            Execution.status == ExecutionStatus.PENDING.value,
        )
        .values(parked=False, updated_at=utcnow())
    )
    if not queued.rowcount:  # type: ignore[attr-defined]
        raise Conflict(f"{what} {execution_id} is not parked ({execution.status})")
    work.session.refresh(execution)
    work.after_commit(dispatch.fill)
    return execution
