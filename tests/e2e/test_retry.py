"""Retry on demand with a real worker: a run whose executions failed (one attempt each, a
failing provider) is retried once the provider is well again, and completes with exact
counters, every execution run again once."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from shared.db import session_scope
from shared.models import Execution
from shared.settings import reset_settings_cache
from tests.support import Tenant, assert_counters_exact, running_worker, wait_for_job

pytestmark = pytest.mark.every_database


def test_failed_executions_retried_with_the_failure_gone_succeed(
    client: FlaskClient,
    tenant: Tenant,
    tmp_path: Path,
    empty_broker: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBYARD_MAX_ATTEMPTS", "1")  # the API snapshots it onto the job
    reset_settings_cache()
    for name in ("failing", "well"):
        (tmp_path / name).mkdir()
    try:
        body = {"aiModels": ["gpt-4.1-mini", "sonar"], "executionCount": 4}  # 24 executions
        with running_worker(
            tmp_path / "failing", with_sender=False, JOBYARD_SIMULATED_FAILURE_RATE=0.5
        ):
            response = client.post("/api/jobs/trigger", headers=tenant.headers(), json=body)
            assert response.status_code == 201, response.json
            job_id = response.json["id"]
            first = wait_for_job(job_id, timeout=60)
        assert first.status == "partial_failed", (first.success, first.failed)
        with session_scope() as session:
            failed = set(
                session.scalars(
                    select(Execution.id).where(
                        Execution.job_id == uuid.UUID(job_id), Execution.status == "failed"
                    )
                )
            )
        assert len(failed) == first.failed

        with running_worker(tmp_path / "well", with_sender=False, JOBYARD_SIMULATED_FAILURE_RATE=0):
            retried = client.post(f"/api/jobs/{job_id}/retry", headers=tenant.headers())
            assert retried.status_code == 200, retried.json
            assert retried.json["status"] == "processing"
            assert retried.json["pendingExecutions"] == first.failed
            job = wait_for_job(job_id, timeout=60)
    finally:
        monkeypatch.undo()
        reset_settings_cache()

    assert job.status == "completed"
    job = assert_counters_exact(job_id)
    assert (job.success, job.failed, job.total) == (24, 0, 24)
    assert job.finished_at is not None and job.finished_at > first.finished_at
    with session_scope() as session:
        rows = session.scalars(select(Execution).where(Execution.job_id == uuid.UUID(job_id)))
        for row in rows:
            assert row.status == "success" and row.error is None and row.result is not None
            assert row.attempts == 1  # the retried ones on their fresh budget, once
            if row.id in failed:
                assert row.finished_at is not None and row.finished_at > first.finished_at
    answer = client.get(f"/api/jobs/{job_id}", headers=tenant.headers()).json
    assert (answer["status"], answer["successExecutions"]) == ("completed", 24)
