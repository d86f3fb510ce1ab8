"""``POST /api/jobs/{id}/cancel`` without a worker: the counters and rows stay exact."""

from __future__ import annotations

import uuid

from flask.testing import FlaskClient
from sqlalchemy import select

from shared.db import session_scope
from shared.engine.fanout import fan_out_job
from shared.models import Execution
from tests.support import Tenant, assert_counters_exact

BODY = {"aiModels": ["gpt-4.1-mini", "sonar"], "executionCount": 2}


def trigger(client: FlaskClient, tenant: Tenant) -> str:
    response = client.post("/api/jobs/trigger", headers=tenant.headers(), json=BODY)
    assert response.status_code == 201
    job_id: str = response.json["id"]
    return job_id


def test_cancel_before_fan_out_writes_no_execution(client: FlaskClient, tenant: Tenant) -> None:
    """Canceled before any execution exists: the fan-out writes none, and the 12 planned
    ones leave the job's total (the counters count rows, and there are none)."""
    job_id = trigger(client, tenant)
    response = client.post(f"/api/jobs/{job_id}/cancel", headers=tenant.headers())
    assert response.status_code == 200, response.json
    body = response.json
    assert body["status"] == "canceled"
    assert (body["failedExecutions"], body["pendingExecutions"], body["totalExecutions"]) == (
        0,
        0,
        0,
    )
    assert body["finishedAt"] is not None
    assert fan_out_job(uuid.UUID(job_id)) == 0  # nothing written for a canceled job
    assert_counters_exact(job_id)
    with session_scope() as session:
        rows = session.scalars(
            select(Execution.id).where(Execution.job_id == uuid.UUID(job_id))
        ).all()
    assert rows == []


def test_cancel_after_fan_out_cancels_every_pending_execution(
    client: FlaskClient, tenant: Tenant
) -> None:
    """Canceled with its executions written and queued: they fail, the claim finds none."""
    job_id = trigger(client, tenant)
    assert fan_out_job(uuid.UUID(job_id)) == 12
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=tenant.headers()).status_code == 200
    job = assert_counters_exact(job_id)
    assert (job.status, job.failed, job.pending) == ("canceled", 12, 0)


def test_cancel_is_idempotent(client: FlaskClient, tenant: Tenant) -> None:
    """A second cancel answers the canceled job again and moves nothing."""
    job_id = trigger(client, tenant)
    first = client.post(f"/api/jobs/{job_id}/cancel", headers=tenant.headers()).json
    second = client.post(f"/api/jobs/{job_id}/cancel", headers=tenant.headers())
    assert second.status_code == 200
    assert second.json["status"] == first["status"] == "canceled"
    assert second.json["totalExecutions"] == first["totalExecutions"] == 0


def test_cancel_of_another_tenants_job_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another tenant's job is not found, and stays as it was."""
    job_id = trigger(client, tenant)
    response = client.post(f"/api/jobs/{job_id}/cancel", headers=other_tenant.headers())
    assert response.status_code == 404
    assert response.json["statusCode"] == 404
    assert client.get(f"/api/jobs/{job_id}", headers=tenant.headers()).json["status"] == "pending"


def test_cancel_with_a_malformed_id_is_404(client: FlaskClient, tenant: Tenant) -> None:
    """An id that is not a UUID cannot exist."""
    response = client.post("/api/jobs/not-a-uuid/cancel", headers=tenant.headers())
    assert response.status_code == 404


def test_cancel_requires_credentials(client: FlaskClient, tenant: Tenant) -> None:
    """No credential, no cancel."""
    job_id = trigger(client, tenant)
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 401
