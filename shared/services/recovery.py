"""The recovery sweep: whatever was accepted but lost in flight is published again.

Three kinds of loss are repaired, each found by a bounded query:

- a job whose fan-out was never published (the broker was down when it was accepted) or
  whose fan-out stopped half-way (a worker died): its fan-out is published again;
- an execution whose lease expired (its worker was killed) or whose message was published
  long ago and never claimed (lost with a killed worker's prefetch, or a flushed Redis):
  it is published again, and the claim drops any duplicate;
- an execution that used every attempt without finishing (it kills its worker each time):
  it fails, with the counters moved, instead of looping forever.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, or_, select, update

from shared.db import session_scope
from shared.models import ACTIVE_EXECUTION_STATUSES, Execution, Job, utcnow
from shared.services.lifecycle import fail_exhausted_executions
from shared.settings import get_settings

SWEEP_BATCH = 5000


@dataclass
class SweepReport:
    """What one sweep did (logged by the task, asserted by the tests)."""

    jobs_redispatched: list[uuid.UUID] = field(default_factory=list)
    executions_redispatched: list[uuid.UUID] = field(default_factory=list)
    executions_exhausted: int = 0


def find_undispatched_jobs() -> list[uuid.UUID]:
    """Claim (by stamping ``dispatched_at``) the jobs whose fan-out must be published again."""
    settings = get_settings()
    now = utcnow()
    never_published = and_(
        Job.dispatched_at.is_(None),
        Job.created_at < now - timedelta(seconds=settings.undispatched_after_seconds),
    )
    stalled = Job.dispatched_at < now - timedelta(seconds=settings.redispatch_after_seconds)
    with session_scope() as session:
        job_ids = list(
            session.scalars(
                select(Job.id)
                .where(
                    Job.fanned_out_at.is_(None),
                    Job.parked.is_(False),
                    or_(never_published, stalled),
                )
                .limit(SWEEP_BATCH)
            )
        )
        if job_ids:
            session.execute(update(Job).where(Job.id.in_(job_ids)).values(dispatched_at=now))
    return job_ids


def find_lost_executions(*, include_unclaimed: bool) -> tuple[list[uuid.UUID], int]:
    """Stamp and return executions to publish again; fail the exhausted ones.

    An execution whose lease expired lost its worker: it is always taken, and so is a
    retry that was left to the sweep (its wait was too long for a countdown) once it is
    due. One that was
    published long ago and never claimed is taken only with ``include_unclaimed`` — the
    caller passes it when the executions queue is empty, since while messages still wait
    there an old publish is more likely queued than lost, and duplicating a long backlog
    would only slow it down.
    """
    settings = get_settings()
    now = utcnow()
    due = or_(Execution.next_attempt_at.is_(None), Execution.next_attempt_at <= now)
    lost_lease = Execution.lease_expires_at < now  # its worker died holding it
    # A retry whose wait was too long for a countdown: published by the sweep when due.
    left_to_sweep = and_(
        Execution.lease_expires_at.is_(None), Execution.dispatched_at.is_(None), due
    )
    never_claimed = and_(
        Execution.lease_expires_at.is_(None),
        Execution.dispatched_at < now - timedelta(seconds=settings.redispatch_after_seconds),
        due,
    )
    with session_scope() as session:
        candidates = session.execute(
            select(Execution.id, Execution.attempts, Job.max_attempts)
            .join(Job, Job.id == Execution.job_id)
            .where(
                Execution.status.in_(ACTIVE_EXECUTION_STATUSES),
                or_(lost_lease, left_to_sweep, never_claimed)
                if include_unclaimed
                else or_(lost_lease, left_to_sweep),
            )
            .limit(SWEEP_BATCH)
        ).all()
        exhausted = [row.id for row in candidates if row.attempts >= row.max_attempts]
        lost = [row.id for row in candidates if row.attempts < row.max_attempts]
        failed = fail_exhausted_executions(session, exhausted) if exhausted else 0
        if lost:
            # Releasing the expired lease makes the row claimable by the new message, and
            # keeps the next sweep from publishing it again while that message waits.
            session.execute(
                update(Execution)
                .where(Execution.id.in_(lost))
                .values(
                    dispatched_at=now, next_attempt_at=None, lease_token=None, lease_expires_at=None
                )
            )
    return lost, failed


def sweep(*, executions_queue_empty: bool) -> SweepReport:
    """Run one sweep; the caller publishes the jobs and executions it names."""
    report = SweepReport()
    report.jobs_redispatched = find_undispatched_jobs()
    report.executions_redispatched, report.executions_exhausted = find_lost_executions(
        include_unclaimed=executions_queue_empty
    )
    return report
