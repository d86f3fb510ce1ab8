"""Redis restarted or flushed, PostgreSQL connections killed, a poison execution: the job
still ends with exact counters. Every test runs real workers and a real beat."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from shared.db import session_scope
from shared.models import Execution
from shared.settings import get_settings
from tests.support import (
    REDIS_OUTAGE_ERRORS,
    RedisServer,
    assert_counters_exact,
    job_row,
    make_tenant,
    running_beat,
    running_worker,
    trigger_runs,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.slow

RECOVERY_ENV = {
    "JOBYARD_HEARTBEAT_SECONDS": 0.5,
    "JOBYARD_WORKER_DEAD_AFTER_SECONDS": 2,
    "JOBYARD_REDISPATCH_AFTER_SECONDS": 3,
    "JOBYARD_LOST_RETRY_GRACE_SECONDS": 2,
    "JOBYARD_FANOUT_STALLED_AFTER_SECONDS": 3,
    "JOBYARD_SWEEP_INTERVAL_SECONDS": 1,
    "JOBYARD_SIMULATED_LATENCY_MS": 20,
    "JOBYARD_SIMULATED_LATENCY_JITTER_MS": 20,
    # Two groups of 10 in flight: the 2,000-execution jobs below take a few seconds, so
    # that each fault lands in the middle of one.
    "JOBYARD_GROUP_SIZE": 10,
}
SLOTS = 2
JOB_SIZE = 2000  # 10 queries x 4 models x 50 runs


@pytest.mark.parametrize("fault", ["restart", "flush"])
def test_redis_lost_mid_job(
    fault: str, client: FlaskClient, own_redis: RedisServer, tmp_path: Path
) -> None:
    """Everything queued in Redis is lost mid-job; workers reconnect, the sweep re-publishes."""
    tenant = make_tenant(n_queries=10)
    with (
        running_worker(
            tmp_path, SLOTS, allowed_errors=REDIS_OUTAGE_ERRORS, **RECOVERY_ENV
        ) as worker,
        running_beat(tmp_path, **RECOVERY_ENV),
    ):
        job_id = trigger_runs(client, tenant, runs=50)
        wait_until(lambda: job_row(job_id).success >= 300, 60, "the first executions")
        if fault == "restart":
            own_redis.kill()
            wait_until(lambda: job_row(job_id).status == "processing", 5, "a processing job")
            own_redis.start()
        else:
            own_redis.flushall()
        assert job_row(job_id).success < JOB_SIZE  # the fault hit the job in the middle
        job = wait_for_job(job_id, timeout=150)
        assert worker.proc.poll() is None  # the worker lived through it
    assert job.status == "completed", (job.success, job.failed)
    assert job.success == JOB_SIZE
    assert_counters_exact(job_id)


def test_postgres_connections_killed_mid_job(
    client: FlaskClient, tmp_path: Path, empty_broker: object
) -> None:
    """Every connection to the database is terminated three times during the job."""
    tenant = make_tenant(n_queries=10)
    database = get_settings().database_url.rsplit("/", 1)[1]
    admin_url = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://")
    terminated = 0
    with running_worker(tmp_path, SLOTS, **RECOVERY_ENV), running_beat(tmp_path, **RECOVERY_ENV):
        job_id = trigger_runs(client, tenant, runs=50)
        for round_ in range(1, 4):
            wait_until(lambda r=round_: job_row(job_id).success >= 400 * r, 60, "progress")
            with psycopg.connect(admin_url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                ).fetchall()
            terminated += len(rows)
        job = wait_for_job(job_id, timeout=150)
    assert terminated >= 3  # the workers' connections were among them
    assert job.status == "completed" and job.success == JOB_SIZE
    assert_counters_exact(job_id)


def test_poison_execution_fails_after_max_attempts(
    client: FlaskClient, tmp_path: Path, empty_broker: object
) -> None:
    """An execution whose worker dies during every attempt fails after max_attempts claims."""
    tenant = make_tenant(n_queries=1)
    env = {**RECOVERY_ENV, "JOBYARD_SIMULATED_LATENCY_MS": 60_000}  # every attempt hangs
    response = client.post(
        "/api/jobs/trigger",
        headers=tenant.headers(),
        json={"aiModels": ["gpt-4.1-mini"], "executionCount": 1},
    )
    job_id = response.json["id"]
    max_attempts = job_row(job_id).max_attempts

    def attempts() -> int:
        with session_scope() as session:
            return (
                session.scalar(
                    select(Execution.attempts).where(Execution.job_id == job_row(job_id).id)
                )
                or 0
            )

    with running_beat(tmp_path, **env):
        for attempt in range(1, max_attempts + 1):
            (tmp_path / str(attempt)).mkdir()
            with running_worker(tmp_path / str(attempt), **env) as worker:
                wait_until(lambda a=attempt: attempts() == a, 30, f"attempt {attempt}")
                worker.kill()  # the poison takes its worker down, every time
        (tmp_path / "last").mkdir()
        with running_worker(tmp_path / "last", **env):
            job = wait_for_job(job_id, timeout=30)
    assert job.status == "failed" and job.failed == 1
    assert_counters_exact(job_id)
    with session_scope() as session:
        execution = session.scalars(select(Execution).where(Execution.job_id == job.id)).one()
    assert execution.attempts == max_attempts
    assert execution.error is not None and "attempts exhausted" in execution.error
