"""Cancels racing fan-outs, with a real worker: every job ends exact, on every database.

A cancel and a fan-out chunk of the same job must be ordered: on PostgreSQL by the job's
advisory lock, on SQLite by each transaction taking the write lock at its start (see
shared/sqlite.py). A hostile audit found SQLite's deferred transactions let a chunk read
"not canceled", the cancel commit, and the chunk insert rows the canceled job never
counted (a canceled job with total 0 and 5,000 executions listed).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.support import (
    assert_counters_exact,
    execution_status_counts,
    job_row,
    make_tenant,
    running_worker,
    wait_for_job,
)

pytestmark = [pytest.mark.slow, pytest.mark.every_database]

MODELS = ["gpt-4.1-mini", "claude-haiku-4-5", "sonar"]


def test_cancels_at_every_moment_of_a_fan_out_leave_each_job_exact(
    client: FlaskClient, tmp_path: Path, empty_broker: object
) -> None:
    """Five big jobs, each canceled at another moment: before its fan-out starts, after
    a few chunks, in the middle, near the end, and after it while executions run."""
    tenant = make_tenant(n_queries=100)
    # Small chunks, so that a fan-out is many transactions, each a chance to race; slow
    # answers, so that each job is still running when its cancel comes: with a place per
    # execution every written row starts at once, and on a loaded machine the poll below
    # can see its threshold seconds after the rows were written (seen on SQLite in CI).
    env = {"JOBYARD_FANOUT_CHUNK_SIZE": 150, "JOBYARD_SIMULATED_LATENCY_MS": 8000}
    cancel_after_rows = [0, 300, 1500, 2600, None]  # None: once the fan-out is over
    job_ids: list[str] = []
    with running_worker(tmp_path, concurrency=4, **env) as worker:

        def stalled(what: str) -> str:  # what the worker was doing, should a wait time out
            job = job_row(job_id)
            state = f"total {job.total}, status {job.status}, fanned out {job.fanned_out_at}"
            return f"{what} of {job_id} ({state}):\n{worker.log_path.read_text()[-4000:]}"

        for threshold in cancel_after_rows:
            response = client.post(
                "/api/jobs/trigger",
                headers=tenant.headers(),
                json={"aiModels": MODELS, "executionCount": 10},  # 3,000 executions
            )
            assert response.status_code == 201, response.json
            job_id = response.json["id"]
            job_ids.append(job_id)
            deadline = time.monotonic() + 60
            while threshold is not None and sum(execution_status_counts(job_id).values()) < (
                threshold
            ):
                assert time.monotonic() < deadline, stalled("the fan-out did not move")
                time.sleep(0.002)
            while threshold is None and job_row(job_id).fanned_out_at is None:
                assert time.monotonic() < deadline, stalled("the fan-out did not end")
                time.sleep(0.01)
            canceled = client.post(f"/api/jobs/{job_id}/cancel", headers=tenant.headers())
            assert canceled.status_code == 200, canceled.json
        ended = [wait_for_job(job_id, timeout=120) for job_id in job_ids]
        time.sleep(1.5)  # a chunk or an attempt that raced the cancel has landed by now
    assert [job.status for job in ended] == ["canceled"] * len(job_ids)
    for job_id in job_ids:
        job = assert_counters_exact(job_id)
        assert job.pending == 0 and job.retrying == 0, (job_id, job.pending, job.retrying)
        assert job.success + job.failed == job.total
