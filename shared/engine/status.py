"""Job status: a pure function of the counters, in Python and in SQL."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, and_, case

from shared.models import Job, JobStatus

JOBS: Table = Job.__table__  # type: ignore[assignment]


def derive_status(
    *,
    total: int,
    pending: int,
    success: int,
    failed: int,
    started: bool,
    canceled: bool,
) -> JobStatus:
    """The job status the counters imply (see :func:`status_expression` for the SQL twin)."""
    if canceled:
        return JobStatus.CANCELED
    if success + failed == total:
        if failed == 0:
            return JobStatus.COMPLETED
        return JobStatus.FAILED if success == 0 else JobStatus.PARTIAL_FAILED
    if pending == total and not started:
        return JobStatus.PENDING
    return JobStatus.PROCESSING


def status_expression(
    pending: ColumnElement[int], success: ColumnElement[int], failed: ColumnElement[int]
) -> ColumnElement[str]:
    """SQL for :func:`derive_status`, over the counters' *new* values in one UPDATE."""
    return case(
        (JOBS.c.canceled_at.is_not(None), JobStatus.CANCELED.value),
        (
            success + failed == JOBS.c.total,
            case(
                (failed == 0, JobStatus.COMPLETED.value),
                (success == 0, JobStatus.FAILED.value),
                else_=JobStatus.PARTIAL_FAILED.value,
            ),
        ),
        (and_(pending == JOBS.c.total, JOBS.c.started_at.is_(None)), JobStatus.PENDING.value),
        else_=JobStatus.PROCESSING.value,
    )


def status_after_start() -> ColumnElement[str]:
    """The status of a job whose first executions have just been written."""
    return case(
        (JOBS.c.canceled_at.is_not(None), JobStatus.CANCELED.value),
        (JOBS.c.success + JOBS.c.failed == JOBS.c.total, JOBS.c.status),
        else_=JobStatus.PROCESSING.value,
    )
