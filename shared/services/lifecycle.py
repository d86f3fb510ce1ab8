"""The execution lifecycle: fan out, claim, finish, and the counters that follow.

Delivery of ``executions.run`` is at least once; counting is exactly once. Every state
change of an execution is a guarded UPDATE (the row must still be in the state the caller
saw), and the job's counters move in the same transaction as the execution, so
``total = pending + retrying + success + failed`` holds at every commit.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Table,
    Uuid,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from shared.models import (
    ACTIVE_EXECUTION_STATUSES,
    Execution,
    ExecutionStatus,
    Job,
    JobStatus,
    JobType,
    Query,
    utcnow,
)
from shared.models.base import UTCDateTime
from shared.settings import get_settings

# ---------------------------------------------------------------------------------------
# Job status: a pure function of the counters.


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


# The hot path (claim, finish, counters) runs on a plain Connection in the worker; the
# other steps on an ORM Session. Both execute Core statements alike.
Executor = Session | Connection

JOBS: Table = Job.__table__  # type: ignore[assignment]
EXECUTIONS: Table = Execution.__table__  # type: ignore[assignment]


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


def _delta(name: str) -> ColumnElement[int]:
    return bindparam(f"d_{name}", type_=Integer)


def _build_move_counters() -> Any:
    # Built once: the hot path binds parameters instead of rebuilding SQL each time.
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
            status=status_expression(pending, success, failed),
            updated_at=now,
            finished_at=case((success + failed == JOBS.c.total, now), else_=None),
        )
    )


MOVE_COUNTERS = _build_move_counters()


def move_counters(
    session: Executor, job_id: uuid.UUID, moves: dict[tuple[str, str], int], now: datetime
) -> None:
    """Move executions between counters (``{(from, to): n}``) and re-derive the status."""
    delta = {s.value: 0 for s in ExecutionStatus}
    for (source, target), count in moves.items():
        delta[source] -= count
        delta[target] += count
    if not any(delta.values()):
        return
    params = {f"d_{name}": value for name, value in delta.items()}
    session.execute(MOVE_COUNTERS, {"job_id": job_id, "now": now, **params})


# ---------------------------------------------------------------------------------------
# Fan out.


def execution_id_for(job_id: uuid.UUID, item_key: str) -> uuid.UUID:
    """A deterministic id, so a repeated fan-out names the same executions."""
    return uuid.uuid5(job_id, item_key)


def planned_ai_executions(session: Session, job: Job) -> Iterator[dict[str, Any]]:
    """The execution rows of an ai_queries job: every query x model x run."""
    query_ids = [uuid.UUID(q) for q in job.payload["queryIds"]]
    queries = {q.id: q for q in session.scalars(select(Query).where(Query.id.in_(query_ids)))}
    for query_id in query_ids:
        query = queries.get(query_id)
        for model in job.payload["aiModels"]:
            for run in range(1, int(job.payload["executionCount"]) + 1):
                key = f"{query_id}:{model}:{run}"
                yield {
                    "id": execution_id_for(job.id, key),
                    "job_id": job.id,
                    "item_key": key,
                    "query_id": query_id,
                    "model": model,
                    "run_number": run,
                    "language": query.language if query else None,
                    "country": query.country if query else None,
                }


PLANNERS = {JobType.AI_QUERIES.value: planned_ai_executions}


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(Execution).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(Execution).on_conflict_do_nothing()
    else:  # pragma: no cover - only the two supported databases
        stmt = insert(Execution)
    session.execute(stmt, rows)


@dataclass(frozen=True)
class FanOutPlan:
    """What the fan-out task needs to know about a job before writing its executions."""

    job_id: uuid.UUID
    should_run: bool
    reason: str = ""


def begin_fan_out(session: Session, job_id: uuid.UUID) -> FanOutPlan:
    """Check that a job still needs fanning out (messages can be duplicated)."""
    job = session.get(Job, job_id)
    if job is None:
        return FanOutPlan(job_id, False, "job does not exist")
    if job.fanned_out_at is not None:
        return FanOutPlan(job_id, False, "already fanned out")
    # A canceled job is still fanned out: its executions are written already canceled
    # (and never published), so that the rows keep matching the counters.
    if job.parked:
        return FanOutPlan(job_id, False, "parked")
    return FanOutPlan(job_id, True)


def write_execution_chunks(
    session_factory: Any, job_id: uuid.UUID, chunk_size: int
) -> Iterator[list[uuid.UUID]]:
    """Insert a job's executions chunk by chunk, one transaction each; yield each chunk's ids.

    The caller publishes each chunk after its transaction has committed. Rows that exist
    already (a fan-out re-run after a crash) are left as they are but yielded again: their
    duplicate messages are dropped by the claim.
    """
    with session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        planned = PLANNERS[job.type](session, job)
        chunk: list[dict[str, Any]] = []
        for row in planned:
            chunk.append(row)
            if len(chunk) >= chunk_size:
                yield _commit_chunk(session, job_id, chunk)
                chunk = []
        if chunk:
            yield _commit_chunk(session, job_id, chunk)


def _commit_chunk(
    session: Session, job_id: uuid.UUID, rows: list[dict[str, Any]]
) -> list[uuid.UUID]:
    now = utcnow()
    lock_job_fan_out(session, job_id)
    canceled = session.scalar(select(Job.canceled_at).where(Job.id == job_id)) is not None
    for row in rows:
        row.update(created_at=now, updated_at=now, attempts=0)
        if canceled:  # cancel_executions already counted these as failed
            row.update(status=ExecutionStatus.FAILED.value, error=CANCELED_ERROR, finished_at=now)
        else:
            row.update(status=ExecutionStatus.PENDING.value, dispatched_at=now)
    _insert_ignoring_duplicates(session, rows)
    # Publishing starts the job: it leaves 'pending' for 'processing'.
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.started_at.is_(None))
        .values(started_at=now, updated_at=now, status=_status_after_start())
    )
    session.commit()
    return [] if canceled else [row["id"] for row in rows]


def lock_job_fan_out(session: Session, job_id: uuid.UUID) -> None:
    """Serialise a job's fan-out chunks with its cancel, for the rest of the transaction.

    A transaction-scoped advisory lock on PostgreSQL (SQLite serialises all writers).
    Both take it before touching executions, so a chunk is written either wholly before
    a cancel (and canceled by it) or wholly after (and written canceled).
    """
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(job_id.bytes[:8], "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(key)))


CANCELED_ERROR = "canceled"


def cancel_executions(session: Session, job_id: uuid.UUID) -> None:
    """Cancel a job: no new attempt starts, every non-terminal execution ends failed with
    error ``canceled``, and the counters stay exact. In the caller's transaction.

    Locks are taken in the order finishers take them (executions, then the job row), so a
    cancel never deadlocks with an attempt finishing. An attempt still running finds its
    execution failed when it finishes, and its outcome is not counted.
    """
    now = utcnow()
    lock_job_fan_out(session, job_id)
    session.execute(
        update(Execution)
        .where(Execution.job_id == job_id, Execution.status.in_(ACTIVE_EXECUTION_STATUSES))
        .values(
            status=ExecutionStatus.FAILED.value,
            error=CANCELED_ERROR,
            lease_token=None,
            lease_expires_at=None,
            next_attempt_at=None,
            finished_at=now,
            updated_at=now,
        )
    )
    # Every execution still counted pending or retrying is now canceled: the rows just
    # updated, and those the fan-out has not written yet (it writes them canceled). The
    # cancel is stamped after the update above, which waited for attempts finishing at
    # that moment: every success counted before the cancel has finished_at < canceled_at.
    now = utcnow()
    session.execute(update(Job).where(Job.id == job_id).values(canceled_at=now))
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            failed=Job.failed + Job.pending + Job.retrying,
            pending=0,
            retrying=0,
            status=JobStatus.CANCELED.value,
            updated_at=now,
            finished_at=now,
        )
    )


def release_claim(session: Executor, claim: Claim, wait_seconds: float) -> bool:
    """Give a claimed execution back without spending its attempt (it was throttled)."""
    now = utcnow()
    released = session.execute(
        update(Execution)
        .where(Execution.id == claim.execution_id, Execution.lease_token == claim.lease_token)
        .values(
            attempts=Execution.attempts - 1,
            lease_token=None,
            lease_expires_at=None,
            dispatched_at=now + timedelta(seconds=wait_seconds),
            updated_at=now,
        )
    )
    return bool(released.rowcount)  # type: ignore[attr-defined]


def leave_to_sweep(session: Executor, execution_id: uuid.UUID) -> None:
    """Its message could not be published: the recovery sweep publishes it when due."""
    session.execute(
        update(Execution)
        .where(
            Execution.id == execution_id,
            Execution.lease_token.is_(None),
            Execution.status.in_(ACTIVE_EXECUTION_STATUSES),
        )
        .values(dispatched_at=None)
    )


def seconds_until_due(session: Executor, execution_id: uuid.UUID) -> float | None:
    """For a message that arrived before its execution's retry time: how long to wait."""
    now = utcnow()
    due = session.scalar(
        select(Execution.next_attempt_at).where(
            Execution.id == execution_id,
            Execution.status.in_(ACTIVE_EXECUTION_STATUSES),
            Execution.lease_token.is_(None),
            Execution.next_attempt_at > now,
        )
    )
    return (due - now).total_seconds() if due is not None else None


def _status_after_start() -> ColumnElement[str]:
    return case(
        (Job.canceled_at.is_not(None), JobStatus.CANCELED.value),
        (Job.success + Job.failed == Job.total, Job.status),
        else_=JobStatus.PROCESSING.value,
    )


def finish_fan_out(session: Session, job_id: uuid.UUID) -> None:
    """Record that every execution of the job has been written and published."""
    now = utcnow()
    session.execute(update(Job).where(Job.id == job_id).values(fanned_out_at=now, updated_at=now))


# ---------------------------------------------------------------------------------------
# Claim and finish.


@dataclass(frozen=True)
class Claim:
    """An execution leased to one attempt; only the holder of ``lease_token`` may finish it."""

    execution_id: uuid.UUID
    job_id: uuid.UUID
    lease_token: uuid.UUID
    status: str  # the status at claim time (pending or retrying)
    attempt: int
    max_attempts: int
    query_id: uuid.UUID | None
    model: str | None
    run_number: int | None
    language: str | None
    country: str | None


def _build_claim() -> Any:
    now = bindparam("now", type_=UTCDateTime())
    max_attempts = (
        select(JOBS.c.max_attempts).where(JOBS.c.id == EXECUTIONS.c.job_id).scalar_subquery()
    )
    return (
        update(EXECUTIONS)
        .where(
            EXECUTIONS.c.id == bindparam("execution_id", type_=Uuid()),
            EXECUTIONS.c.status.in_(ACTIVE_EXECUTION_STATUSES),
            or_(EXECUTIONS.c.lease_expires_at.is_(None), EXECUTIONS.c.lease_expires_at < now),
            or_(EXECUTIONS.c.next_attempt_at.is_(None), EXECUTIONS.c.next_attempt_at <= now),
            EXECUTIONS.c.attempts < max_attempts,
        )
        .values(
            attempts=EXECUTIONS.c.attempts + 1,
            lease_token=bindparam("token", type_=Uuid()),
            lease_expires_at=bindparam("lease_until", type_=UTCDateTime()),
            started_at=func.coalesce(EXECUTIONS.c.started_at, now),
            updated_at=now,
        )
        .returning(
            EXECUTIONS.c.job_id,
            EXECUTIONS.c.status,
            EXECUTIONS.c.attempts,
            EXECUTIONS.c.query_id,
            EXECUTIONS.c.model,
            EXECUTIONS.c.run_number,
            EXECUTIONS.c.language,
            EXECUTIONS.c.country,
            max_attempts,
        )
    )


CLAIM = _build_claim()


def claim_execution(session: Executor, execution_id: uuid.UUID) -> Claim | None:
    """Lease the execution for one attempt, or return None for a stale/duplicate message.

    One guarded UPDATE: the row must be pending or retrying, its lease free or expired,
    its retry time come, and attempts left under the job's budget.
    """
    now = utcnow()
    token = uuid.uuid4()
    row = session.execute(
        CLAIM,
        {
            "execution_id": execution_id,
            "now": now,
            "token": token,
            "lease_until": now + timedelta(seconds=get_settings().lease_seconds),
        },
    ).one_or_none()
    if row is None:
        return None
    return Claim(
        execution_id=execution_id,
        job_id=row[0],
        lease_token=token,
        status=row[1],
        attempt=row[2],
        query_id=row[3],
        model=row[4],
        run_number=row[5],
        language=row[6],
        country=row[7],
        max_attempts=row[8],
    )


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: success with a result, or an error (retryable or not)."""

    success: bool
    result: dict[str, Any] | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None  # the provider's Retry-After, in seconds
    primary_mentioned: bool | None = None  # an AI answer: does it name the project?

    @classmethod
    def succeeded(cls, result: dict[str, Any], *, primary_mentioned: bool | None = None) -> Outcome:
        return cls(True, result=result, primary_mentioned=primary_mentioned)

    @classmethod
    def failed(
        cls, error: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> Outcome:
        return cls(False, error=error, retryable=retryable, retry_after=retry_after)


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never sooner than the provider's Retry-After.

    The jittered part is capped (``JOBYARD_RETRY_BACKOFF_CAP_SECONDS``); a Retry-After
    longer than the cap is honoured all the same (the sweep then dispatches the retry).
    """
    settings = get_settings()
    ceiling = min(
        settings.retry_backoff_cap_seconds, settings.retry_backoff_base_seconds * 2**attempt
    )
    delay = random.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass(frozen=True)
class Finished:
    """What :func:`finish_execution` did: the new status, and how its retry is dispatched.

    ``retry_in`` is the countdown to publish the retry with. It is None for a retry whose
    wait is longer than a countdown may safely be (a countdown past the broker's
    visibility timeout is redelivered early): the recovery sweep dispatches those when due.
    """

    status: str
    retry_in: float | None = None


# The columns each outcome writes (besides status and the lease, always cleared).
FINISH_COLUMNS = {
    ExecutionStatus.SUCCESS.value: (
        "result",
        "primary_mentioned",
        "error",
        "finished_at",
        "next_attempt_at",
    ),
    ExecutionStatus.RETRYING.value: ("error", "next_attempt_at", "dispatched_at"),
    ExecutionStatus.FAILED.value: ("error", "finished_at", "next_attempt_at"),
}


@cache
def _finish_statement(claimed_status: str, new_status: str) -> Any:
    columns = {
        name: bindparam(f"v_{name}", type_=EXECUTIONS.c[name].type)
        for name in FINISH_COLUMNS[new_status]
    }
    return (
        update(EXECUTIONS)
        .where(
            EXECUTIONS.c.id == bindparam("execution_id", type_=Uuid()),
            EXECUTIONS.c.lease_token == bindparam("token", type_=Uuid()),
            EXECUTIONS.c.status == claimed_status,
        )
        .values(
            status=new_status,
            lease_token=None,
            lease_expires_at=None,
            updated_at=bindparam("now", type_=UTCDateTime()),
            **columns,
        )
    )


def finish_execution(session: Executor, claim: Claim, outcome: Outcome) -> Finished | None:
    """Record an attempt's outcome and move the job's counters, in the caller's transaction.

    Returns None when the lease is no longer ours (it expired and another attempt took
    over, or the job was canceled): that attempt's outcome is then not counted.
    """
    now = utcnow()
    retry_in: float | None = None
    if outcome.success:
        new_status = ExecutionStatus.SUCCESS.value
        values: dict[str, Any] = {
            "result": outcome.result,
            "primary_mentioned": outcome.primary_mentioned,
            "error": None,
            "finished_at": now,
            "next_attempt_at": None,
        }
    elif outcome.retryable and claim.attempt < claim.max_attempts:
        new_status = ExecutionStatus.RETRYING.value
        wait = backoff_seconds(claim.attempt, outcome.retry_after)
        due = now + timedelta(seconds=wait)
        # A NULL dispatched_at marks a retry left to the sweep (see Finished.retry_in).
        retry_in = wait if wait <= get_settings().retry_backoff_cap_seconds else None
        values = {
            "error": outcome.error,
            "next_attempt_at": due,
            "dispatched_at": due if retry_in is not None else None,
        }
    else:
        new_status = ExecutionStatus.FAILED.value
        values = {"error": outcome.error, "finished_at": now, "next_attempt_at": None}
    updated = session.execute(
        _finish_statement(claim.status, new_status),
        {
            "execution_id": claim.execution_id,
            "token": claim.lease_token,
            "now": now,
            **{f"v_{name}": value for name, value in values.items()},
        },
    )
    if updated.rowcount != 1:  # type: ignore[attr-defined]
        return None
    move_counters(session, claim.job_id, {(claim.status, new_status): 1}, now)
    return Finished(new_status, retry_in)


def fail_exhausted_executions(session: Session, execution_ids: Sequence[uuid.UUID]) -> int:
    """Fail executions that used every attempt without finishing (a poison message)."""
    now = utcnow()
    failed = 0
    # One UPDATE per old status: RETURNING yields new values, and the counters need the old.
    for old_status in ACTIVE_EXECUTION_STATUSES:
        job_ids = session.scalars(
            update(Execution)
            .where(
                Execution.id.in_(execution_ids),
                Execution.status == old_status,
                or_(Execution.lease_expires_at.is_(None), Execution.lease_expires_at < now),
            )
            .values(
                status=ExecutionStatus.FAILED.value,
                error=func.coalesce(Execution.error, EXHAUSTED_ERROR),
                lease_token=None,
                lease_expires_at=None,
                next_attempt_at=None,
                finished_at=now,
                updated_at=now,
            )
            .returning(Execution.job_id)
        ).all()
        for job_id, count in Counter(job_ids).items():
            move_counters(session, job_id, {(old_status, ExecutionStatus.FAILED.value): count}, now)
        failed += len(job_ids)
    return failed


EXHAUSTED_ERROR = "attempts exhausted: the worker stopped during every attempt"
