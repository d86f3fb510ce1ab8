"""/api/cached-jobs: the seed's request, re-posting, running now, reading back, bad input,
tenant isolation, and how a project's recurrence sets its next run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from shared.ai_models import PROVIDERS
from shared.db import session_scope
from shared.engine import outbox
from shared.engine.counters import move_counters
from shared.mentionlab.models import CachedJob
from shared.mentionlab.recurrence import RECURRENCE_KIND
from shared.models import Job, utcnow
from shared.settings import reset_settings_cache
from tests.api.helpers import (
    PAGE_RANGE,
    assert_error,
    assert_recent_timestamp,
    job_count,
    validation_messages,
)
from tests.periodic_support import next_slot
from tests.support import Tenant

# The seed's example request body, byte for byte, but for the query id (which must exist).
SEED_QUERY_ID = "123e4567-e89b-12d3-a456-426614174000"
SEED_REQUEST = """
{
  "cachedJobs": [
    {
      "queryId": "123e4567-e89b-12d3-a456-426614174000",
      "aiModels": [
        "openai",
        "anthropic",
        "google-generative-ai"
      ],
      "executionCount": 1
    }
  ]
}
"""
SEED_FIELDS = {
    "id",
    "project",
    "query_id",
    "query",
    "aiModels",
    "executionCount",
    "language",
    "country",
    "status",
    "updatedAt",
    "createdAt",
    "restricted",
}
SEED_MODELS = ["gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash"]
PROVIDER_LIST = ", ".join(PROVIDERS)


def plan(query_id: uuid.UUID | str, models: list[str] | None = None, runs: int = 1) -> Any:
    return {"queryId": str(query_id), "aiModels": models or ["openai"], "executionCount": runs}


def post_many(client: FlaskClient, tenant: Tenant, body: Any, **headers: str) -> Any:
    return client.post("/api/cached-jobs/many", headers={**tenant.headers(), **headers}, json=body)


def create(client: FlaskClient, tenant: Tenant, items: list[Any]) -> list[dict[str, Any]]:
    response = post_many(client, tenant, {"cachedJobs": items})
    assert response.status_code == 201, response.json
    created: list[dict[str, Any]] = response.json
    return created


def trigger(client: FlaskClient, tenant: Tenant, **headers: str) -> Any:
    return client.post("/api/cached-jobs/trigger", headers={**tenant.headers(), **headers})


def cached_job_count(project_id: uuid.UUID) -> int:
    with session_scope() as session:
        count = session.scalar(
            select(func.count()).select_from(CachedJob).where(CachedJob.project_id == project_id)
        )
    return count or 0


def next_run(project_id: uuid.UUID) -> datetime | None:
    """The project's next scheduled run (its engine schedule's next slot)."""
    return next_slot(RECURRENCE_KIND, project_id)


def patch_project(client: FlaskClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = client.patch("/api/projects", headers=tenant.headers(), json=body)
    assert response.status_code == 200, response.json
    project: dict[str, Any] = response.json
    return project


def finish_job(job_id: str, status: str = "completed") -> None:
    """Move a job's counters straight to terminal through the engine (as a finished run
    would: the move writes the job's ``job.finished`` event)."""
    with session_scope() as session:
        total = session.scalar(select(Job.total).where(Job.id == uuid.UUID(job_id))) or 0
        failed = {"completed": 0, "failed": total}[status]
        moves = {("pending", "success"): total - failed, ("pending", "failed"): failed}
        assert move_counters(session, uuid.UUID(job_id), moves, utcnow()) == status


# ---------------------------------------------------------------------------- create many


def test_seed_request_verbatim(client: FlaskClient, tenant: Tenant) -> None:
    """The seed's curl example (with a real query id) answers the seed's response shape."""
    query_id = tenant.query_ids[0]
    response = client.post(
        "/api/cached-jobs/many",
        headers={
            "Content-Type": "application/json",
            "x-organisation-id": str(tenant.org_id),
            "x-project-id": str(tenant.project_id),
            "x-api-key": tenant.api_key,
        },
        data=SEED_REQUEST.replace(SEED_QUERY_ID, str(query_id)),
    )
    assert response.status_code == 201, response.json
    assert isinstance(response.json, list) and len(response.json) == 1
    item = response.json[0]
    assert set(item) == SEED_FIELDS
    uuid.UUID(item["id"])
    assert item["project"] == str(tenant.project_id)
    assert item["query_id"] == str(query_id)
    assert item["query"] == "best tools for task 0"
    assert item["aiModels"] == SEED_MODELS  # concrete model ids, not the provider keys
    assert item["executionCount"] == 1
    assert (item["language"], item["country"]) == ("en", "US")
    assert item["status"] == "pending"
    assert item["restricted"] is False
    assert_recent_timestamp(item["createdAt"])
    assert_recent_timestamp(item["updatedAt"])


def test_create_stores_models_and_provider_keys(client: FlaskClient, tenant: Tenant) -> None:
    """The row keeps both the keys asked for and the model ids they resolved to."""
    item = create(client, tenant, [plan(tenant.query_ids[0], ["perplexity", "deepseek"], 2)])[0]
    with session_scope() as session:
        row = session.get(CachedJob, uuid.UUID(item["id"]))
        assert row is not None
        assert row.provider_keys == ["perplexity", "deepseek"]
        assert row.ai_models == ["sonar", "deepseek-v3.2-maas"]
        assert (row.organisation_id, row.project_id) == (tenant.org_id, tenant.project_id)
        assert (row.execution_count, row.status, row.last_job_id) == (2, "pending", None)


@pytest.mark.parametrize("key", list(PROVIDERS))
def test_each_provider_key_resolves_to_its_default_model(
    client: FlaskClient, tenant: Tenant, key: str
) -> None:
    """Every provider key of the registry is accepted and answered as its default model."""
    item = create(client, tenant, [plan(tenant.query_ids[0], [key])])[0]
    assert item["aiModels"] == [PROVIDERS[key].default_model]


def test_duplicate_provider_keys_count_once(client: FlaskClient, tenant: Tenant) -> None:
    """A provider named twice runs once."""
    item = create(client, tenant, [plan(tenant.query_ids[0], ["openai", "openai"])])[0]
    assert item["aiModels"] == ["gpt-4.1-mini"]


def test_many_answers_in_request_order(client: FlaskClient, tenant: Tenant) -> None:
    """One cached job per item, answered in the order asked."""
    order = [tenant.query_ids[2], tenant.query_ids[0], tenant.query_ids[1]]
    items = create(client, tenant, [plan(q, ["anthropic"], i + 1) for i, q in enumerate(order)])
    assert [i["query_id"] for i in items] == [str(q) for q in order]
    assert [i["executionCount"] for i in items] == [1, 2, 3]
    assert [i["query"] for i in items] == [
        "best tools for task 2",
        "best tools for task 0",
        "best tools for task 1",
    ]
    assert len({i["id"] for i in items}) == 3
    assert cached_job_count(tenant.project_id) == 3


def test_reposting_a_query_updates_its_plan(client: FlaskClient, tenant: Tenant) -> None:
    """Posting a query that has a cached job already updates it: same id, no duplicate."""
    first = create(client, tenant, [plan(tenant.query_ids[0], ["openai"], 1)])[0]
    second = create(
        client,
        tenant,
        [plan(tenant.query_ids[0], ["anthropic", "perplexity"], 4), plan(tenant.query_ids[1])],
    )
    assert second[0]["id"] == first["id"]
    assert second[0]["aiModels"] == ["claude-haiku-4-5", "sonar"]
    assert second[0]["executionCount"] == 4
    assert second[0]["createdAt"] == first["createdAt"]
    assert second[0]["updatedAt"] >= first["updatedAt"]
    assert cached_job_count(tenant.project_id) == 2
    got = client.get(f"/api/cached-jobs/{first['id']}", headers=tenant.headers()).json
    assert got == second[0]


def test_reposting_keeps_status_and_last_run(client: FlaskClient, tenant: Tenant) -> None:
    """A new plan applies to the next run: the current run and its status are kept."""
    first = create(client, tenant, [plan(tenant.query_ids[0])])[0]
    job = trigger(client, tenant).json[0]
    again = create(client, tenant, [plan(tenant.query_ids[0], ["google-generative-ai"], 2)])[0]
    assert again["status"] == "active"
    with session_scope() as session:
        row = session.get(CachedJob, uuid.UUID(first["id"]))
        assert row is not None and str(row.last_job_id) == job["id"]


def test_created_in_a_paused_project_is_inactive(client: FlaskClient, tenant: Tenant) -> None:
    """A paused project's cached jobs are switched off from the start."""
    patch_project(client, tenant, {"recurrenceStatus": "paused"})
    item = create(client, tenant, [plan(tenant.query_ids[0])])[0]
    assert item["status"] == "inactive"


# ------------------------------------------------------------------------ create: refusals


def test_unknown_provider_key_is_400_naming_the_field(client: FlaskClient, tenant: Tenant) -> None:
    """A key outside the registry (a model id, too) is refused, naming item and index."""
    body = {"cachedJobs": [plan(tenant.query_ids[0], ["openai", "gpt-4.1-mini"])]}
    assert_error(
        post_many(client, tenant, body),
        400,
        [f"cachedJobs.0.aiModels.1: Must be one of: {PROVIDER_LIST}."],
    )
    assert cached_job_count(tenant.project_id) == 0


def test_execution_count_zero_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """executionCount must be at least 1."""
    body = {"cachedJobs": [plan(tenant.query_ids[0]), plan(tenant.query_ids[1], runs=0)]}
    assert_error(
        post_many(client, tenant, body),
        400,
        ["cachedJobs.1.executionCount: Must be greater than or equal to 1."],
    )
    assert cached_job_count(tenant.project_id) == 0


@pytest.mark.parametrize("count", [-1, "1", 1.5, True, None])
def test_bad_execution_count_is_400(client: FlaskClient, tenant: Tenant, count: Any) -> None:
    """executionCount is a strict integer."""
    body = {"cachedJobs": [{**plan(tenant.query_ids[0]), "executionCount": count}]}
    lines = validation_messages(post_many(client, tenant, body))
    assert len(lines) == 1 and lines[0].startswith("cachedJobs.0.executionCount: "), lines


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, ["cachedJobs: Missing data for required field."]),
        ({"cachedJobs": []}, ["cachedJobs: Length must be between 1 and 1000."]),
        ({"cachedJobs": {}}, ["cachedJobs: Not a valid list."]),
        (
            {"cachedJobs": [{}]},
            [
                "cachedJobs.0.queryId: Missing data for required field.",
                "cachedJobs.0.aiModels: Missing data for required field.",
                "cachedJobs.0.executionCount: Missing data for required field.",
            ],
        ),
        (
            {"cachedJobs": [{"queryId": "q-1", "aiModels": [], "executionCount": 1}]},
            [
                "cachedJobs.0.queryId: Not a valid UUID.",
                "cachedJobs.0.aiModels: Shorter than minimum length 1.",
            ],
        ),
    ],
)
def test_malformed_body_is_400(
    client: FlaskClient, tenant: Tenant, body: Any, message: list[str]
) -> None:
    """Each malformed body gets one line per failing field."""
    assert_error(post_many(client, tenant, body), 400, message)


def test_unknown_fields_are_400(client: FlaskClient, tenant: Tenant) -> None:
    """Unknown fields are refused at both levels."""
    body = {"cachedJobs": [{**plan(tenant.query_ids[0]), "cron": "* * * * *"}], "force": True}
    assert_error(
        post_many(client, tenant, body),
        400,
        ["cachedJobs.0.cron: Unknown field.", "force: Unknown field."],
    )


def test_query_listed_twice_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """One plan per query: the same query twice in one request is ambiguous."""
    q = tenant.query_ids[0]
    body = {"cachedJobs": [plan(q), plan(tenant.query_ids[1]), plan(q, ["anthropic"])]}
    assert_error(
        post_many(client, tenant, body),
        400,
        [f"cachedJobs.2.queryId: query {q} is listed more than once"],
    )
    assert cached_job_count(tenant.project_id) == 0


def test_unknown_query_is_404_naming_it(client: FlaskClient, tenant: Tenant) -> None:
    """A query id that does not exist is a 404 naming it, and nothing is written."""
    unknown = uuid.uuid4()
    body = {"cachedJobs": [plan(tenant.query_ids[0]), plan(unknown)]}
    assert_error(post_many(client, tenant, body), 404, f"Query {unknown} not found")
    assert cached_job_count(tenant.project_id) == 0


def test_other_tenants_query_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another organisation's query cannot be planned, and neither side gets a row."""
    theirs = other_tenant.query_ids[0]
    assert_error(
        post_many(client, tenant, {"cachedJobs": [plan(theirs)]}), 404, f"Query {theirs} not found"
    )
    assert cached_job_count(tenant.project_id) == 0
    assert cached_job_count(other_tenant.project_id) == 0


def test_query_of_another_project_is_404(
    client: FlaskClient, tenant: Tenant, empty_project: uuid.UUID
) -> None:
    """A query must belong to the x-project-id project, not merely to the organisation."""
    q = tenant.query_ids[0]
    response = post_many(
        client, tenant, {"cachedJobs": [plan(q)]}, **{"x-project-id": str(empty_project)}
    )
    assert_error(response, 404, f"Query {q} not found")


def test_missing_project_header_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """The project comes from x-project-id, which is required."""
    response = client.post(
        "/api/cached-jobs/many",
        headers=tenant.headers(project=False),
        json={"cachedJobs": [plan(tenant.query_ids[0])]},
    )
    assert_error(response, 400, ["x-project-id: header is required"])


def test_wrong_organisation_header_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """x-organisation-id must be the caller's organisation."""
    response = post_many(
        client,
        tenant,
        {"cachedJobs": [plan(tenant.query_ids[0])]},
        **{"x-organisation-id": str(other_tenant.org_id)},
    )
    assert_error(response, 404, f"Organisation {other_tenant.org_id} not found")


def test_other_tenants_project_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another organisation's project is a 404 before anything about its queries."""
    response = post_many(
        client,
        tenant,
        {"cachedJobs": [plan(other_tenant.query_ids[0])]},
        **{"x-project-id": str(other_tenant.project_id)},
    )
    assert_error(response, 404, f"Project {other_tenant.project_id} not found")
    assert cached_job_count(other_tenant.project_id) == 0


def test_without_credentials_is_401(client: FlaskClient, tenant: Tenant) -> None:
    """No key, no token: 401."""
    response = client.post(
        "/api/cached-jobs/many",
        headers={"x-project-id": str(tenant.project_id)},
        json={"cachedJobs": [plan(tenant.query_ids[0])]},
    )
    assert response.status_code == 401


def test_unconfigured_provider_is_422(
    client: FlaskClient, tenant: Tenant, real_providers: pytest.MonkeyPatch
) -> None:
    """Without simulation a provider without credentials is refused at creation."""
    response = post_many(client, tenant, {"cachedJobs": [plan(tenant.query_ids[0], ["anthropic"])]})
    assert response.status_code == 422, response.json
    assert "set ANTHROPIC_API_KEY" in response.json["message"]
    assert cached_job_count(tenant.project_id) == 0


def test_run_over_the_execution_limit_is_422(
    client: FlaskClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan whose every run would exceed the per-job limit is refused up front."""
    monkeypatch.setenv("JOBYARD_MAX_EXECUTIONS_PER_JOB", "5")
    reset_settings_cache()
    try:
        response = post_many(
            client, tenant, {"cachedJobs": [plan(tenant.query_ids[0], ["openai", "anthropic"], 3)]}
        )
        assert_error(
            response,
            422,
            "cachedJobs.0: each run would have 6 executions; the limit is 5 "
            "(JOBYARD_MAX_EXECUTIONS_PER_JOB)",
        )
    finally:
        monkeypatch.undo()
        reset_settings_cache()


def test_huge_execution_count_is_refused_not_500(client: FlaskClient, tenant: Tenant) -> None:
    """An absurd executionCount is a 422 from the limit, never a database error."""
    response = post_many(client, tenant, {"cachedJobs": [plan(tenant.query_ids[0], runs=10**30)]})
    assert response.status_code == 422, response.json


# ------------------------------------------------------------------------------ read back


def test_get_one(client: FlaskClient, tenant: Tenant) -> None:
    """GET /api/cached-jobs/{id} answers what the creation answered."""
    item = create(client, tenant, [plan(tenant.query_ids[1], ["deepseek"], 2)])[0]
    response = client.get(f"/api/cached-jobs/{item['id']}", headers=tenant.headers())
    assert response.status_code == 200 and response.json == item


def test_get_needs_no_project_header(client: FlaskClient, tenant: Tenant) -> None:
    """The id is enough; the project header is not required to read one."""
    item = create(client, tenant, [plan(tenant.query_ids[0])])[0]
    response = client.get(
        f"/api/cached-jobs/{item['id']}", headers=tenant.headers(bearer=True, project=False)
    )
    assert response.status_code == 200 and response.json["id"] == item["id"]


def test_get_other_tenants_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another organisation's cached job is hidden behind a 404."""
    theirs = create(client, other_tenant, [plan(other_tenant.query_ids[0])])[0]["id"]
    assert_error(
        client.get(f"/api/cached-jobs/{theirs}", headers=tenant.headers()),
        404,
        f"Cached job {theirs} not found",
    )


def test_get_unknown_and_non_uuid_are_404(client: FlaskClient, tenant: Tenant) -> None:
    """Unknown ids and ids that are not UUIDs are 404s."""
    unknown = uuid.uuid4()
    assert_error(
        client.get(f"/api/cached-jobs/{unknown}", headers=tenant.headers()),
        404,
        f"Cached job {unknown} not found",
    )
    assert_error(
        client.get("/api/cached-jobs/cj-1", headers=tenant.headers()),
        404,
        "Cannot GET /api/cached-jobs/cj-1",
    )


def test_list_envelope_and_paging(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """The list pages the project's cached jobs, oldest first, like /api/jobs/list."""
    created = [create(client, tenant, [plan(q)])[0] for q in tenant.query_ids]
    create(client, other_tenant, [plan(other_tenant.query_ids[0])])
    response = client.post("/api/cached-jobs/list?limit=2", headers=tenant.headers(), json={})
    assert response.status_code == 200, response.json
    page = response.json
    assert page["page"] == {
        "totalRecords": 3,
        "limit": 2,
        "currentPage": 1,
        "totalPages": 2,
        "nextPage": 2,
        "prevPage": None,
    }
    assert page["results"] == created[:2]
    second = client.post(
        "/api/cached-jobs/list?limit=2&page=2", headers=tenant.headers(), json={}
    ).json
    assert second["results"] == created[2:]
    assert (second["page"]["nextPage"], second["page"]["prevPage"]) == (None, 1)


def test_list_sorted_newest_first(client: FlaskClient, tenant: Tenant) -> None:
    """sort[{field, direction}] orders the list."""
    created = [create(client, tenant, [plan(q)])[0]["id"] for q in tenant.query_ids]
    body = {"sort": [{"field": "createdAt", "direction": "DESC"}]}
    page = client.post("/api/cached-jobs/list", headers=tenant.headers(), json=body).json
    assert [c["id"] for c in page["results"]] == created[::-1]


@pytest.mark.parametrize(
    ("qs", "body", "message"),
    [
        ("", {"status": "pending"}, ["status: Unknown field."]),
        (
            "",
            {"sort": [{"field": "query"}]},
            ["sort.0.field: Must be one of: createdAt, updatedAt, lastRunAt."],
        ),
        (
            "?limit=101",
            {},
            ["limit: Must be greater than or equal to 1 and less than or equal to 100."],
        ),
        ("?page=0", {}, [PAGE_RANGE]),
    ],
)
def test_list_bad_input_is_400(
    client: FlaskClient, tenant: Tenant, qs: str, body: dict[str, Any], message: list[str]
) -> None:
    """Bad paging and filters answer the validation envelope."""
    response = client.post(f"/api/cached-jobs/list{qs}", headers=tenant.headers(), json=body)
    assert_error(response, 400, message)


def test_list_of_other_tenants_project_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """A foreign project cannot be listed."""
    headers = {**tenant.headers(), "x-project-id": str(other_tenant.project_id)}
    response = client.post("/api/cached-jobs/list", headers=headers, json={})
    assert_error(response, 404, f"Project {other_tenant.project_id} not found")


# -------------------------------------------------------------------------------- trigger


def test_trigger_creates_one_job_per_cached_job(client: FlaskClient, tenant: Tenant) -> None:
    """Each cached job runs as a job of its own query, models and executionCount."""
    created = create(
        client,
        tenant,
        [
            plan(tenant.query_ids[0], ["openai", "anthropic"], 2),
            plan(tenant.query_ids[2], ["perplexity"], 3),
        ],
    )
    response = trigger(client, tenant)
    assert response.status_code == 201, response.json
    jobs = response.json
    assert len(jobs) == 2
    assert [j["aiModels"] for j in jobs] == [["gpt-4.1-mini", "claude-haiku-4-5"], ["sonar"]]
    assert [j["totalExecutions"] for j in jobs] == [4, 3]
    assert [j["executionCount"] for j in jobs] == [2, 3]
    assert all(j["type"] == "ai_queries" and j["status"] == "pending" for j in jobs)
    assert all(j["project"] == str(tenant.project_id) for j in jobs)
    assert all(j["createdBy"]["id"] == str(tenant.user_id) for j in jobs)
    with session_scope() as session:
        for job, item in zip(jobs, created, strict=True):
            row = session.get(Job, uuid.UUID(job["id"]))
            assert row is not None
            assert row.payload["queryIds"] == [item["query_id"]]
            assert row.metadata_ == {"trigger": "manual", "cachedJobId": item["id"]}
            assert row.dispatched_at is not None
            cached = session.get(CachedJob, uuid.UUID(item["id"]))
            assert cached is not None
            assert str(cached.last_job_id) == job["id"] and cached.last_run_at is not None
    for item in created:
        got = client.get(f"/api/cached-jobs/{item['id']}", headers=tenant.headers()).json
        assert got["status"] == "active"
    # The jobs are ordinary jobs: the jobs API reads them back.
    listed = client.post("/api/jobs/list", headers=tenant.headers(), json={}).json
    assert {j["id"] for j in listed["results"]} == {j["id"] for j in jobs}


def test_status_turns_ended_when_the_job_finishes(client: FlaskClient, tenant: Tenant) -> None:
    """active while its job runs, ended once the job is terminal (failures included)."""
    a, b = create(client, tenant, [plan(tenant.query_ids[0]), plan(tenant.query_ids[1])])
    job_a, job_b = (j["id"] for j in trigger(client, tenant).json)
    finish_job(job_a, "completed")
    finish_job(job_b, "failed")
    for item in (a, b):
        got = client.get(f"/api/cached-jobs/{item['id']}", headers=tenant.headers()).json
        assert got["status"] == "ended"
    # The job.finished events write the derived status down.
    assert outbox.drain(session_scope)["mentionlab.cached_jobs"] >= 2
    with session_scope() as session:
        rows = session.scalars(
            select(CachedJob.status).where(CachedJob.project_id == tenant.project_id)
        ).all()
    assert sorted(rows) == ["ended", "ended"]
    # Running again makes them active again.
    trigger(client, tenant)
    got = client.get(f"/api/cached-jobs/{a['id']}", headers=tenant.headers()).json
    assert got["status"] == "active"


def test_trigger_without_cached_jobs_is_422(client: FlaskClient, tenant: Tenant) -> None:
    """Nothing to run: 422, and no job."""
    before = job_count(tenant.org_id)
    assert_error(
        trigger(client, tenant),
        422,
        f"Project {tenant.project_id} has no cached jobs to run: "
        "create them with POST /api/cached-jobs/many",
    )
    assert job_count(tenant.org_id) == before


def test_trigger_of_a_paused_project_runs_nothing(client: FlaskClient, tenant: Tenant) -> None:
    """A paused project's cached jobs are inactive: the trigger says so."""
    create(client, tenant, [plan(tenant.query_ids[0])])
    patch_project(client, tenant, {"recurrenceStatus": "paused"})
    before = job_count(tenant.org_id)
    assert_error(
        trigger(client, tenant),
        422,
        f"Project {tenant.project_id} has no cached jobs to run (its recurrence is paused: "
        "its cached jobs are inactive): create them with POST /api/cached-jobs/many",
    )
    assert job_count(tenant.org_id) == before


def test_trigger_unknown_body_field_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """The trigger takes no fields."""
    create(client, tenant, [plan(tenant.query_ids[0])])
    response = client.post(
        "/api/cached-jobs/trigger", headers=tenant.headers(), json={"cachedJobIds": []}
    )
    assert_error(response, 400, ["cachedJobIds: Unknown field."])
    assert job_count(tenant.org_id) == 0


def test_trigger_with_empty_json_body(client: FlaskClient, tenant: Tenant) -> None:
    """An empty JSON object is the same as no body."""
    create(client, tenant, [plan(tenant.query_ids[0])])
    response = client.post("/api/cached-jobs/trigger", headers=tenant.headers(), json={})
    assert response.status_code == 201 and len(response.json) == 1


def test_trigger_other_tenants_project_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another organisation's cached jobs cannot be run."""
    create(client, other_tenant, [plan(other_tenant.query_ids[0])])
    response = trigger(client, tenant, **{"x-project-id": str(other_tenant.project_id)})
    assert_error(response, 404, f"Project {other_tenant.project_id} not found")
    assert job_count(other_tenant.org_id) == 0


def test_trigger_missing_project_header_is_400(client: FlaskClient, tenant: Tenant) -> None:
    response = client.post("/api/cached-jobs/trigger", headers=tenant.headers(project=False))
    assert_error(response, 400, ["x-project-id: header is required"])


def test_trigger_with_unconfigured_provider_is_422_and_writes_nothing(
    client: FlaskClient, tenant: Tenant, real_providers: pytest.MonkeyPatch
) -> None:
    """A manual run is all or nothing: one plan that cannot run refuses the trigger."""
    real_providers.setenv("OPENAI_API_KEY", "sk-test-not-used")
    reset_settings_cache()
    first, _ = create(client, tenant, [plan(tenant.query_ids[0]), plan(tenant.query_ids[1])])
    with session_scope() as session:  # planned when Perplexity still had credentials
        session.execute(
            update(CachedJob)
            .where(CachedJob.id == uuid.UUID(first["id"]))
            .values(ai_models=["sonar"], provider_keys=["perplexity"])
        )
    response = trigger(client, tenant)
    assert response.status_code == 422, response.json
    assert "set PERPLEXITY_API_KEY" in response.json["message"]
    assert job_count(tenant.org_id) == 0


# ----------------------------------------------------------------------------- recurrence


def assert_about(moment: datetime | None, expected: datetime) -> None:
    assert moment is not None
    assert abs(moment - expected) < timedelta(minutes=1), (moment, expected)


def test_setting_a_recurrence_schedules_one_interval_ahead(
    client: FlaskClient, tenant: Tenant
) -> None:
    """daily → the first run is a day from now (never at once); manual → no schedule."""
    assert next_run(tenant.project_id) is None
    patch_project(client, tenant, {"recurrence": "daily"})
    assert_about(next_run(tenant.project_id), datetime.now(UTC) + timedelta(days=1))
    patch_project(client, tenant, {"recurrence": "biweekly"})
    assert_about(next_run(tenant.project_id), datetime.now(UTC) + timedelta(days=14))
    patch_project(client, tenant, {"recurrence": "manual"})
    assert next_run(tenant.project_id) is None


def test_resaving_the_same_recurrence_keeps_the_slot(client: FlaskClient, tenant: Tenant) -> None:
    """A PATCH that does not change the recurrence does not push the next run back."""
    patch_project(client, tenant, {"recurrence": "weekly"})
    slot = next_run(tenant.project_id)
    patch_project(client, tenant, {"recurrence": "weekly", "description": "x"})
    patch_project(client, tenant, {"recurrenceStatus": "active"})
    assert next_run(tenant.project_id) == slot


def test_creating_a_project_with_a_recurrence_schedules_it(
    client: FlaskClient, tenant: Tenant
) -> None:
    response = client.post(
        "/api/projects",
        headers=tenant.headers(project=False),
        json={"name": "Monthly", "recurrence": "monthly"},
    )
    assert response.status_code == 201, response.json
    first = next_run(uuid.UUID(response.json["id"]))
    assert first is not None and first > datetime.now(UTC) + timedelta(days=27)


def test_pausing_switches_cached_jobs_off_and_resuming_back_on(
    client: FlaskClient, tenant: Tenant
) -> None:
    """paused → no next run and inactive cached jobs; active again → their old status."""
    patch_project(client, tenant, {"recurrence": "daily"})
    ran, fresh = create(client, tenant, [plan(tenant.query_ids[0]), plan(tenant.query_ids[1])])
    job_id = trigger(client, tenant).json[0]["id"]
    with session_scope() as session:  # only the first one has run
        session.execute(
            update(CachedJob)
            .where(CachedJob.id == uuid.UUID(fresh["id"]))
            .values(status="pending", last_job_id=None, last_run_at=None)
        )
    finish_job(job_id)

    patch_project(client, tenant, {"recurrenceStatus": "paused"})
    assert next_run(tenant.project_id) is None
    for item in (ran, fresh):
        got = client.get(f"/api/cached-jobs/{item['id']}", headers=tenant.headers()).json
        assert got["status"] == "inactive"

    patch_project(client, tenant, {"recurrenceStatus": "active"})
    assert_about(next_run(tenant.project_id), datetime.now(UTC) + timedelta(days=1))
    statuses = [
        client.get(f"/api/cached-jobs/{item['id']}", headers=tenant.headers()).json["status"]
        for item in (ran, fresh)
    ]
    assert statuses == ["ended", "pending"]
