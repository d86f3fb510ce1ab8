"""Cancel in the middle of a run, with a real worker: no new attempt, counters exact."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Execution
from tests.support import assert_counters_exact, job_row, make_tenant, running_worker

pytestmark = pytest.mark.every_database


def test_cancel_mid_run_stops_new_attempts_and_keeps_counters_exact(
    client: FlaskClient, tmp_path: Path, empty_broker: object
) -> None:
    """Executions finished before the cancel stay; the rest end failed with 'canceled'."""
    tenant = make_tenant(n_queries=5)
    # Two groups of 5 in flight at 50 ms: the 400 executions take about two seconds.
    env = {"JOBYARD_SIMULATED_LATENCY_MS": 50, "JOBYARD_GROUP_SIZE": 5}
    with running_worker(tmp_path, concurrency=2, **env):
        response = client.post(
            "/api/jobs/trigger",
            headers=tenant.headers(),
            json={"aiModels": ["gpt-4.1-mini", "claude-haiku-4-5"], "executionCount": 40},
        )
        job_id = response.json["id"]
        deadline = time.monotonic() + 30
        while job_row(job_id).success < 20:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        canceled = client.post(f"/api/jobs/{job_id}/cancel", headers=tenant.headers())
        assert canceled.status_code == 200, canceled.json
        time.sleep(1.5)  # attempts in flight at the cancel finish now, and must not count
    job = assert_counters_exact(job_id)
    assert job.status == "canceled" and job.canceled_at is not None
    assert job.pending == 0 and job.retrying == 0
    assert 20 <= job.success < 400 and job.failed == 400 - job.success
    with session_scope() as session:
        late_successes = session.scalar(
            select(func.count())
            .select_from(Execution)
            .where(
                Execution.job_id == uuid.UUID(job_id),
                Execution.status == "success",
                Execution.finished_at > job.canceled_at,
            )
        )
        errors = set(
            session.scalars(
                select(Execution.error).where(
                    Execution.job_id == uuid.UUID(job_id), Execution.status == "failed"
                )
            )
        )
    assert late_successes == 0
    assert errors == {"canceled"}
    again = client.post(f"/api/jobs/{job_id}/cancel", headers=tenant.headers())
    assert again.status_code == 200 and again.json["status"] == "canceled"
