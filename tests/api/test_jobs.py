"""Reading jobs back: one job, the paginated list with filters and sorting, its executions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from shared.db import session_scope
from shared.engine import fanout
from shared.models import Job
from tests.api.conftest import Person
from tests.api.helpers import PAGE_RANGE, SEED_BODY, assert_error, bearer, validation_messages
from tests.support import Tenant


def trigger(client: FlaskClient, tenant: Tenant, headers: dict[str, str] | None = None) -> str:
    response = client.post("/api/jobs/trigger", headers=headers or tenant.headers(), json=SEED_BODY)
    assert response.status_code == 201, response.json
    job_id: str = response.json["id"]
    return job_id


def list_jobs(
    client: FlaskClient, tenant: Tenant, body: dict[str, Any] | None = None, qs: str = ""
) -> dict[str, Any]:
    response = client.post(f"/api/jobs/list{qs}", headers=tenant.headers(), json=body or {})
    assert response.status_code == 200, response.json
    page: dict[str, Any] = response.json
    return page


def ids(page: dict[str, Any]) -> list[str]:
    return [job["id"] for job in page["results"]]


def mark_completed(job_id: str) -> None:
    """Move a job's counters straight to all-success (as a finished run would)."""
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == uuid.UUID(job_id))
            .values(pending=0, success=Job.total, status="completed")
        )


# ------------------------------------------------------------------------------ one job


def test_get_own_job(client: FlaskClient, tenant: Tenant) -> None:
    """GET /api/jobs/{id} answers the job with its counters."""
    job_id = trigger(client, tenant)
    response = client.get(f"/api/jobs/{job_id}", headers=tenant.headers())
    assert response.status_code == 200
    body = response.json
    assert body["id"] == job_id and body["project"] == str(tenant.project_id)
    assert (body["totalExecutions"], body["pendingExecutions"], body["status"]) == (
        27,
        27,
        "pending",
    )
    assert body["startedAt"] is None and body["finishedAt"] is None


def test_get_reflects_the_counters(client: FlaskClient, tenant: Tenant) -> None:
    """The job's counters and status are read from the row, not cached from the trigger."""
    job_id = trigger(client, tenant)
    mark_completed(job_id)
    body = client.get(f"/api/jobs/{job_id}", headers=tenant.headers()).json
    assert (body["pendingExecutions"], body["successExecutions"], body["status"]) == (
        0,
        27,
        "completed",
    )


def test_get_other_tenants_job_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another organisation's job is hidden behind a 404."""
    job_id = trigger(client, other_tenant)
    response = client.get(f"/api/jobs/{job_id}", headers=tenant.headers())
    assert_error(response, 404, f"Job {job_id} not found")


def test_get_unknown_job_is_404(client: FlaskClient, tenant: Tenant) -> None:
    """A job id that does not exist is a 404."""
    unknown = uuid.uuid4()
    assert_error(
        client.get(f"/api/jobs/{unknown}", headers=tenant.headers()),
        404,
        f"Job {unknown} not found",
    )


def test_get_non_uuid_job_is_404(client: FlaskClient, tenant: Tenant) -> None:
    """A job id that is not a UUID is a 404."""
    assert_error(
        client.get("/api/jobs/job-1", headers=tenant.headers()), 404, "Cannot GET /api/jobs/job-1"
    )


# ----------------------------------------------------------------------------- the list


def test_list_envelope_and_default_limit(client: FlaskClient, tenant: Tenant) -> None:
    """The list pages with a default limit of 50 and holds only the caller's jobs."""
    mine = [trigger(client, tenant) for _ in range(2)]
    page = list_jobs(client, tenant)
    assert page["page"] == {
        "totalRecords": 2,
        "limit": 50,
        "currentPage": 1,
        "totalPages": 1,
        "nextPage": None,
        "prevPage": None,
    }
    assert sorted(ids(page)) == sorted(mine)


def test_list_is_scoped_to_the_organisation(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another organisation's jobs never appear."""
    theirs = trigger(client, other_tenant)
    mine = trigger(client, tenant)
    assert ids(list_jobs(client, tenant)) == [mine]
    assert ids(list_jobs(client, other_tenant)) == [theirs]


def test_list_paging(client: FlaskClient, tenant: Tenant) -> None:
    """limit=1 walks three jobs one page at a time, newest first by default."""
    created = [trigger(client, tenant) for _ in range(3)]
    pages = [list_jobs(client, tenant, qs=f"?limit=1&page={n}") for n in (1, 2, 3, 4)]
    assert [ids(p) for p in pages] == [[created[2]], [created[1]], [created[0]], []]
    assert pages[0]["page"] == {
        "totalRecords": 3,
        "limit": 1,
        "currentPage": 1,
        "totalPages": 3,
        "nextPage": 2,
        "prevPage": None,
    }
    assert (pages[1]["page"]["nextPage"], pages[1]["page"]["prevPage"]) == (3, 1)
    assert (pages[2]["page"]["nextPage"], pages[2]["page"]["prevPage"]) == (None, 2)


@pytest.mark.parametrize(
    ("qs", "line"),
    [
        ("?limit=0", "limit: Must be greater than or equal to 1 and less than or equal to 100."),
        ("?limit=101", "limit: Must be greater than or equal to 1 and less than or equal to 100."),
        ("?page=0", PAGE_RANGE),
        ("?page=x", "page: Not a valid integer."),
    ],
)
def test_list_paging_bounds(client: FlaskClient, tenant: Tenant, qs: str, line: str) -> None:
    """limit is 1..100 and page starts at 1."""
    response = client.post(f"/api/jobs/list{qs}", headers=tenant.headers(), json={})
    assert_error(response, 400, [line])


@pytest.mark.parametrize("limit", [1, 100])
def test_list_limit_bounds_are_inclusive(client: FlaskClient, tenant: Tenant, limit: int) -> None:
    """Both ends of 1..100 are accepted."""
    assert list_jobs(client, tenant, qs=f"?limit={limit}")["page"]["limit"] == limit


def test_list_filter_status(client: FlaskClient, tenant: Tenant) -> None:
    """``status`` keeps only the jobs in that status."""
    done, waiting = trigger(client, tenant), trigger(client, tenant)
    mark_completed(done)
    assert ids(list_jobs(client, tenant, {"status": "completed"})) == [done]
    assert ids(list_jobs(client, tenant, {"status": "pending"})) == [waiting]
    assert ids(list_jobs(client, tenant, {"status": "failed"})) == []


def test_list_bad_status_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """A status outside the enum is refused."""
    lines = validation_messages(
        client.post("/api/jobs/list", headers=tenant.headers(), json={"status": "done"})
    )
    assert len(lines) == 1 and lines[0].startswith("status: Must be one of: pending"), lines


def test_list_filter_created_by(client: FlaskClient, tenant: Tenant, teammate: Person) -> None:
    """``createdBy`` keeps the jobs one user triggered."""
    by_jane = trigger(client, tenant)
    by_sam = trigger(
        client, tenant, {**bearer(teammate.token), "x-project-id": str(tenant.project_id)}
    )
    assert ids(list_jobs(client, tenant, {"createdBy": str(tenant.user_id)})) == [by_jane]
    assert ids(list_jobs(client, tenant, {"createdBy": str(teammate.user_id)})) == [by_sam]
    assert ids(list_jobs(client, tenant, {"createdBy": str(uuid.uuid4())})) == []


def test_list_bad_created_by_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """createdBy must be a UUID."""
    response = client.post("/api/jobs/list", headers=tenant.headers(), json={"createdBy": "jane"})
    assert_error(response, 400, ["createdBy: Not a valid UUID."])


def test_list_sort_created_at(client: FlaskClient, tenant: Tenant) -> None:
    """sort createdAt ASC gives creation order, DESC the reverse."""
    created = [trigger(client, tenant) for _ in range(3)]
    asc = list_jobs(client, tenant, {"sort": [{"field": "createdAt", "direction": "ASC"}]})
    desc = list_jobs(client, tenant, {"sort": [{"field": "createdAt", "direction": "DESC"}]})
    assert ids(asc) == created
    assert ids(desc) == created[::-1]


def test_list_sort_status_then_created_at(client: FlaskClient, tenant: Tenant) -> None:
    """Several sort keys apply in order."""
    first, second, third = (trigger(client, tenant) for _ in range(3))
    mark_completed(second)
    sort = [{"field": "status", "direction": "ASC"}, {"field": "createdAt", "direction": "ASC"}]
    assert ids(list_jobs(client, tenant, {"sort": sort})) == [second, first, third]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sort": [{"field": "total"}]}, "sort.0.field"),
        ({"sort": [{"field": "createdAt", "direction": "up"}]}, "sort.0.direction"),
        ({"sort": {"field": "createdAt"}}, "sort"),
        ({"project": "x"}, "project"),
    ],
)
def test_list_bad_body_is_400(
    client: FlaskClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    """Bad sort entries and unknown fields are 400s naming the field."""
    lines = validation_messages(client.post("/api/jobs/list", headers=tenant.headers(), json=body))
    assert len(lines) == 1 and lines[0].startswith(f"{field}: "), lines


def test_list_by_project_header(client: FlaskClient, tenant: Tenant) -> None:
    """With x-project-id only that project's jobs are listed; without it, all of them."""
    mine = trigger(client, tenant)
    response = client.post(
        "/api/projects", headers=tenant.headers(project=False), json={"name": "Second"}
    )
    second = response.json["id"]
    client.post(
        "/api/queries", headers={**tenant.headers(), "x-project-id": second}, json={"query": "q"}
    )
    other = trigger(client, tenant, {**tenant.headers(), "x-project-id": second})
    assert ids(list_jobs(client, tenant)) == [mine]  # tenant.headers() names the first project
    response = client.post(
        "/api/jobs/list", headers={**tenant.headers(), "x-project-id": second}, json={}
    )
    assert ids(response.json) == [other]
    all_jobs = client.post("/api/jobs/list", headers=tenant.headers(project=False), json={})
    assert ids(all_jobs.json) == [other, mine]


def test_list_by_other_tenants_project_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Filtering on another organisation's project is a 404, not an empty page."""
    trigger(client, other_tenant)
    headers = {**tenant.headers(), "x-project-id": str(other_tenant.project_id)}
    response = client.post("/api/jobs/list", headers=headers, json={})
    assert_error(response, 404, f"Project {other_tenant.project_id} not found")


# ------------------------------------------------------------------------ its executions


def test_executions_before_fan_out_is_an_empty_page(client: FlaskClient, tenant: Tenant) -> None:
    """Without a worker no execution has been written yet: an empty page."""
    job_id = trigger(client, tenant)
    response = client.get(f"/api/jobs/{job_id}/executions", headers=tenant.headers())
    assert response.status_code == 200
    assert response.json == {
        "page": {
            "totalRecords": 0,
            "limit": 50,
            "currentPage": 1,
            "totalPages": 0,
            "nextPage": None,
            "prevPage": None,
        },
        "results": [],
    }


def test_executions_after_fan_out(client: FlaskClient, tenant: Tenant) -> None:
    """After the (in-process) fan-out every query x model x run is listed, paged."""
    job_id = trigger(client, tenant)
    assert fanout.fan_out_job(uuid.UUID(job_id)) == 27
    first = client.get(f"/api/jobs/{job_id}/executions?limit=10", headers=tenant.headers()).json
    assert first["page"]["totalRecords"] == 27 and first["page"]["totalPages"] == 3
    everything = [
        e
        for n in (1, 2, 3)
        for e in client.get(
            f"/api/jobs/{job_id}/executions?limit=10&page={n}", headers=tenant.headers()
        ).json["results"]
    ]
    assert len({e["jobExecutionId"] for e in everything}) == 27
    combos = {(e["queryId"], e["model"], e["runNumber"]) for e in everything}
    assert combos == {
        (str(q), m, r) for q in tenant.query_ids for m in SEED_BODY["aiModels"] for r in (1, 2, 3)
    }
    assert {e["status"] for e in everything} == {"pending"}
    assert {e["jobId"] for e in everything} == {job_id}
    job = client.get(f"/api/jobs/{job_id}", headers=tenant.headers()).json
    assert job["status"] == "processing" and job["startedAt"] is not None


def test_executions_of_other_tenants_job_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another organisation's job's executions are a 404."""
    job_id = trigger(client, other_tenant)
    response = client.get(f"/api/jobs/{job_id}/executions", headers=tenant.headers())
    assert_error(response, 404, f"Job {job_id} not found")


def test_executions_of_non_uuid_job_is_404(client: FlaskClient, tenant: Tenant) -> None:
    """A malformed job id in the executions path is a 404."""
    response = client.get("/api/jobs/nope/executions", headers=tenant.headers())
    assert_error(response, 404, "Cannot GET /api/jobs/nope/executions")


@pytest.mark.parametrize("qs", ["?limit=0", "?limit=101", "?page=0"])
def test_executions_paging_bounds(client: FlaskClient, tenant: Tenant, qs: str) -> None:
    """The executions list takes the same 1..100 limit."""
    job_id = trigger(client, tenant)
    response = client.get(f"/api/jobs/{job_id}/executions{qs}", headers=tenant.headers())
    assert response.status_code == 400 and isinstance(response.json["message"], list)
