"""The recovery sweep: whatever was accepted but lost in flight is handed out again.

Run by beat every ``JOBYARD_SWEEP_INTERVAL_SECONDS`` (10 s by default). Each kind of loss is
found by a bounded query over the few rows that are outstanding:

- a worker whose heartbeat stopped (kill -9, a lost host): its leases are released at once;
- a lease past its hard limit (an attempt hung in a live worker): released the same way;
- an execution that used every attempt without finishing (it kills its worker each time):
  it fails, with the counters moved, instead of looping forever;
- a retry whose countdown message was lost with its worker (it is well past due and
  nobody claimed it), a message a dead worker may have prefetched (published before its
  last heartbeat and never claimed), or a message never claimed for long while the queue
  is empty (a flushed Redis): handed back to dispatch;
- a job whose fan-out was never published (the broker was down at accept time), whose
  fan-out's process stopped beating (kill -9 of the dispatcher: taken over within the
  dead-worker window), or that stopped moving for long anyway: published again;
- a broker that lost its data (Redis restarted without persistence, flushed, failed over
  to an empty replica: :func:`shared.messaging.broker.broker_was_emptied`): every
  execution handed to it and not claimed, and every unfinished fan-out, is handed out
  again at once, not after ``JOBYARD_REDISPATCH_AFTER_SECONDS``.

A released execution becomes ready and the same sweep's :func:`dispatch.fill` hands it
out: a killed worker's executions run again within one heartbeat timeout and one sweep.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, or_, select, true, update

from shared.db import session_scope
from shared.engine import outbox, workers
from shared.engine.counters import Executor, move_counters
from shared.engine.finish import ended_failed
from shared.models import (
    ACTIVE_EXECUTION_STATUSES,
    Execution,
    ExecutionStatus,
    Job,
    WorkerProcess,
    utcnow,
)
from shared.settings import get_settings

SWEEP_BATCH = 5000
EXHAUSTED_ERROR = "attempts exhausted: the worker stopped during every attempt"


@dataclass
class SweepReport:
    """What one sweep did (logged by the task, asserted by the tests)."""

    dead_workers: list[str] = field(default_factory=list)
    # Messages published before this may sit unacknowledged in a dead worker's prefetch
    # buffer, where Redis keeps them for its visibility timeout (an hour): presumed lost.
    prefetched_by_the_dead_before: datetime | None = None
    leases_released: int = 0
    executions_exhausted: int = 0
    messages_presumed_lost: int = 0
    jobs_redispatched: list[uuid.UUID] = field(default_factory=list)
    broker_emptied: bool = False

    def as_dict(self) -> dict[str, int]:
        return {
            "dead_workers": len(self.dead_workers),
            "leases_released": self.leases_released,
            "executions_exhausted": self.executions_exhausted,
            "messages_presumed_lost": self.messages_presumed_lost,
            "jobs_redispatched": len(self.jobs_redispatched),
            "broker_emptied": int(self.broker_emptied),
        }


def sweep(*, executions_queue_empty: bool, broker_emptied: bool = False) -> SweepReport:
    """Run one sweep; the caller publishes the fan-outs it names, then fills dispatch.

    ``broker_emptied``: the broker lost every message it held (see the module docstring).
    """
    report = SweepReport(broker_emptied=broker_emptied)
    with session_scope() as session:
        release_leases(session, report)
    with session_scope() as session:
        report.messages_presumed_lost = presume_lost_messages(
            session,
            include_unclaimed=executions_queue_empty,
            published_before=report.prefetched_by_the_dead_before,
            all_unclaimed=broker_emptied,
        )
    with session_scope() as session:
        report.jobs_redispatched = claim_stalled_fan_outs(session, all_unfinished=broker_emptied)
    return report


def release_leases(connection: Executor, report: SweepReport) -> None:
    """Release the leases of dead workers and of expired leases; fail what is exhausted."""
    now = utcnow()
    dead_heartbeats = workers.dead_workers(connection, now)
    dead = list(dead_heartbeats)
    report.dead_workers = dead
    if dead_heartbeats:
        # A worker fetches messages until it dies, at most one heartbeat after its last.
        report.prefetched_by_the_dead_before = max(dead_heartbeats.values()) + timedelta(
            seconds=get_settings().heartbeat_seconds
        )
    lost = Execution.lease_expires_at < now
    if dead:
        lost = or_(lost, Execution.lease_owner.in_(dead))
    rows = connection.execute(
        select(
            Execution.id, Execution.job_id, Execution.status, Execution.attempts, Job.max_attempts
        )
        .join(Job, Job.id == Execution.job_id)
        .where(
            Execution.dispatched_at.is_not(None),  # leased rows are dispatched: a small index
            Execution.status.in_(ACTIVE_EXECUTION_STATUSES),
            Execution.lease_token.is_not(None),
            lost,
        )
        .limit(SWEEP_BATCH)
    ).all()
    released = [r.id for r in rows if r.attempts < r.max_attempts]
    if released:
        connection.execute(
            update(Execution)
            .where(Execution.id.in_(released), Execution.lease_token.is_not(None))
            .values(
                lease_token=None,
                lease_owner=None,
                lease_expires_at=None,
                dispatched_at=None,  # ready: dispatch hands it out again
                updated_at=now,
            )
        )
    report.leases_released += len(released)
    exhausted = [(r.id, r.job_id, r.status) for r in rows if r.attempts >= r.max_attempts]
    report.executions_exhausted += fail_exhausted(connection, exhausted)
    workers.forget(connection, dead)


def fail_exhausted(connection: Executor, rows: list[tuple[uuid.UUID, uuid.UUID, str]]) -> int:
    """Fail executions that used every attempt without finishing (a poison message),
    keeping the last error they had, and move the counters."""
    now = utcnow()
    moves: dict[uuid.UUID, Counter[tuple[str, str]]] = {}
    failed: list[uuid.UUID] = []
    for execution_id, job_id, status in rows:
        updated = connection.execute(
            update(Execution)
            .where(Execution.id == execution_id, Execution.status == status)
            .values(**ended_failed(func.coalesce(Execution.error, EXHAUSTED_ERROR), now))
        )
        if updated.rowcount:  # type: ignore[attr-defined]
            moves.setdefault(job_id, Counter())[(status, ExecutionStatus.FAILED.value)] += 1
            failed.append(execution_id)
    outbox.emit_executions_finished(connection, failed, now)
    for job_id in sorted(moves):
        move_counters(connection, job_id, moves[job_id], now)
    return sum(sum(m.values()) for m in moves.values())


def presume_lost_messages(
    connection: Executor,
    *,
    include_unclaimed: bool,
    published_before: datetime | None = None,
    all_unclaimed: bool = False,
) -> int:
    """Hand back to dispatch the executions whose message is presumed lost.

    A retry (or deferred attempt) waits in a worker's memory until its countdown ends; if
    nobody claimed it ``JOBYARD_LOST_RETRY_GRACE_SECONDS`` after it was due, its worker
    died with it. A first attempt published ``JOBYARD_REDISPATCH_AFTER_SECONDS`` ago and
    never claimed is taken only with ``include_unclaimed`` (the executions queue is empty):
    while messages still wait there, an old publish is more likely queued than lost.
    When a worker died, a first attempt published before ``published_before`` may be in
    its prefetch buffer (unacknowledged, so Redis would give it back only after its
    visibility timeout, an hour): it is presumed lost at once. With ``all_unclaimed`` (the
    broker lost its data) every message is. A duplicate, if the message was not lost
    after all, is dropped by the claim.
    """
    settings = get_settings()
    now = utcnow()
    overdue_retry = and_(
        Execution.next_attempt_at.is_not(None),
        Execution.next_attempt_at < now - timedelta(seconds=settings.lost_retry_grace_seconds),
    )
    never_claimed = and_(
        Execution.next_attempt_at.is_(None),
        Execution.dispatched_at < now - timedelta(seconds=settings.redispatch_after_seconds),
    )
    lost = or_(overdue_retry, never_claimed) if include_unclaimed else overdue_retry
    if published_before is not None:
        prefetched = and_(
            Execution.next_attempt_at.is_(None), Execution.dispatched_at < published_before
        )
        lost = or_(lost, prefetched)
    if all_unclaimed:
        lost = true()
    ids = list(
        connection.execute(
            select(Execution.id)
            .where(
                Execution.dispatched_at.is_not(None),
                Execution.status.in_(ACTIVE_EXECUTION_STATUSES),
                Execution.lease_token.is_(None),
                lost,
            )
            .limit(SWEEP_BATCH)
        ).scalars()
    )
    if ids:
        connection.execute(
            update(Execution)
            .where(Execution.id.in_(ids), Execution.lease_token.is_(None))
            .values(dispatched_at=None, updated_at=now)
        )
    return len(ids)


def claim_stalled_fan_outs(
    connection: Executor, *, all_unfinished: bool = False
) -> list[uuid.UUID]:
    """Jobs whose fan-out must be published again, stamped so the next sweep waits.

    Never published (the broker was down when it was accepted); written by a process
    that is no longer alive (every chunk names its process in ``fan_out_owner``; a
    process silent for ``JOBYARD_WORKER_DEAD_AFTER_SECONDS`` is dead, or it was forgotten
    by an earlier sweep); or published and not moving at all: every chunk stamps
    ``dispatched_at``, so a fan-out silent for ``JOBYARD_FANOUT_STALLED_AFTER_SECONDS``
    lost its message. With ``all_unfinished`` (the broker lost its data), every one.
    """
    settings = get_settings()
    now = utcnow()
    never_published = and_(
        Job.dispatched_at.is_(None),
        Job.created_at < now - timedelta(seconds=settings.undispatched_after_seconds),
    )
    owner_alive = exists().where(
        WorkerProcess.id == Job.fan_out_owner,
        WorkerProcess.heartbeat_at >= workers.alive_since(now),
    )
    owner_gone = and_(Job.fan_out_owner.is_not(None), ~owner_alive)
    stalled = Job.dispatched_at < now - timedelta(seconds=settings.fanout_stalled_after_seconds)
    due = true() if all_unfinished else or_(never_published, owner_gone, stalled)
    job_ids = list(
        connection.execute(
            select(Job.id)
            .where(
                Job.fanned_out_at.is_(None),
                Job.parked.is_(False),
                Job.canceled_at.is_(None),
                due,
            )
            .limit(SWEEP_BATCH)
        ).scalars()
    )
    if job_ids:
        connection.execute(
            update(Job).where(Job.id.in_(job_ids)).values(dispatched_at=now, fan_out_owner=None)
        )
    return job_ids
