"""Retry on demand: run the failed executions of a finished job again.

A job that ended ``failed`` or ``partial_failed`` can have its failed executions (all of
them, or the ones named) run again. In one transaction, under the job's locks:

- each one moves ``failed -> pending`` (one guarded UPDATE: ``status = 'failed'`` and the
  job's id), with a fresh attempt budget (``attempts = 0``) and its error, result, lease,
  retry time, dispatch stamp and timing cleared, so dispatch hands it out again;
- the job's counters move by exactly that many (:func:`~shared.engine.counters.move_counters`),
  which re-derives its status (``processing``) and clears ``finished_at``; the live
  progress streams get the new counters after the commit;
- a ``job.retried`` event goes to the job type's in-transaction handlers (a run's history
  row or a cached job reopens with its job) and consumers.

When they end, the job ends again exactly as a first run does: the counter move that
completes it writes a new ``job.finished`` event (callbacks, webhooks, cached jobs). The
job's cost is cumulative: what the failed attempts cost stays counted, in the job's and the
executions' ``cost``.

What cannot be retried (Conflict, nothing changed):

- a job that has not finished (still running, or running again after a retry): a second
  retry racing the first finds the job active, or its executions no longer failed, and is
  refused, so each execution is retried once;
- a ``completed`` job, or one whose named executions did not fail: nothing failed to retry;
- a ``canceled`` job: its user stopped it, and its unfinished executions ended failed with
  error ``canceled`` because of that. It stays canceled (a new job runs it again).
  Likewise, in a job that finished on its own, the executions canceled one by one
  (error ``canceled``) are left out of "every failed one"; naming them retries them.

The work it makes active again counts against the organisation's quotas
(:func:`shared.engine.quotas.admit`), as a new job of that many executions would.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from shared.db import UnitOfWork
from shared.engine import dispatch, outbox, quotas
from shared.engine.cancel import CANCELED_ERROR
from shared.engine.counters import move_counters
from shared.engine.jobs import get_job
from shared.engine.locks import lock_job
from shared.errors import Conflict, NotFound
from shared.models import Execution, ExecutionStatus, Job, JobStatus, utcnow

FAILED = ExecutionStatus.FAILED.value
PENDING = ExecutionStatus.PENDING.value
RETRYABLE_JOB_STATUSES = (JobStatus.FAILED.value, JobStatus.PARTIAL_FAILED.value)
JOB_RETRIED = outbox.JOB_RETRIED
# "Every failed one": not those a user canceled one by one (named, they are retried).
_FAILED_NOT_CANCELED = and_(
    Execution.status == FAILED,
    or_(Execution.error.is_(None), Execution.error != CANCELED_ERROR),
)


def retry_failed(
    work: UnitOfWork,
    organisation_id: uuid.UUID,
    job_id: uuid.UUID,
    job_type: str | None = None,
    execution_ids: Collection[uuid.UUID] | None = None,
    *,
    what: str = "Execution",
) -> Job:
    """Run the organisation's job's failed executions again (only ``execution_ids`` when
    given), in the caller's unit of work; dispatch hands them out after its commit.

    Raises NotFound when there is no such job for the organisation (of ``job_type``, when
    given) or a named execution is not one of the job's (``what`` names it in the message);
    Conflict when the job has not finished, was canceled, or nothing failed to retry (a
    named execution that did not fail); what :func:`shared.engine.quotas.admit` raises when
    the work would exceed the organisation's quotas. Returns the job as the retry left it.
    """
    session = work.session
    job = get_job(session, organisation_id, job_id, job_type)
    # The job's lock orders this with its cancel (and fan-out chunks); its row lock with
    # every counter move and with another retry: the status read below is the latest.
    lock_job(session, job.id)
    session.refresh(job, with_for_update={"of": Job})
    if job.canceled_at is not None:
        raise Conflict(f"Job {job_id} was canceled; a canceled job is not retried")
    if job.status not in RETRYABLE_JOB_STATUSES:
        if job.status == JobStatus.COMPLETED.value:
            raise Conflict(f"Job {job_id} completed: no execution failed, nothing to retry")
        raise Conflict(f"Job {job_id} has not finished ({job.status}); retry it once it has")

    # Every failed one is chosen by a condition, not a list of ids: a job may have failed
    # a hundred thousand (more than SQLite's bound on a statement's parameters).
    chosen: list[uuid.UUID] | None = None
    if execution_ids is None:
        which = _FAILED_NOT_CANCELED
        wanted = session.scalar(select(func.count()).where(Execution.job_id == job.id, which))
    else:
        chosen = _named(session, job.id, execution_ids, what)
        which = Execution.id.in_(chosen)
        wanted = len(chosen)
    if not wanted:
        raise Conflict(f"Job {job_id} has no failed execution to retry")
    quotas.admit(session, organisation_id, jobs=1, executions=wanted)

    now = utcnow()
    retried = session.scalars(
        update(Execution)
        .where(
            Execution.job_id == job.id,
            which,
            Execution.status == FAILED,  # each failed execution is retried once
        )
        .values(
            status=PENDING,
            attempts=0,
            error=None,
            result=None,
            summary=None,
            lease_token=None,
            lease_owner=None,
            lease_expires_at=None,
            next_attempt_at=None,
            dispatched_at=None,  # ready: dispatch hands it out
            started_at=None,
            finished_at=None,
            updated_at=now,
        )
        .returning(Execution.id)
        .execution_options(synchronize_session=False)
    ).all()
    if chosen is not None and len(retried) != len(chosen):
        not_failed = sorted(str(i) for i in set(chosen) - set(retried))
        raise Conflict(
            f"{what}s not failed cannot be retried: {', '.join(not_failed)}",
            details=[f"{what} {i} has not failed" for i in not_failed],
        )
    move_counters(session, job.id, {(FAILED, PENDING): len(retried)}, now)
    outbox.emit(
        session,
        JOB_RETRIED,
        job_id=job.id,
        organisation_id=organisation_id,
        payload={"type": job.type, "executions": len(retried)},
        now=now,
    )
    session.refresh(job)
    work.after_commit(dispatch.fill)
    return job


def _named(
    session: Session, job_id: uuid.UUID, execution_ids: Collection[uuid.UUID], what: str
) -> list[uuid.UUID]:
    """The named executions, each once (NotFound for one not of the job)."""
    named = list(dict.fromkeys(execution_ids))
    found = set(
        session.scalars(
            select(Execution.id).where(Execution.job_id == job_id, Execution.id.in_(named))
        )
    )
    missing = [str(i) for i in named if i not in found]
    if missing:
        raise NotFound(f"{what} {missing[0]} not found in job {job_id}")
    return named
