"""GET /api/v1/job-executions/{id}: one execution, only to its own organisation."""

from __future__ import annotations

import uuid

import pytest
from flask.testing import FlaskClient

from shared.engine import fanout
from tests.api.helpers import SEED_BODY, assert_error, assert_recent_timestamp
from tests.support import Tenant

EXECUTION_FIELDS = {
    "jobExecutionId",
    "jobId",
    "queryId",
    "model",
    "status",
    "executionNumber",
    "runNumber",
    "initiatedAt",
    "createdAt",
    "finishedAt",
    "country",
    "language",
    "text",
    "hasSources",
    "sources",
    "entities",
    "retrievedSources",
    "webSearch",
    "servedModel",
    "usage",
    "cost",
    "simulated",
    "error",
}


@pytest.fixture
def fanned_out(client: FlaskClient, tenant: Tenant) -> list[str]:
    """The tenant's triggered job fanned out in-process; its execution ids."""
    response = client.post(
        "/api/jobs/trigger",
        headers=tenant.headers(),
        json={"aiModels": ["sonar"], "executionCount": 1},
    )
    assert response.status_code == 201
    job_id = response.json["id"]
    assert fanout.fan_out_job(uuid.UUID(job_id)) == 3
    page = client.get(f"/api/jobs/{job_id}/executions", headers=tenant.headers()).json
    return [e["jobExecutionId"] for e in page["results"]]


def test_own_execution(client: FlaskClient, tenant: Tenant, fanned_out: list[str]) -> None:
    """A pending execution answers every documented field, without an answer yet."""
    response = client.get(f"/api/v1/job-executions/{fanned_out[0]}", headers=tenant.headers())
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == EXECUTION_FIELDS
    assert body["jobExecutionId"] == fanned_out[0]
    assert body["queryId"] in {str(q) for q in tenant.query_ids}
    assert (body["model"], body["status"], body["runNumber"]) == ("sonar", "pending", 1)
    assert (body["executionNumber"], body["language"], body["country"]) == (0, "en", "US")
    assert body["text"] is None and body["hasSources"] is False
    assert body["sources"] == [] and body["entities"] == []
    assert body["simulated"] is False and body["error"] is None
    assert body["initiatedAt"] is None and body["finishedAt"] is None
    assert_recent_timestamp(body["createdAt"])


def test_other_tenants_execution_is_404(
    client: FlaskClient, other_tenant: Tenant, fanned_out: list[str]
) -> None:
    """Another organisation cannot read the execution."""
    response = client.get(f"/api/v1/job-executions/{fanned_out[0]}", headers=other_tenant.headers())
    assert_error(response, 404, f"Job execution {fanned_out[0]} not found")


def test_unknown_execution_is_404(client: FlaskClient, tenant: Tenant) -> None:
    """An execution id that does not exist is a 404."""
    unknown = uuid.uuid4()
    response = client.get(f"/api/v1/job-executions/{unknown}", headers=tenant.headers())
    assert_error(response, 404, f"Job execution {unknown} not found")


@pytest.mark.parametrize("raw", ["abc", "123", "00000000-0000-0000-0000"])
def test_non_uuid_execution_is_404(client: FlaskClient, tenant: Tenant, raw: str) -> None:
    """An execution id that is not a UUID is a 404 (ids are UUIDs in the URL map)."""
    response = client.get(f"/api/v1/job-executions/{raw}", headers=tenant.headers())
    assert_error(response, 404, f"Cannot GET /api/v1/job-executions/{raw}")


def test_a_job_id_is_not_an_execution_id(client: FlaskClient, tenant: Tenant) -> None:
    """Looking up a job's id as an execution finds nothing."""
    response = client.post("/api/jobs/trigger", headers=tenant.headers(), json=SEED_BODY)
    job_id = response.json["id"]
    response = client.get(f"/api/v1/job-executions/{job_id}", headers=tenant.headers())
    assert_error(response, 404, f"Job execution {job_id} not found")
