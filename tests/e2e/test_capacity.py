"""Thousands of long calls in flight per worker process, and what happens to them when the
process dies or is stopped. Real workers, a real beat, the simulated provider.

A group's message is acknowledged once its executions are claimed and started, long
before their calls end: only their leases keep them. These tests kill or stop a worker
while its calls run and nothing of theirs is left in the broker.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import func, select

from shared.db import session_scope
from shared.messaging.queues import EXECUTIONS_QUEUE
from shared.models import Execution
from tests.bench.infra import broker_backlog
from tests.support import (
    assert_counters_exact,
    job_row,
    leased_executions,
    make_tenant,
    running_beat,
    running_worker,
    trigger_runs,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.slow

FAST_SWEEP = {
    "JOBYARD_HEARTBEAT_SECONDS": 0.5,
    "JOBYARD_WORKER_DEAD_AFTER_SECONDS": 2,
    "JOBYARD_SWEEP_INTERVAL_SECONDS": 1,
}


def attempts_of(job_id: str) -> dict[int, int]:
    """How many executions of the job used how many attempts."""
    with session_scope() as session:
        rows = session.execute(
            select(Execution.attempts, func.count())
            .where(Execution.job_id == uuid.UUID(job_id))
            .group_by(Execution.attempts)
        ).all()
    return {attempts: count for attempts, count in rows}


def test_a_worker_killed_with_thousands_in_flight_and_their_messages_acked(
    client: FlaskClient, tmp_path: Path, empty_broker: redis.Redis
) -> None:
    """4,000 executions at 30 s each, all claimed by one worker (capacity 5,000), every
    message acknowledged: kill -9. The sweep releases the dead worker's leases and a
    second worker runs them again; each counted once, counters exact."""
    tenant = make_tenant(n_queries=20)
    (tmp_path / "doomed").mkdir()
    (tmp_path / "rescuer").mkdir()
    doomed_env = {
        **FAST_SWEEP,
        "JOBYARD_SIMULATED_LATENCY": "constant:30000",
        "JOBYARD_WORKER_CAPACITY": 5000,
    }
    with running_worker(tmp_path / "doomed", 4, **doomed_env) as doomed:
        job_id = trigger_runs(client, tenant, runs=50)  # 4,000 executions
        wait_until(lambda: leased_executions(job_id) == 4000, 60, "every execution in flight")
        # Nothing of the job is left in the broker: every group's message was acked while
        # its calls run (the claim, not the message, holds them now).
        wait_until(
            lambda: broker_backlog(empty_broker, EXECUTIONS_QUEUE) == (0, 0),
            10,
            "the group messages to be acknowledged",
        )
        doomed.kill()
    assert job_row(job_id).success == 0  # killed with all 4,000 calls still running
    rescuer_env = {**FAST_SWEEP, "JOBYARD_SIMULATED_LATENCY": "constant:50"}
    with (
        running_worker(tmp_path / "rescuer", 4, **rescuer_env),
        running_beat(tmp_path / "rescuer", **rescuer_env),
    ):
        killed = time.monotonic()
        job = wait_for_job(job_id, timeout=90)
        recovered_after = time.monotonic() - killed
    print(f"\nkill -9 with 4,000 in flight: the job ended {recovered_after:.1f} s after")
    assert recovered_after < 60
    assert job.status == "completed" and job.success == 4000
    assert_counters_exact(job_id)
    assert attempts_of(job_id) == {2: 4000}  # the killed attempt, then one that counted


@pytest.mark.parametrize(
    ("drain_seconds", "calls_end_in_time"), [(15, True), (0.5, False)], ids=["drain", "hand-back"]
)
def test_a_warm_shutdown_stops_claiming_and_lets_calls_end_or_hands_them_back(
    client: FlaskClient,
    tmp_path: Path,
    empty_broker: redis.Redis,
    drain_seconds: float,
    calls_end_in_time: bool,
) -> None:
    """SIGTERM with 200 calls of 3 s in flight (capacity 200) and more groups waiting:
    with time to drain, the calls end and are counted; without, they are handed back at
    once (leases released, attempt not spent). Either way nothing is leased after the
    exit, and a new worker — no beat, no sweep — finishes the job: what the stopped one
    held or waited on was handed back to dispatch, not left for the sweep."""
    tenant = make_tenant(n_queries=10)
    env = {
        "JOBYARD_SIMULATED_LATENCY": "constant:3000",
        "JOBYARD_WORKER_CAPACITY": 200,
        "JOBYARD_GROUP_SIZE": 20,
        "JOBYARD_WORKER_DRAIN_SECONDS": drain_seconds,
    }
    (tmp_path / "stopped").mkdir()
    (tmp_path / "next").mkdir()
    with running_worker(tmp_path / "stopped", 4, **env) as stopped:
        job_id = trigger_runs(client, tenant, runs=25)  # 1,000 executions
        wait_until(lambda: leased_executions(job_id) == 200, 30, "200 calls in flight")
        began = time.monotonic()
        stopped.stop()  # SIGTERM
        stop_s = time.monotonic() - began
    assert leased_executions(job_id) == 0
    done = job_row(job_id).success
    if calls_end_in_time:
        assert done >= 200  # the calls in flight ended and were counted
    else:
        assert done == 0 and stop_s < 3  # handed back before the calls could end
    assert_counters_exact(job_id)
    with running_worker(
        tmp_path / "next", 4, **{**env, "JOBYARD_SIMULATED_LATENCY": "constant:10"}
    ):
        job = wait_for_job(job_id, timeout=60)
    assert job.status == "completed" and job.success == 1000
    assert_counters_exact(job_id)
    assert attempts_of(job_id) == {1: 1000}  # nothing ran twice, no attempt spent on a stop


def test_a_job_canceled_with_its_calls_in_flight_ends_canceled_and_frees_every_place(
    client: FlaskClient, tmp_path: Path, empty_broker: redis.Redis
) -> None:
    """2,000 calls of 3 s in flight, the worker full (capacity 2,000): cancel. The job ends
    canceled at once, nothing of it counts when the calls end, and every place comes back:
    another job's 2,000 executions are then all in flight together."""
    canceled_tenant, next_tenant = make_tenant(n_queries=10), make_tenant(n_queries=10)
    env = {"JOBYARD_SIMULATED_LATENCY": "constant:3000", "JOBYARD_WORKER_CAPACITY": 2000}
    with running_worker(tmp_path, 4, **env):
        job_id = trigger_runs(client, canceled_tenant, runs=50)  # 2,000 executions
        wait_until(lambda: leased_executions(job_id) == 2000, 30, "the worker to be full")
        response = client.post(f"/api/jobs/{job_id}/cancel", headers=canceled_tenant.headers())
        assert response.status_code == 200, response.json
        next_job = trigger_runs(client, next_tenant, runs=50)
        wait_until(lambda: leased_executions(next_job) == 2000, 30, "every place given back")
        finished = wait_for_job(next_job, timeout=60)
    job = assert_counters_exact(job_id)
    assert (job.status, job.success, job.failed) == ("canceled", 0, 2000)
    with session_scope() as session:
        errors = set(
            session.scalars(select(Execution.error).where(Execution.job_id == uuid.UUID(job_id)))
        )
    assert errors == {"canceled"}  # the late outcomes of its calls were not counted
    assert finished.status == "completed" and finished.success == 2000
    assert_counters_exact(next_job)
