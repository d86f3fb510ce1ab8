"""Batches (super.AI-compatible): a batch is a Job of type ``batch`` in an app (a project),
and each input is one Execution — a data point.

A batch is accepted at once: with ``inputs`` its data points (the first
``JOBYARD_EXECUTIONS_WRITTEN_AT_ACCEPT``, 1,000 by default; the fan-out writes the rest)
are written in the transaction that accepts it, in bulk as a fan-out writes them, so the
uuid a create returns can be read and canceled the moment it answers; with
``inputsFileUrl`` it counts one placeholder until the worker's fan-out has fetched the
file (the type's preparer), which sets the real count in one update — or fails the batch
with the reason.
The app's processor is copied onto the batch when it is accepted, so a later change of
the app never alters a batch in flight.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select, true
from sqlalchemy.orm import Session

from shared.accounts.auth import Principal
from shared.batches.inputs import fetch_inputs
from shared.batches.models import Batch
from shared.batches.processor import Processor, check
from shared.db import UnitOfWork, session_scope
from shared.engine import quotas
from shared.engine.cancel import CANCELED_ERROR
from shared.engine.fanout import execution_id_for, fan_out_at_accept
from shared.engine.job_types import PlannedItem
from shared.engine.jobs import (
    cancel_one,
    dispatch_after_commit,
    new_job,
    queue_parked,
    record_preparation,
)
from shared.engine.retry import retry_failed
from shared.errors import Conflict, NotFound
from shared.mentionlab.models import Project
from shared.models import Execution, ExecutionStatus, Job, JobStatus, utcnow
from shared.netguard import check_syntax
from shared.paging import Page, paginate
from shared.scoping import get_owned
from shared.webhooks.messages import (
    MessageLog,
    MessageLogPage,
    failed_since,
    get_message,
    message_log,
    resend,
    resend_one,
)

BATCH = "batch"  # the job type (shared.batches.job_type)


class DataPointState(StrEnum):
    PENDING = "PENDING"  # parked: waits until queued
    SCHEDULED = "SCHEDULED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


FINISHED_STATES = (DataPointState.COMPLETED, DataPointState.FAILED, DataPointState.CANCELED)


class BatchState(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    PARTIAL_FAILURE = "PARTIAL_FAILURE"
    CANCELED = "CANCELED"


def data_point_state(execution: Execution) -> DataPointState:
    if execution.status == ExecutionStatus.SUCCESS.value:
        return DataPointState.COMPLETED
    if execution.status == ExecutionStatus.FAILED.value:
        if execution.error == CANCELED_ERROR:
            return DataPointState.CANCELED
        return DataPointState.FAILED
    if execution.status == ExecutionStatus.RETRYING.value or execution.lease_token is not None:
        return DataPointState.IN_PROGRESS
    return DataPointState.PENDING if execution.parked else DataPointState.SCHEDULED


def _state_condition(state: DataPointState) -> ColumnElement[bool]:
    """SQL for "the data point is in ``state``" (as :func:`data_point_state` decides)."""
    status, pending = Execution.status, ExecutionStatus.PENDING.value
    return {
        DataPointState.PENDING: and_(status == pending, Execution.parked == true()),
        DataPointState.SCHEDULED: and_(
            status == pending, Execution.parked == false(), Execution.lease_token.is_(None)
        ),
        DataPointState.IN_PROGRESS: or_(
            status == ExecutionStatus.RETRYING.value,
            and_(status == pending, Execution.lease_token.is_not(None)),
        ),
        DataPointState.COMPLETED: status == ExecutionStatus.SUCCESS.value,
        DataPointState.FAILED: and_(
            status == ExecutionStatus.FAILED.value,
            or_(Execution.error.is_(None), Execution.error != CANCELED_ERROR),
        ),
        DataPointState.CANCELED: and_(
            status == ExecutionStatus.FAILED.value, Execution.error == CANCELED_ERROR
        ),
    }[state]


def batch_state(job: Job) -> BatchState:
    return {
        JobStatus.COMPLETED.value: BatchState.COMPLETED,
        JobStatus.FAILED.value: BatchState.FAILED,
        JobStatus.PARTIAL_FAILED.value: BatchState.PARTIAL_FAILURE,
        JobStatus.CANCELED.value: BatchState.CANCELED,
    }.get(job.status, BatchState.IN_PROGRESS)


# -- apps -------------------------------------------------------------------------------


def get_app(session: Session, principal: Principal, app_id: uuid.UUID) -> Project:
    """The caller's app (project), or NotFound."""
    return get_owned(session, Project, app_id, principal.organisation_id, "App")


def set_processor(
    session: Session, principal: Principal, app_id: uuid.UUID, processor: Processor
) -> Processor:
    app = get_app(session, principal, app_id)
    app.processor = check(processor).as_json()
    return processor


# -- accepting ----------------------------------------------------------------------------


def create_batch(
    work: UnitOfWork,
    principal: Principal,
    app_id: uuid.UUID,
    *,
    inputs: list[dict[str, Any]] | None,
    inputs_file_url: str | None,
    callback_url: str | None,
    metadata: dict[str, Any] | list[Any],
    tags: list[str],
    parked: bool,
) -> tuple[Job, uuid.UUID | None]:
    """Accept a batch in the caller's unit of work; its fan-out is published after the
    commit. Returns the batch and, for a single input, its data point's id."""
    if inputs_file_url is not None:
        check_syntax(inputs_file_url)
    if callback_url is not None:
        check_syntax(callback_url)
    app = get_app(work.session, principal, app_id)
    # A file counts as one execution until the worker reads it; its inputs are held to
    # what one request may create then (inputs.check_inputs).
    quotas.admit(
        work.session,
        principal.organisation_id,
        jobs=1,
        executions=len(inputs) if inputs is not None else 1,
    )
    payload: dict[str, Any] = {
        "parked": parked,
        "processor": Processor.from_json(app.processor).as_json(),
    }
    if inputs is not None:
        payload["inputs"] = inputs
    else:
        payload["inputsFileUrl"] = inputs_file_url
    job = new_job(
        organisation_id=principal.organisation_id,
        job_type=BATCH,
        total=len(inputs) if inputs is not None else 1,  # the file, until it is read
        payload=payload,
        created_by_user_id=principal.user_id,
        metadata=metadata,
        tags=tags,
    )
    work.session.add(job)
    work.session.flush()
    row = Batch(job_id=job.id, app_id=app.id, callback_url=callback_url)
    work.session.add(row)
    if inputs is not None:
        # Its data points exist when the create answers: a client reads (or cancels)
        # the uuid it was given at once, not after a worker has fanned the batch out.
        fan_out_at_accept(work.session.connection(), job.id, plan_batch(work.session, job))
    work.session.refresh(job)
    job.batch_row = row  # type: ignore[attr-defined]  # for its answer (see with_batch_rows)
    dispatch_after_commit(work, [job.id])
    single = execution_id_for(job.id, "0") if inputs is not None and len(inputs) == 1 else None
    return job, single


def load_input_file(job_id: uuid.UUID) -> None:
    """The batch type's preparer: fetch the inputs file (if the batch has one and it has
    not been read yet) and set the batch's real count, in one guarded update."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or "inputs" in job.payload or not job.payload.get("inputsFileUrl"):
            return
        url = str(job.payload["inputsFileUrl"])
    inputs = fetch_inputs(url)  # PlanFailed: the engine fails the batch with the reason
    with session_scope() as session:
        record_preparation(session, job_id, {"inputs": inputs}, len(inputs))


def plan_batch(session: Session, job: Job) -> Iterator[PlannedItem]:
    """One data point per input, in order; parked ones wait until queued."""
    parked = bool(job.payload.get("parked"))
    for index, value in enumerate(job.payload.get("inputs") or []):
        yield PlannedItem(key=str(index), item={"input": value}, parked=parked)


# -- reading ------------------------------------------------------------------------------


def with_batch_rows(session: Session, jobs: Iterable[Job]) -> None:
    """Give each batch its own row (its app and callback URL) as ``batch_row``, which the
    answers read: one read for all of them."""
    missing = {job.id: job for job in jobs if getattr(job, "batch_row", None) is None}
    if not missing:
        return
    for row in session.scalars(select(Batch).where(Batch.job_id.in_(list(missing)))):
        missing[row.job_id].batch_row = row  # type: ignore[attr-defined]


def batch_apps(session: Session, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """The app of each of these batches (the spec's ``owners``), in one read."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Batch.job_id, Batch.app_id).where(Batch.job_id.in_(list(job_ids)))
    )
    return {job_id: app_id for job_id, app_id in rows}


def get_batch(
    session: Session, principal: Principal, app_id: uuid.UUID, batch_id: uuid.UUID
) -> Job:
    found = session.execute(
        select(Job, Batch).join(Batch, Batch.job_id == Job.id).where(Job.id == batch_id)
    ).one_or_none()
    if found is None:
        raise NotFound(f"Batch {batch_id} not found")
    job, row = found
    if job.organisation_id != principal.organisation_id or row.app_id != app_id:
        raise NotFound(f"Batch {batch_id} not found")
    job.batch_row = row  # type: ignore[attr-defined]
    return job


def list_batches(
    session: Session, principal: Principal, app_id: uuid.UUID, *, page: int, size: int
) -> Page:
    get_app(session, principal, app_id)
    stmt = (
        select(Job)
        .join(Batch, Batch.job_id == Job.id)  # through batches' index on app_id
        .where(Batch.app_id == app_id)
        .order_by(Job.created_at.desc(), Job.id)
    )
    found = paginate(session, stmt, size, page + 1)
    with_batch_rows(session, found.items)
    return found


@dataclass(frozen=True)
class DataPoint:
    """A data point: its execution, and the batch it belongs to."""

    execution: Execution
    batch: Job

    @property
    def state(self) -> DataPointState:
        return data_point_state(self.execution)


def get_data_point(
    session: Session,
    principal: Principal,
    app_id: uuid.UUID | None,
    data_point_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> DataPoint:
    """The caller's data point, in the app ``app_id`` (None: in any of its apps, as
    ``/v1/jobs/{id}`` reads it), or NotFound."""
    stmt = (
        select(Execution, Job, Batch)
        .join(Job, Job.id == Execution.job_id)
        .join(Batch, Batch.job_id == Job.id)
    )
    if for_update:
        stmt = stmt.with_for_update(of=Execution)
    found = session.execute(stmt.where(Execution.id == data_point_id)).one_or_none()
    if found is None:
        raise NotFound(f"Job {data_point_id} not found")
    execution, job, row = found
    if job.organisation_id != principal.organisation_id or (
        app_id is not None and row.app_id != app_id
    ):
        raise NotFound(f"Job {data_point_id} not found")
    job.batch_row = row  # type: ignore[attr-defined]
    return DataPoint(execution, job)


DATA_POINT_SORTS = {
    "id": (Execution.created_at, Execution.seq),
    "created": (Execution.created_at, Execution.seq),
    "completed": (Execution.finished_at, Execution.seq),
    "status": (Execution.status, Execution.seq),
}


def list_data_points(
    session: Session,
    principal: Principal,
    app_id: uuid.UUID,
    *,
    page: int,
    size: int,
    sort_by: str,
    descending: bool,
    created_from: datetime | None,
    created_to: datetime | None,
    completed_from: datetime | None = None,
    completed_to: datetime | None = None,
    states: list[DataPointState],
) -> Page:
    """The app's data points, filtered, sorted, one page (``page`` counts from 0). The
    ``completed`` bounds keep finished data points only (completed, failed or canceled
    in that time)."""
    get_app(session, principal, app_id)
    stmt = (
        select(Execution, Job)
        .join(Job, Job.id == Execution.job_id)
        .join(Batch, Batch.job_id == Job.id)
        .where(Batch.app_id == app_id)
    )
    if created_from is not None:
        stmt = stmt.where(Execution.created_at >= created_from)
    if created_to is not None:
        stmt = stmt.where(Execution.created_at <= created_to)
    if completed_from is not None:
        stmt = stmt.where(Execution.finished_at >= completed_from)
    if completed_to is not None:
        stmt = stmt.where(Execution.finished_at <= completed_to)
    if states:
        stmt = stmt.where(or_(*(_state_condition(s) for s in states)))
    columns = DATA_POINT_SORTS[sort_by]
    order = [c.desc() if descending else c.asc() for c in columns]
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.execute(
        stmt.order_by(*order, Execution.id).limit(size).offset(page * size)
    ).all()
    with_batch_rows(session, {j.id: j for _, j in rows}.values())
    return Page([DataPoint(e, j) for e, j in rows], total, size, page + 1)


def cancel_data_point(
    work: UnitOfWork, principal: Principal, app_id: uuid.UUID | None, data_point_id: uuid.UUID
) -> DataPoint:
    """Cancel a data point that has not finished (Conflict when it has), in the caller's
    unit of work; the data point as the cancel left it."""
    point = get_data_point(work.session, principal, app_id, data_point_id)  # the app's, or 404
    if point.state in FINISHED_STATES:  # said in the data point's own states
        raise Conflict(f"Job {data_point_id} has already finished ({point.state.value})")
    cancel_one(work, principal.organisation_id, data_point_id, "Job")
    return _reread(work.session, point)


def queue_data_point(
    work: UnitOfWork, principal: Principal, app_id: uuid.UUID | None, data_point_id: uuid.UUID
) -> DataPoint:
    """Queue a parked data point (Conflict when it is not parked), in the caller's unit of
    work; the data point as queued."""
    point = get_data_point(work.session, principal, app_id, data_point_id)  # the app's, or 404
    queue_parked(work, principal.organisation_id, data_point_id, "Job")
    return _reread(work.session, point)


def retry_batch(
    work: UnitOfWork,
    principal: Principal,
    app_id: uuid.UUID,
    batch_id: uuid.UUID,
    data_point_ids: list[uuid.UUID] | None = None,
) -> Job:
    """Run a finished batch's failed data points again (only ``data_point_ids`` when
    given), in the caller's unit of work (see :mod:`shared.engine.retry`); the batch as
    the retry left it. Each data point that ends again has its callback again, and the
    batch its own when it ends again."""
    batch = get_batch(work.session, principal, app_id, batch_id)  # the app's, or 404
    job = retry_failed(work, principal.organisation_id, batch.id, BATCH, data_point_ids, what="Job")
    with_batch_rows(work.session, [job])
    return job


def retry_data_point(
    work: UnitOfWork, principal: Principal, app_id: uuid.UUID, data_point_id: uuid.UUID
) -> DataPoint:
    """Run one failed data point of a finished batch again; the data point as queued."""
    point = get_data_point(work.session, principal, app_id, data_point_id)  # the app's, or 404
    retry_failed(
        work, principal.organisation_id, point.batch.id, BATCH, [data_point_id], what="Job"
    )
    return _reread(work.session, point)


def _reread(session: Session, point: DataPoint) -> DataPoint:
    """The data point as this transaction has just left it (its batch's counters moved)."""
    session.refresh(point.execution)
    session.refresh(point.batch)
    return point


_UNSET: Any = object()


def review_data_point(
    session: Session,
    principal: Principal,
    app_id: uuid.UUID | None,
    data_point_id: uuid.UUID,
    *,
    response: Any = _UNSET,
    correct: bool | None = None,
) -> DataPoint:
    """Record a person's review of a finished data point: whether its response is
    correct, and the response it should have been. Each review keeps what an earlier one
    said that it does not repeat; the processor's own output is never overwritten.
    Conflict while the data point has not finished."""
    point = get_data_point(session, principal, app_id, data_point_id, for_update=True)
    if point.state not in (DataPointState.COMPLETED, DataPointState.FAILED):
        raise Conflict(
            f"Job {data_point_id} is {point.state.value}: only a COMPLETED or FAILED "
            "job can be reviewed"
        )
    result = dict(point.execution.result or {})
    review = dict(result.get("review") or {})
    if response is not _UNSET:
        review["response"] = response
    if correct is not None:
        review["correct"] = correct
    review["reviewedAt"] = utcnow().isoformat().replace("+00:00", "Z")
    point.execution.result = {**result, "review": review}
    session.flush()
    return point


# -- callbacks: the delivery log ----------------------------------------------------------


def deliveries_of_batch(
    session: Session,
    principal: Principal,
    app_id: uuid.UUID,
    batch_id: uuid.UUID,
    *,
    cursor: str | None,
    limit: int,
) -> MessageLogPage:
    """A page of the batch's callbacks (its own and its data points'), oldest first."""
    batch = get_batch(session, principal, app_id, batch_id)
    return message_log(
        session,
        principal.organisation_id,
        job_id=batch.id,
        execution_id=None,
        cursor=cursor,
        limit=limit,
    )


def deliveries_of_data_point(
    session: Session,
    principal: Principal,
    app_id: uuid.UUID,
    data_point_id: uuid.UUID,
    *,
    cursor: str | None,
    limit: int,
) -> MessageLogPage:
    """A page of a data point's callbacks, oldest first."""
    point = get_data_point(session, principal, app_id, data_point_id)
    return message_log(
        session,
        principal.organisation_id,
        job_id=point.batch.id,
        execution_id=point.execution.id,
        cursor=cursor,
        limit=limit,
    )


def get_delivery(
    session: Session, principal: Principal, app_id: uuid.UUID, message_id: uuid.UUID
) -> MessageLog:
    log = get_message(session, principal.organisation_id, message_id)
    get_batch(session, principal, app_id, log.message.job_id)  # of this app, or 404
    return log


def resend_delivery(
    session: Session, principal: Principal, app_id: uuid.UUID, message_id: uuid.UUID
) -> None:
    get_delivery(session, principal, app_id, message_id)
    resend_one(session, principal.organisation_id, message_id)


def resend_failed(
    session: Session, principal: Principal, app_id: uuid.UUID, batch_id: uuid.UUID, since: datetime
) -> int:
    """Resend every message of the batch that failed (or met a 410) since ``since``."""
    batch = get_batch(session, principal, app_id, batch_id)
    ids = failed_since(session, principal.organisation_id, [batch.id], since)
    return resend(session, principal.organisation_id, ids)
