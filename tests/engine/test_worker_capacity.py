"""A worker's capacity, counted per execution: a group's task waits for room, claims,
starts the group and returns; each outcome reported gives one place back, exactly once;
a warm shutdown hands back what still runs. The runtime of this process (event loop,
completer, heartbeat) against the real database, with an executor of the tests' own."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import select, update

from shared.db import connection_scope, session_scope
from shared.engine.claim import Claim
from shared.engine.fanout import fan_out_job
from shared.engine.job_types import JobTypeSpec, Report, register
from shared.engine.outcomes import Outcome
from shared.models import Execution, Job, utcnow
from tests.engine.conftest import execution_ids, make_job, plan_items
from tests.support import assert_counters_exact, remove_all_jobs, wait_until
from worker.runtime import Runtime, current_runtime, drain, stop_runtime
from worker.runtime.capacity import Capacity, CapacityClosed
from worker.runtime.groups import run_group

pytestmark = pytest.mark.every_database

TYPE = "test.capacity"
register(JobTypeSpec(name=TYPE, planner=plan_items))


class HeldExecutor:
    """Reports each claim when the test lets it go (``release``); with ``twice``, reports
    every outcome twice (a buggy executor)."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.started = 0
        self.twice = False

    async def execute(self, claims: Sequence[Claim], report: Report) -> None:
        self.started += len(claims)
        await self.go.wait()
        for claim in claims:
            report(claim, Outcome.succeeded({"index": claim.item["index"]}))
            if self.twice:
                report(claim, Outcome.succeeded({"again": True}))


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """This process's runtime with room for 30 executions; stopped afterwards."""
    monkeypatch.setenv("JOBYARD_WORKER_CAPACITY", "30")
    monkeypatch.setenv("JOBYARD_WORKER_DRAIN_SECONDS", "0")
    from shared.settings import reset_settings_cache

    reset_settings_cache()
    with session_scope() as session:
        remove_all_jobs(session)
    stop_runtime()
    yield current_runtime()
    stop_runtime()
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
def executor(runtime: Runtime) -> HeldExecutor:
    held = HeldExecutor()
    register(JobTypeSpec(name=TYPE, planner=plan_items, executor=held))
    return held


def let_go(runtime: Runtime, executor: HeldExecutor) -> None:
    runtime.loop.loop.call_soon_threadsafe(executor.go.set)


def new_job(organisation_id: uuid.UUID, n: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A fanned-out job of this file's type (its executions written, none dispatched)."""
    job_id = make_job(organisation_id, n)
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.type = TYPE
    fan_out_job(job_id)
    return job_id, execution_ids(job_id)


def test_a_group_returns_once_started_and_each_outcome_gives_its_place_back(
    runtime: Runtime, executor: HeldExecutor, organisation_id: uuid.UUID
) -> None:
    """The task returns while its calls run (their leases held); a duplicate id and a
    stale one take no place; every place comes back when the outcomes are reported."""
    job_id, ids = new_job(organisation_id, 20)
    summary = run_group([*ids, ids[0], uuid.uuid4()])
    assert summary["claimed"] == 20 and summary["dropped"] == 2
    wait_until(lambda: executor.started == 20, 5, "the group to start")
    assert runtime.capacity.in_flight == 20  # not the 22 ids of the message
    let_go(runtime, executor)
    wait_until(lambda: runtime.capacity.in_flight == 0, 5, "every place back")
    assert runtime.completer.wait_idle(10)
    job = assert_counters_exact(job_id)
    assert job.success == 20


def test_an_outcome_reported_twice_gives_one_place_back(
    runtime: Runtime, executor: HeldExecutor, organisation_id: uuid.UUID
) -> None:
    executor.twice = True
    job_id, ids = new_job(organisation_id, 10)
    run_group(ids[:5])
    run_group(ids[5:])
    wait_until(lambda: executor.started == 10, 5, "both groups to start")
    assert runtime.capacity.in_flight == 10
    let_go(runtime, executor)
    wait_until(lambda: runtime.capacity.in_flight == 0, 5, "every place back")
    assert runtime.completer.wait_idle(10)
    assert assert_counters_exact(job_id).success == 10


def test_a_group_waits_for_room_before_it_claims(
    runtime: Runtime, executor: HeldExecutor, organisation_id: uuid.UUID
) -> None:
    """30 places: a second group of 20 waits, claiming nothing, until the first ends."""
    job_id, ids = new_job(organisation_id, 40)
    run_group(ids[:20])
    second = threading.Thread(target=run_group, args=(ids[20:],))
    second.start()
    time.sleep(0.5)
    assert second.is_alive()  # no room for 20 more
    assert leased(ids[20:]) == 0  # and nothing of it claimed meanwhile
    let_go(runtime, executor)
    second.join(10)
    assert not second.is_alive()
    wait_until(lambda: runtime.capacity.in_flight == 0, 5, "every place back")
    assert runtime.completer.wait_idle(10)
    assert assert_counters_exact(job_id).success == 40


def test_a_warm_shutdown_hands_back_what_still_runs_without_spending_its_attempt(
    runtime: Runtime, executor: HeldExecutor, organisation_id: uuid.UUID
) -> None:
    """Drain time over with calls still running: their leases are released at once (not
    after the dead-worker window), their attempt given back; a group waiting for room
    gives its message's executions back to dispatch unclaimed."""
    runtime.refiller.stop()  # no fill meanwhile: what is ready stays so
    job_id, ids = new_job(organisation_id, 40)
    with session_scope() as session:  # both groups in the broker, as dispatch hands them out
        session.execute(
            update(Execution).where(Execution.id.in_(ids)).values(dispatched_at=utcnow())
        )
    run_group(ids[:20])
    waiting: dict[str, int] = {}
    second = threading.Thread(target=lambda: waiting.update(run_group(ids[20:])))
    second.start()
    wait_until(lambda: executor.started == 20, 5, "the first group to start")
    drain(runtime, 0.2)
    second.join(5)
    assert waiting == {"handed_back": 20}
    with connection_scope() as connection:
        rows = connection.execute(
            select(Execution.attempts, Execution.lease_owner, Execution.dispatched_at).where(
                Execution.id.in_(ids)
            )
        ).all()
    # Ready for dispatch again, nothing spent: the claimed and the never claimed alike.
    assert all(r.lease_owner is None and r.dispatched_at is None for r in rows)
    assert all(r.attempts == 0 for r in rows)
    let_go(runtime, executor)  # late outcomes: their leases are gone, nothing counted
    wait_until(lambda: runtime.capacity.in_flight == 0, 5, "every place back")
    assert runtime.completer.wait_idle(10)
    job = assert_counters_exact(job_id)
    assert (job.pending, job.success) == (40, 0)
    with pytest.raises(CapacityClosed):
        runtime.capacity.reserve(1)


def test_capacity_holds_its_bound_and_refuses_a_place_given_back_twice() -> None:
    capacity = Capacity(3)
    assert capacity.reserve(2) == 2
    big = threading.Thread(target=capacity.reserve, args=(5,))  # clamped to 3: waits for idle
    big.start()
    time.sleep(0.2)
    assert big.is_alive() and capacity.in_flight == 2
    capacity.release(2)
    big.join(5)
    assert not big.is_alive() and capacity.in_flight == 3
    capacity.release(3)
    with pytest.raises(ValueError):
        capacity.release(1)  # nothing in flight: a place given back twice is a bug


def leased(ids: list[uuid.UUID]) -> int:
    with connection_scope() as connection:
        return len(
            connection.execute(
                select(Execution.id).where(Execution.id.in_(ids), Execution.lease_token.isnot(None))
            ).all()
        )
