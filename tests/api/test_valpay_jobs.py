"""The Valpay-compatible ``/v1/jobs``: a bearer JWT only, ``{success, data, message}``
answers, and cursor pages that neither skip nor repeat a job while jobs are created."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared.db import session_scope
from shared.engine.jobs import new_job
from shared.models import Job
from shared.paging import encode_cursor
from tests.kb_support import (
    SOURCE_URL,
    create_job,
    create_kb,
    insert_orders,
    job_body,
    private_allowed,  # noqa: F401 - a fixture
    register,
    source_table,
)
from tests.support import Tenant

UNAUTHORIZED = {"statusCode": 401, "message": "Unauthorized - Invalid or missing token"}


def bearer(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.token}"}


def add_jobs(
    tenant: Tenant,
    n: int,
    *,
    job_type: str = "ai_queries",
    status: str = "pending",
    created_at: datetime | None = None,
) -> list[uuid.UUID]:
    """``n`` jobs written straight to the database (no fan-out: only their rows matter)."""
    with session_scope() as session:
        jobs = []
        for i in range(n):
            job = new_job(
                organisation_id=tenant.org_id, job_type=job_type, total=1, payload={"i": i}
            )
            job.status = status
            job.dispatched_at = None
            if created_at is not None:
                job.created_at = job.updated_at = created_at + timedelta(milliseconds=i)
            jobs.append(job)
        session.add_all(jobs)
        session.flush()
        return [j.id for j in jobs]


def list_jobs(client: FlaskClient, tenant: Tenant, **query: Any) -> dict[str, Any]:
    response = client.get("/v1/jobs", headers=bearer(tenant), query_string=query)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json
    assert body["success"] is True and body["message"]
    return body


def page_all(client: FlaskClient, tenant: Tenant, **query: Any) -> list[dict[str, Any]]:
    jobs, cursor = [], None
    while True:
        args = {**query, **({"lastEvaluatedKey": cursor} if cursor else {})}
        data = list_jobs(client, tenant, **args)["data"]
        jobs += data["jobs"]
        assert data["count"] == len(data["jobs"])
        cursor = data.get("lastEvaluatedKey")
        if cursor is None:
            return jobs


# -- authentication -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
def test_without_a_valid_token_401_is_the_documented_body(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    response = client.get("/v1/jobs?limit=1", headers=headers)
    assert response.status_code == 401 and response.json == UNAUTHORIZED
    response = client.post("/v1/jobs", headers=headers, json={})
    assert response.status_code == 401 and response.json == UNAUTHORIZED
    # /v1/jobs/{id} is super.AI's too (tests/api/test_shared_paths.py): a bearer token
    # names Valpay there; without one, the 401 keeps the documented statusCode and
    # message, and the message names both ways in.
    response = client.get(f"/v1/jobs/{uuid.uuid4()}", headers=headers)
    assert response.status_code == 401
    if "Bearer" in headers.get("Authorization", ""):
        assert response.json == UNAUTHORIZED
    else:
        assert response.json["statusCode"] == 401
        assert "Authorization: Bearer" in response.json["message"]
        assert "API-KEY" in response.json["message"]


def test_an_api_key_is_not_accepted(client: FlaskClient, tenant: Tenant) -> None:
    """Bearer only: the Mentionlab key of the same organisation does not open /v1/jobs."""
    response = client.get("/v1/jobs?limit=1", headers={"x-api-key": tenant.api_key})
    assert response.status_code == 401 and response.json == UNAUTHORIZED


# -- create and get -------------------------------------------------------------------


def create(client: FlaskClient, tenant: Tenant, body: dict[str, Any]) -> Any:
    return client.post("/v1/jobs", headers=bearer(tenant), json=body)


def test_create_an_ai_queries_job_and_get_it(client: FlaskClient, tenant: Tenant) -> None:
    payload = {
        "projectId": str(tenant.project_id),
        "aiModels": ["gpt-4.1-mini", "sonar"],
        "executionCount": 2,
    }
    response = create(client, tenant, {"jobType": "ai_queries", "payload": payload})
    assert response.status_code == 201, response.json
    body = response.json
    assert body["success"] is True and body["message"] == "Job created successfully"
    job = body["data"]
    assert job["jobType"] == "ai_queries" and job["resultType"] == "ai_answers"
    assert job["status"] == "pending"
    assert job["progress"]["total"] == len(tenant.query_ids) * 2 * 2
    assert job["payload"]["aiModels"] == ["gpt-4.1-mini", "sonar"]
    assert job["projectId"] == str(tenant.project_id)
    now_ms = datetime.now(UTC).timestamp() * 1000
    assert isinstance(job["createdAt"], int) and abs(job["createdAt"] - now_ms) < 60_000

    got = client.get(f"/v1/jobs/{job['jobId']}", headers=bearer(tenant))
    assert got.status_code == 200
    assert got.json["success"] is True and got.json["data"]["jobId"] == job["jobId"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": {}}, "jobType"),
        ({"jobType": "ai_queries"}, "payload"),
        ({"jobType": "mining", "payload": {}}, "jobType"),
        ({"jobType": "ai_queries", "payload": []}, "payload"),
        (
            {"jobType": "ai_queries", "payload": {"aiModels": ["sonar"], "executionCount": 1}},
            "payload.projectId",
        ),
        (
            {
                "jobType": "ai_queries",
                "payload": {"projectId": "PROJECT", "aiModels": ["gpt-2"], "executionCount": 1},
            },
            "payload.aiModels.0",
        ),
        (
            {
                "jobType": "ai_queries",
                "payload": {"projectId": "PROJECT", "aiModels": ["sonar"], "executionCount": 0},
            },
            "payload.executionCount",
        ),
    ],
)
def test_bad_input_is_400_naming_the_field_and_creates_nothing(
    client: FlaskClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    if isinstance(body.get("payload"), dict) and body["payload"].get("projectId") == "PROJECT":
        body["payload"]["projectId"] = str(tenant.project_id)
    response = create(client, tenant, body)
    assert response.status_code == 400, response.json
    assert response.json["success"] is False and response.json["message"]
    errors = response.json["data"]["errors"]
    assert any(e.startswith(f"{field}: ") for e in errors), errors
    with session_scope() as session:
        assert session.query(Job).filter(Job.organisation_id == tenant.org_id).count() == 0


def test_another_tenants_project_and_job_are_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    payload = {
        "projectId": str(other_tenant.project_id),
        "aiModels": ["sonar"],
        "executionCount": 1,
    }
    response = create(client, tenant, {"jobType": "ai_queries", "payload": payload})
    assert response.status_code == 404
    assert response.json["success"] is False and response.json["data"] is None
    (theirs,) = add_jobs(other_tenant, 1)
    for job_id in (theirs, uuid.uuid4(), "not-a-uuid"):
        response = client.get(f"/v1/jobs/{job_id}", headers=bearer(tenant))
        assert response.status_code == 404 and response.json["success"] is False
    assert list_jobs(client, tenant, limit=100)["data"]["jobs"] == []


# -- listing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"limit": 10, "sortBy": "cost"},
        {"limit": 10, "sortOrder": "up"},
        {"limit": 10, "status": "done"},
        {"limit": 10, "jobType": "mining"},
        {"limit": 10, "dateFrom": 5, "dateTo": 4},
        {"limit": 10, "dateFrom": -1},
        {"limit": 10, "lastEvaluatedKey": "not a cursor"},
        # Shaped like a cursor, with a value of the wrong type for the sort (made by hand).
        {"limit": 10, "lastEvaluatedKey": encode_cursor("createdAt", True, "x", uuid.uuid4())},
    ],
)
def test_bad_list_parameters_are_400(
    client: FlaskClient, tenant: Tenant, query: dict[str, Any]
) -> None:
    response = client.get("/v1/jobs", headers=bearer(tenant), query_string=query)
    assert response.status_code == 400, response.json
    assert response.json["success"] is False and response.json["message"]


def test_a_cursor_only_continues_its_own_order(client: FlaskClient, tenant: Tenant) -> None:
    add_jobs(tenant, 3)
    cursor = list_jobs(client, tenant, limit=1)["data"]["lastEvaluatedKey"]
    response = client.get(
        "/v1/jobs",
        headers=bearer(tenant),
        query_string={"limit": 1, "lastEvaluatedKey": cursor, "sortOrder": "asc"},
    )
    assert response.status_code == 400 and "sort" in response.json["message"]


def test_paging_while_jobs_are_created_skips_and_repeats_nothing(
    client: FlaskClient, tenant: Tenant
) -> None:
    """250 jobs with the same creation time in one transaction, paged by 100 while 50 more
    arrive between the pages: each of the 250 appears exactly once."""
    existing = set(add_jobs(tenant, 250, created_at=datetime.now(UTC) - timedelta(minutes=5)))
    with session_scope() as session:  # 20 of them share one instant: the id breaks ties
        session.query(Job).filter(Job.id.in_(list(existing)[:20])).update(
            {Job.created_at: datetime.now(UTC) - timedelta(minutes=4)}
        )
    for order in ("desc", "asc"):
        seen: list[str] = []
        cursor = None
        while True:
            add_jobs(tenant, 10)  # created while the client pages
            args: dict[str, Any] = {"limit": 100, "sortOrder": order}
            if cursor:
                args["lastEvaluatedKey"] = cursor
            data = list_jobs(client, tenant, **args)["data"]
            seen += [j["jobId"] for j in data["jobs"]]
            cursor = data.get("lastEvaluatedKey")
            if cursor is None:
                break
        assert len(seen) == len(set(seen))  # nothing repeated
        assert {str(i) for i in existing} <= set(seen)  # nothing that existed skipped


@pytest.mark.parametrize("sort_by", ["createdAt", "updatedAt", "status"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_every_sort_pages_in_order(
    client: FlaskClient, tenant: Tenant, sort_by: str, order: str
) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    for i, status in enumerate(["pending", "completed", "failed", "processing"]):
        add_jobs(tenant, 3, status=status, created_at=base + timedelta(minutes=i))
    jobs = page_all(client, tenant, limit=5, sortBy=sort_by, sortOrder=order)
    assert len(jobs) == 12
    keys = [(j[sort_by], j["jobId"]) for j in jobs]
    assert keys == sorted(keys, reverse=order == "desc")


def test_filters(client: FlaskClient, tenant: Tenant) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    old = add_jobs(tenant, 2, created_at=base)
    new = add_jobs(tenant, 3, created_at=base + timedelta(days=10), status="completed")
    batch = add_jobs(tenant, 2, job_type="batch", created_at=base + timedelta(days=20))

    def ids(**query: Any) -> set[str]:
        return {j["jobId"] for j in page_all(client, tenant, limit=100, **query)}

    def strs(*groups: list[uuid.UUID]) -> set[str]:
        return {str(i) for group in groups for i in group}

    assert ids() == strs(old, new, batch)
    assert ids(jobType="batch") == strs(batch)
    assert ids(resultType="data_points") == strs(batch)
    assert ids(resultType="ai_answers") == strs(old, new)
    assert ids(jobType="batch", resultType="ai_answers") == set()
    assert ids(status="completed") == strs(new)
    ms = int((base + timedelta(days=5)).timestamp() * 1000)
    assert ids(dateFrom=ms) == strs(new, batch)
    assert ids(dateTo=ms) == strs(old)
    end = int((base + timedelta(days=10, milliseconds=2)).timestamp() * 1000)
    assert ids(dateFrom=ms, dateTo=end) == strs(new)  # both ends inclusive


def test_the_family_has_its_own_spec_and_envelope(client: FlaskClient, tenant: Tenant) -> None:
    spec = client.get("/v1/jobs/openapi.json")
    assert spec.status_code == 200
    assert set(spec.json["paths"]) == {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/retry"}
    assert spec.json["components"]["securitySchemes"] == {
        "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    response = client.delete(f"/v1/jobs/{uuid.uuid4()}", headers=bearer(tenant))
    assert response.status_code == 405
    assert response.json["success"] is False and response.json["data"] is None


def test_create_a_batch_job(client: FlaskClient, tenant: Tenant) -> None:
    payload = {"appId": str(tenant.project_id), "inputs": [{"text": "a"}, {"text": "b"}]}
    response = create(client, tenant, {"jobType": "batch", "payload": payload})
    assert response.status_code == 201, response.json
    job = response.json["data"]
    assert (job["jobType"], job["resultType"]) == ("batch", "data_points")
    assert job["progress"]["total"] == 2
    bad = create(client, tenant, {"jobType": "batch", "payload": {"appId": payload["appId"]}})
    assert bad.status_code == 400
    assert any(e.startswith("payload.inputs: ") for e in bad.json["data"]["errors"])


def test_a_kb_sync_job_runs_a_sync_job_now(
    client: FlaskClient,
    tenant: Tenant,
    other_tenant: Tenant,
    private_allowed: None,  # noqa: F811
) -> None:
    """``kb_sync`` through /v1/jobs: a run of the named sync job, now; one at a time; the
    name is the caller's organisation's."""
    register(client, tenant, "shop", SOURCE_URL)
    create_kb(client, tenant, "orders_kb")
    with source_table() as (engine, table):
        insert_orders(engine, table, 3, start=0, at=datetime(2026, 11, 1))
        name = create_job(client, tenant, job_body("shop", table.name, "orders_kb"))["job_name"]
    response = create(client, tenant, {"jobType": "kb_sync", "payload": {"jobName": name}})
    assert response.status_code == 201, response.json
    job = response.json["data"]
    assert (job["jobType"], job["resultType"], job["status"]) == ("kb_sync", "kb_rows", "pending")
    history = client.get(f"/jobs/{name}/history", headers=tenant.headers()).json["data"]
    assert [(h["job_id"], h["trigger"]) for h in history] == [(job["jobId"], "api")]
    again = create(client, tenant, {"jobType": "kb_sync", "payload": {"jobName": name}})
    assert again.status_code == 409, again.json
    elsewhere = create(client, other_tenant, {"jobType": "kb_sync", "payload": {"jobName": name}})
    assert elsewhere.status_code == 404, elsewhere.json
    bad = create(client, tenant, {"jobType": "kb_sync", "payload": {}})
    assert bad.status_code == 400
    assert any(e.startswith("payload.jobName: ") for e in bad.json["data"]["errors"])
