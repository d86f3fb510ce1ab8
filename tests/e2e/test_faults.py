"""Nothing accepted is lost, and nothing is counted twice: faults with real processes."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from shared.db import session_scope
from shared.messaging import publisher
from shared.messaging.queues import RECOVERY_SWEEP_TASK
from shared.models import Execution
from shared.settings import reset_settings_cache
from tests.support import (
    assert_counters_exact,
    job_row,
    leased_executions,
    make_tenant,
    running_beat,
    running_worker,
    wait_for_job,
)

pytestmark = pytest.mark.every_database

MODELS = ["gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash", "sonar"]

# Short leases and redispatch delays so that recovery happens within seconds.
RECOVERY_ENV = {
    "JOBYARD_HEARTBEAT_SECONDS": 0.5,
    "JOBYARD_WORKER_DEAD_AFTER_SECONDS": 2,
    "JOBYARD_REDISPATCH_AFTER_SECONDS": 4,
    "JOBYARD_LOST_RETRY_GRACE_SECONDS": 2,
    "JOBYARD_FANOUT_STALLED_AFTER_SECONDS": 3,
    "JOBYARD_SWEEP_INTERVAL_SECONDS": 1,
}


@pytest.mark.slow
def test_worker_killed_mid_job_loses_and_double_counts_nothing(
    client: FlaskClient, tmp_path: Path, empty_broker: object
) -> None:
    """kill -9 during a 5,000-execution job (20-60 ms each, 200 in flight: seconds
    of work); a new worker and the sweep finish it, every execution counted exactly once."""
    tenant = make_tenant(n_queries=25)
    env = {
        **RECOVERY_ENV,
        "JOBYARD_SIMULATED_LATENCY_MS": 20,
        "JOBYARD_SIMULATED_LATENCY_JITTER_MS": 40,
        # A place per execution: without a bound the whole job is in flight at once and
        # over before it can be seen half done.
        "JOBYARD_WORKER_CAPACITY": 200,
        "JOBYARD_GROUP_SIZE": 25,
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_worker(tmp_path / "a", **env) as doomed:
        response = client.post(
            "/api/jobs/trigger",
            headers=tenant.headers(),
            json={"aiModels": MODELS, "executionCount": 50},
        )
        assert response.status_code == 201
        job_id = response.json["id"]
        assert response.json["totalExecutions"] == 5000
        deadline = time.monotonic() + 90
        while job_row(job_id).success < 1000:
            assert time.monotonic() < deadline, "the first worker made no progress"
            time.sleep(0.05)
        # Kill it the moment it is seen holding leases (on SQLite, where every
        # transaction waits its turn, a look can fall between two groups).
        while (in_flight := leased_executions(job_id)) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        doomed.kill()
    # The kill happened with work in the worker's hands, or the test proves nothing.
    assert in_flight > 0
    before = job_row(job_id)
    assert before.status == "processing" and before.success < 5000

    with running_worker(tmp_path / "b", **env), running_beat(tmp_path / "b", **env):
        job = wait_for_job(job_id, timeout=180)

    assert job.status == "completed", (job.success, job.failed)
    assert_counters_exact(job_id)
    with session_scope() as session:
        rows = session.execute(
            select(func.count(), func.max(Execution.attempts)).where(
                Execution.job_id == uuid.UUID(job_id), Execution.status == "success"
            )
        ).one()
    assert rows[0] == 5000  # every execution succeeded once: none lost, none counted twice
    assert rows[1] <= 3


def test_publish_failure_after_commit_is_dispatched_by_the_sweep(
    client: FlaskClient, tmp_path: Path, empty_broker: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis unreachable for the API: the job is accepted, and the sweep dispatches it later."""
    tenant = make_tenant()
    good_redis = publisher.get_settings().redis_url
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    reset_settings_cache()
    try:
        response = client.post(
            "/api/jobs/trigger",
            headers=tenant.headers(),
            json={"aiModels": ["gpt-4.1-mini"], "executionCount": 2},
        )
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert publisher.get_settings().redis_url == good_redis
    assert response.status_code == 201, response.json
    job_id = response.json["id"]
    accepted = job_row(job_id)
    assert accepted.dispatched_at is None and accepted.fanned_out_at is None
    assert accepted.status == "pending" and accepted.total == 6

    with running_worker(tmp_path):
        time.sleep(1.5)
        assert job_row(job_id).status == "pending"  # nothing was published: nothing ran
        publisher.publish(RECOVERY_SWEEP_TASK, [])
        job = wait_for_job(job_id, timeout=30)
    assert job.status == "completed" and job.success == 6
    assert_counters_exact(job_id)
