"""Dispatch: the broker holds a few groups per live worker, unclaimed (what is in flight is
the workers' own bound), handed out round-robin over organisations, then over each
organisation's jobs."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, update

from shared.accounts.organisations import create_organisation
from shared.db import connection_scope, new_session, session_scope
from shared.engine import dispatch, workers
from shared.engine.claim import claim_group
from shared.engine.fanout import write_chunk
from shared.engine.job_types import JobTypeSpec, planner_for, register
from shared.engine.jobs import new_job
from shared.models import Execution, Job, utcnow
from shared.settings import reset_settings_cache
from tests.engine.conftest import dispatch_lock_held, dispatched, make_job, plan_items
from tests.support import remove_all_jobs

pytestmark = pytest.mark.every_database


@pytest.fixture
def quiet_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No other job or worker in the database; groups of 10; one live worker holding up to
    1,000 executions in flight, 3 groups queued for it (so the broker should hold about
    3 x 10 = 30 executions unclaimed)."""
    monkeypatch.setenv("JOBYARD_GROUP_SIZE", "10")
    monkeypatch.setenv("JOBYARD_DISPATCH_QUEUE_GROUPS", "3")
    reset_settings_cache()
    with session_scope() as session:
        remove_all_jobs(session)
        workers.register(session, "dispatch-test", 1000, utcnow())
    yield
    monkeypatch.undo()
    reset_settings_cache()


def write_rows(job_id: uuid.UUID) -> None:
    """Write a job's executions without dispatching any (as if no room were left)."""
    with new_session() as reader:
        job = reader.get(Job, job_id)
        assert job is not None
        items = list(planner_for(job.type)(reader, job))
    with connection_scope() as connection:
        write_chunk(connection, job_id, 0, items)


def take() -> list[list[uuid.UUID]]:
    with connection_scope() as connection:
        return dispatch.take_groups(connection, utcnow())


def job_of(group: list[uuid.UUID]) -> uuid.UUID:
    with session_scope() as session:
        jobs = set(session.scalars(select(Execution.job_id).where(Execution.id.in_(group))))
    assert len(jobs) == 1  # a group is one job's
    return jobs.pop()


def finish_all(groups: list[list[uuid.UUID]]) -> None:
    ids = [i for g in groups for i in g]
    with session_scope() as session:
        session.execute(update(Execution).where(Execution.id.in_(ids)).values(status="success"))


def test_the_broker_holds_the_capacity_not_the_job(quiet_engine: None) -> None:
    organisation = new_organisation()
    job_id = make_job(organisation, 10_000)
    write_rows(job_id)
    groups = take()
    dispatched = sum(len(g) for g in groups)
    assert 30 <= dispatched < 30 + 10  # the target, rounded up to whole groups
    assert take() == []  # nothing finished: no room
    finish_all(groups[:1])
    assert sum(len(g) for g in take()) == 10  # one group finished: one group more
    with session_scope() as session:
        outstanding = session.scalar(
            select(func.count()).where(
                Execution.job_id == job_id, Execution.dispatched_at.is_not(None)
            )
        )
    assert outstanding == dispatched + 10


def claim_all(groups: list[list[uuid.UUID]], owner: str = "dispatch-test") -> None:
    with connection_scope() as connection:
        for group in groups:
            assert len(claim_group(connection, group, owner)) == len(group)


def test_claimed_executions_leave_the_broker_room_to_refill(quiet_engine: None) -> None:
    """A worker that claims a group has room for the next at once, whether or not its
    calls have ended: the broker's bound is what waits unclaimed, and what is in flight
    is bounded by the worker's capacity."""
    job_id = make_job(new_organisation(), 10_000)
    write_rows(job_id)
    groups = take()
    assert sum(len(g) for g in groups) == 30
    claim_all(groups[:2])  # in flight now, nothing finished
    refill = take()
    assert sum(len(g) for g in refill) == 20  # two groups claimed: two groups more
    assert take() == []  # the broker holds 30 unclaimed again


def test_a_worker_with_little_capacity_gets_no_more_queued_than_it_holds(
    quiet_engine: None,
) -> None:
    """The broker's share for a worker is the smaller of its capacity and the configured
    groups; a dispatcher (capacity 0) adds none."""
    with session_scope() as session:
        remove_all_jobs(session)
        workers.register(session, "small-worker", 12, utcnow())
        workers.register(session, "a-dispatcher", 0, utcnow())
    job_id = make_job(new_organisation(), 1000)
    write_rows(job_id)
    assert sum(len(g) for g in take()) == 20  # 12, rounded up to whole groups of 10


def new_organisation() -> uuid.UUID:
    with session_scope() as session:
        return create_organisation(session, "dispatch").id


def test_round_robin_over_organisations_then_their_jobs(
    quiet_engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBYARD_DISPATCH_QUEUE_GROUPS", "20")  # room for 20 groups
    reset_settings_cache()
    busy, small = new_organisation(), new_organisation()
    busy_jobs = [make_job(busy, 1000), make_job(busy, 1000)]
    small_job = make_job(small, 30)
    for job_id in (*busy_jobs, small_job):
        write_rows(job_id)
    order = [job_of(g) for g in take()]
    assert len(order) == 20
    # The small organisation's three groups come every other group, not after the busy one's.
    assert [i for i, j in enumerate(order) if j == small_job][:3] in ([0, 2, 4], [1, 3, 5])
    busy_order = [j for j in order if j != small_job]
    # The busy organisation's two jobs alternate.
    assert all(a != b for a, b in itertools.pairwise(busy_order))
    assert set(busy_order) == set(busy_jobs)


def test_a_new_small_job_is_served_next(quiet_engine: None) -> None:
    """A big job holds every slot; a small job of another organisation arrives: the next
    room goes to it, not to the big job."""
    big, late = new_organisation(), new_organisation()
    big_job = make_job(big, 5000)
    write_rows(big_job)
    first = take()
    small_job = make_job(late, 5)
    write_rows(small_job)
    assert take() == []  # no room yet
    finish_all(first[:1])
    after = take()
    assert job_of(after[0]) == small_job and len(after[0]) == 5
    assert [job_of(g) for g in after[1:]] == [big_job]  # the rest of the room: the big job


HEAVY_TYPE = "test.heavy"  # each execution a big piece of work: dispatched alone
register(JobTypeSpec(name=HEAVY_TYPE, planner=plan_items, group_size=1))


def test_a_type_with_its_own_group_size_is_handed_out_in_its_groups_weighted(
    quiet_engine: None,
) -> None:
    """Groups of one for the heavy type, each weighing a default group (10): the broker
    holds 3 heavy executions (30 / 10), not 30, and a heavy one finished makes room for
    one more; a default job beside them still gets its turn."""
    organisation = new_organisation()
    with session_scope() as session:
        heavy = new_job(
            organisation_id=organisation, job_type=HEAVY_TYPE, total=50, payload={"n": 50}
        )
        session.add(heavy)
        session.flush()
        heavy_id = heavy.id
    write_rows(heavy_id)
    groups = take()
    assert [len(g) for g in groups] == [1, 1, 1]
    assert take() == []
    finish_all(groups[:1])
    assert [len(g) for g in take()] == [1]
    light = make_job(new_organisation(), 100)
    write_rows(light)
    finish_all(groups[1:])
    assert {job_of(g) for g in take()} == {heavy_id, light}


def test_a_fill_that_does_not_wait_leaves_the_dispatch_to_the_one_running(
    quiet_engine: None,
) -> None:
    job_id = make_job(new_organisation(), 100)
    write_rows(job_id)
    with dispatch_lock_held():
        assert dispatch.fill(wait=False) == 0  # at once, not behind the other fill
        assert dispatched(job_id) == 0
    assert 30 <= dispatch.fill(wait=False) < 40  # the lock is free: it dispatches
    assert dispatched(job_id) >= 30
