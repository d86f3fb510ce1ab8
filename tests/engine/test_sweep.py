"""Each guard of the recovery sweep, against the real database."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select, update

from shared.db import session_scope
from shared.engine import workers
from shared.engine.fanout import fan_out_job
from shared.engine.outcomes import Outcome
from shared.engine.recovery import (
    EXHAUSTED_ERROR,
    SweepReport,
    claim_stalled_fan_outs,
    presume_lost_messages,
    release_leases,
    sweep,
)
from shared.messaging.broker import BROKER_MARK, broker_was_emptied
from shared.models import Execution, Job, WorkerProcess, utcnow
from tests.engine.conftest import claim, execution, execution_ids, finish, make_job
from tests.support import assert_counters_exact

pytestmark = pytest.mark.every_database


def register(worker_id: str, *, silent_for: float = 0.0) -> None:
    with session_scope() as session:
        workers.register(session, worker_id, 4, utcnow())
        session.execute(
            update(WorkerProcess)
            .where(WorkerProcess.id == worker_id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=silent_for))
        )


def sweep_leases() -> SweepReport:
    report = SweepReport()
    with session_scope() as session:
        release_leases(session, report)
    return report


def test_a_dead_workers_leases_are_released_and_a_live_ones_kept(
    organisation_id: uuid.UUID,
) -> None:
    job_id = make_job(organisation_id, 4)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    dead, live = f"dead-{uuid.uuid4().hex[:6]}", f"live-{uuid.uuid4().hex[:6]}"
    register(dead, silent_for=3600)
    register(live)
    claim(ids[:2], dead)
    claim(ids[2:], live)
    report = sweep_leases()
    assert dead in report.dead_workers and live not in report.dead_workers
    for i in ids[:2]:
        row = execution(i)
        assert (row.lease_token, row.lease_owner, row.dispatched_at) == (None, None, None)
    for i in ids[2:]:
        assert execution(i).lease_owner == live
    with session_scope() as session:
        assert session.get(WorkerProcess, dead) is None  # forgotten
        assert session.get(WorkerProcess, live) is not None
    assert len(claim(ids[:2], live)) == 2  # released: claimable at once, attempt 2


def test_an_expired_lease_is_released_and_a_current_one_kept(organisation_id: uuid.UUID) -> None:
    job_id = make_job(organisation_id, 2)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    owner = f"live-{uuid.uuid4().hex[:6]}"
    register(owner)
    claim(ids, owner)
    with session_scope() as session:
        session.execute(
            update(Execution)
            .where(Execution.id == ids[0])
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    sweep_leases()
    assert execution(ids[0]).lease_token is None
    assert execution(ids[1]).lease_owner == owner


def test_an_exhausted_execution_fails_instead_of_running_again(organisation_id: uuid.UUID) -> None:
    """A poison execution: its worker died during its last allowed attempt."""
    job_id = make_job(organisation_id, 2, max_attempts=1)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    dead = f"dead-{uuid.uuid4().hex[:6]}"
    register(dead, silent_for=3600)
    claim(ids, dead)
    report = sweep_leases()
    assert report.executions_exhausted == 2 and report.leases_released == 0
    job = assert_counters_exact(job_id)
    assert (job.status, job.failed) == ("failed", 2)
    assert execution(ids[0]).error == EXHAUSTED_ERROR


def test_an_exhausted_execution_keeps_its_last_error(organisation_id: uuid.UUID) -> None:
    job_id = make_job(organisation_id, 1, max_attempts=2)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    (first,) = claim(ids)
    finish([(first, Outcome.failed("HTTP 503", retryable=True))])
    with session_scope() as session:
        session.execute(
            update(Execution).values(next_attempt_at=utcnow()).where(Execution.id == ids[0])
        )
    dead = f"dead-{uuid.uuid4().hex[:6]}"
    register(dead, silent_for=3600)
    claim(ids, dead)
    sweep_leases()
    assert execution(ids[0]).error == "HTTP 503"
    job = assert_counters_exact(job_id)
    assert (job.retrying, job.failed) == (0, 1)


def test_a_retry_whose_message_was_lost_is_handed_back(organisation_id: uuid.UUID) -> None:
    """Well past due and unclaimed: handed back to dispatch. Not yet overdue: left alone."""
    job_id = make_job(organisation_id, 2)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    now = utcnow()
    with session_scope() as session:
        session.execute(
            update(Execution)
            .where(Execution.id == ids[0])
            .values(status="retrying", next_attempt_at=now - timedelta(hours=1), dispatched_at=now)
        )
        session.execute(
            update(Execution)
            .where(Execution.id == ids[1])
            .values(status="retrying", next_attempt_at=now, dispatched_at=now)
        )
        session.execute(update(Job).where(Job.id == job_id).values(pending=0, retrying=2))
    with session_scope() as session:
        assert presume_lost_messages(session, include_unclaimed=False) >= 1
    assert execution(ids[0]).dispatched_at is None
    assert execution(ids[1]).dispatched_at is not None


def test_a_never_claimed_message_is_presumed_lost_only_when_the_queue_is_empty(
    organisation_id: uuid.UUID,
) -> None:
    job_id = make_job(organisation_id, 1)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    with session_scope() as session:
        session.execute(
            update(Execution)
            .where(Execution.id == ids[0])
            .values(dispatched_at=utcnow() - timedelta(hours=1))
        )
    with session_scope() as session:
        presume_lost_messages(session, include_unclaimed=False)
    assert execution(ids[0]).dispatched_at is not None  # may still be queued
    with session_scope() as session:
        presume_lost_messages(session, include_unclaimed=True)
    assert execution(ids[0]).dispatched_at is None


def test_a_message_a_dead_worker_may_have_prefetched_is_presumed_lost_at_once(
    organisation_id: uuid.UUID,
) -> None:
    """Published before the dead worker's last heartbeat (plus one beat) and never claimed:
    it may sit in the dead worker's prefetch buffer, so it is handed back even while the
    queue is not empty. One published after the worker died is left queued."""
    job_id = make_job(organisation_id, 2)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    register(f"dead-{uuid.uuid4().hex[:6]}", silent_for=3600)
    with session_scope() as session:
        session.execute(
            update(Execution)
            .where(Execution.id == ids[0])
            .values(dispatched_at=utcnow() - timedelta(hours=2))
        )
        session.execute(
            update(Execution).where(Execution.id == ids[1]).values(dispatched_at=utcnow())
        )
    report = sweep_leases()
    assert report.prefetched_by_the_dead_before is not None
    with session_scope() as session:
        presume_lost_messages(
            session,
            include_unclaimed=False,
            published_before=report.prefetched_by_the_dead_before,
        )
    assert execution(ids[0]).dispatched_at is None
    assert execution(ids[1]).dispatched_at is not None


def test_a_stalled_fan_out_is_published_again_but_not_a_canceled_one(
    organisation_id: uuid.UUID,
) -> None:
    stalled, canceled, moving = (make_job(organisation_id, 3) for _ in range(3))
    long_ago = utcnow() - timedelta(hours=1)
    with session_scope() as session:
        session.execute(
            update(Job).where(Job.id.in_([stalled, canceled])).values(dispatched_at=long_ago)
        )
        session.execute(update(Job).where(Job.id == canceled).values(canceled_at=long_ago))
    with session_scope() as session:
        found = claim_stalled_fan_outs(session)
    assert stalled in found and canceled not in found and moving not in found
    with session_scope() as session:
        assert claim_stalled_fan_outs(session).count(stalled) == 0  # stamped: not twice
        stamp = session.scalar(select(Job.dispatched_at).where(Job.id == stalled))
    assert stamp is not None and stamp > long_ago


def fan_out_in_progress(job_id: uuid.UUID, owner: str) -> None:
    """The job's fan-out wrote its last chunk a moment ago, from ``owner``'s process."""
    with session_scope() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(dispatched_at=utcnow(), fan_out_owner=owner)
        )


def test_a_fan_out_whose_process_died_is_taken_over_at_once(
    organisation_id: uuid.UUID,
) -> None:
    """Its last chunk is seconds old (not stalled by the clock), but its writer's heartbeat
    stopped, or its row was forgotten by an earlier sweep: it is published again. A fan-out
    whose writer beats is left to it."""
    dead, forgotten, alive = (make_job(organisation_id, 3) for _ in range(3))
    dead_worker, live_worker = f"dead-{uuid.uuid4().hex[:6]}", f"live-{uuid.uuid4().hex[:6]}"
    register(dead_worker, silent_for=3600)
    register(live_worker)
    fan_out_in_progress(dead, dead_worker)
    fan_out_in_progress(forgotten, f"forgotten-{uuid.uuid4().hex[:6]}")
    fan_out_in_progress(alive, live_worker)
    with session_scope() as session:
        found = claim_stalled_fan_outs(session)
    assert dead in found and forgotten in found and alive not in found
    with session_scope() as session:
        owners = dict(
            session.execute(select(Job.id, Job.fan_out_owner).where(Job.id == dead)).all()
        )
        assert claim_stalled_fan_outs(session).count(dead) == 0  # stamped, owner cleared
    assert owners[dead] is None


def test_a_broker_that_lost_its_data_gets_everything_unclaimed_again(
    organisation_id: uuid.UUID,
) -> None:
    """Redis restarted empty: executions handed out a moment ago (and not claimed) are
    handed out again at once, though the queue is not empty and they are recent; a
    claimed one stays with its worker; every unfinished fan-out is published again."""
    job_id = make_job(organisation_id, 3)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    with session_scope() as session:
        session.execute(
            update(Execution).where(Execution.id.in_(ids)).values(dispatched_at=utcnow())
        )
    claim(ids[:1])
    unfinished = make_job(organisation_id, 2)
    live_worker = f"live-{uuid.uuid4().hex[:6]}"
    register(live_worker)
    fan_out_in_progress(unfinished, live_worker)
    with session_scope() as session:
        presume_lost_messages(session, include_unclaimed=False)
        assert unfinished not in claim_stalled_fan_outs(session)
    assert execution(ids[1]).dispatched_at is not None  # without the sign: may be queued
    report = sweep(executions_queue_empty=False, broker_emptied=True)
    assert report.messages_presumed_lost >= 2
    assert execution(ids[0]).dispatched_at is not None  # leased: its worker has it
    assert execution(ids[1]).dispatched_at is None and execution(ids[2]).dispatched_at is None
    assert unfinished in report.jobs_redispatched


def test_the_broker_mark_says_when_redis_forgot_everything(broker: redis.Redis) -> None:
    """The mark left in the broker: absent once at the start, then present, absent again
    after the broker lost its data."""
    broker.delete(BROKER_MARK)
    assert broker_was_emptied() is True
    assert broker_was_emptied() is False
    broker.flushdb()
    assert broker_was_emptied() is True
    assert broker_was_emptied() is False
