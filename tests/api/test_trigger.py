"""POST /api/jobs/trigger: the seed's request, its validation, and what a refusal leaves."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from shared.db import session_scope
from shared.mentionlab.models import AiRun
from shared.models import Job
from shared.settings import reset_settings_cache
from tests.api.helpers import (
    SEED_BODY,
    SEED_MODELS,
    assert_error,
    assert_recent_timestamp,
    job_count,
    validation_messages,
)
from tests.support import Tenant, make_tenant

# The seed's example request body, byte for byte.
SEED_REQUEST = """
{
  "aiModels": [
    "gpt-4.1-mini",
    "claude-haiku-4-5",
    "gemini-2.5-flash"
  ],
  "executionCount": 3
}
"""

SEED_RESPONSE_FIELDS = {
    "id",
    "project",
    "totalExecutions",
    "pendingExecutions",
    "retryingExecutions",
    "successExecutions",
    "failedExecutions",
    "status",
    "createdAt",
    "updatedAt",
    "createdBy",
}


def trigger(client: FlaskClient, tenant: Tenant, body: Any, **headers: str) -> Any:
    return client.post("/api/jobs/trigger", headers={**tenant.headers(), **headers}, json=body)


def test_seed_request_verbatim(client: FlaskClient, tenant: Tenant) -> None:
    """The seed's curl example is accepted with the seed's response fields."""
    response = client.post(
        "/api/jobs/trigger",
        headers={
            "Content-Type": "application/json",
            "x-project-id": str(tenant.project_id),
            "x-api-key": tenant.api_key,
        },
        data=SEED_REQUEST,
    )
    assert response.status_code == 201, response.json
    job = response.json
    assert set(job) >= SEED_RESPONSE_FIELDS
    uuid.UUID(job["id"])
    assert job["project"] == str(tenant.project_id)
    assert job["totalExecutions"] == 3 * 3 * 3
    assert job["pendingExecutions"] == 27
    assert (job["retryingExecutions"], job["successExecutions"], job["failedExecutions"]) == (
        0,
        0,
        0,
    )
    assert job["status"] == "pending"
    assert_recent_timestamp(job["createdAt"])
    assert_recent_timestamp(job["updatedAt"])
    assert set(job["createdBy"]) == {"firstName", "lastName", "email", "id"}
    assert job["createdBy"]["id"] == str(tenant.user_id)
    assert (job["createdBy"]["firstName"], job["createdBy"]["lastName"]) == ("Jane", "Doe")
    assert job["createdBy"]["email"].endswith("@example.test")
    assert job["aiModels"] == SEED_MODELS and job["executionCount"] == 3


def test_trigger_stores_the_job(client: FlaskClient, tenant: Tenant) -> None:
    """The accepted job is committed with its counters, payload and creator."""
    job = trigger(client, tenant, SEED_BODY).json
    with session_scope() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None
        assert row.organisation_id == tenant.org_id
        run = session.get(AiRun, row.id)  # Mentionlab's part of the job: its project
        assert run is not None and run.project_id == tenant.project_id
        assert (row.total, row.pending, row.status, row.type) == (27, 27, "pending", "ai_queries")
        assert row.created_by_user_id == tenant.user_id
        assert row.payload["queryIds"] == [str(q) for q in tenant.query_ids]
        assert row.dispatched_at is not None  # the fan-out was published to Redis


def test_trigger_is_readable_back(client: FlaskClient, tenant: Tenant) -> None:
    """GET /api/jobs/{id} answers the same job the trigger returned, plus per-model figures."""
    job = trigger(client, tenant, SEED_BODY).json
    again = client.get(f"/api/jobs/{job['id']}", headers=tenant.headers())
    assert again.status_code == 200
    detail = dict(again.json)
    models = detail.pop("models")
    assert detail == job
    assert [m["model"] for m in models] == SEED_BODY["aiModels"]
    for summary in models:  # nothing written or run yet: all pending, no rate yet
        assert (
            summary["totalExecutions"]
            == summary["pendingExecutions"]
            == job["totalExecutions"] // 3
        )
        assert summary["successExecutions"] == summary["failedExecutions"] == 0
        assert summary["mentionRate"] is None


@pytest.mark.parametrize(
    ("n_queries", "models", "runs"),
    [
        (1, ["gpt-4.1-mini"], 1),
        (5, ["gpt-4.1-mini", "sonar"], 4),
        (2, ["ai-overview", "ai-mode", "scp-ml-gemini", "deepseek-v3.2-maas"], 3),
    ],
)
def test_total_is_queries_times_models_times_runs(
    client: FlaskClient, n_queries: int, models: list[str], runs: int
) -> None:
    """totalExecutions = queries x distinct models x executionCount, all pending."""
    tenant = make_tenant(n_queries=n_queries)
    job = trigger(client, tenant, {"aiModels": models, "executionCount": runs}).json
    total = n_queries * len(models) * runs
    assert (job["totalExecutions"], job["pendingExecutions"]) == (total, total)


def test_duplicate_models_count_once(client: FlaskClient, tenant: Tenant) -> None:
    """A model named twice runs once: it is counted and stored once."""
    body = {"aiModels": ["sonar", "gpt-4.1-mini", "sonar", "sonar"], "executionCount": 2}
    job = trigger(client, tenant, body).json
    assert job["totalExecutions"] == 3 * 2 * 2
    assert job["aiModels"] == ["sonar", "gpt-4.1-mini"]


def test_bearer_trigger_is_created_by_the_token_user(client: FlaskClient, tenant: Tenant) -> None:
    """With a JWT the job's createdBy is the token's user."""
    response = client.post("/api/jobs/trigger", headers=tenant.headers(bearer=True), json=SEED_BODY)
    assert response.status_code == 201
    assert response.json["createdBy"]["id"] == str(tenant.user_id)


@pytest.mark.parametrize("count", [0, -1, "3", 2.5, True, None])
def test_bad_execution_count_is_400(client: FlaskClient, tenant: Tenant, count: Any) -> None:
    """executionCount must be an integer >= 1 (no strings, floats or booleans)."""
    before = job_count(tenant.org_id)
    response = trigger(client, tenant, {"aiModels": SEED_MODELS, "executionCount": count})
    lines = validation_messages(response)
    assert len(lines) == 1 and lines[0].startswith("executionCount: "), lines
    assert job_count(tenant.org_id) == before


def test_execution_count_zero_message(client: FlaskClient, tenant: Tenant) -> None:
    """The range error says what the minimum is."""
    response = trigger(client, tenant, {"aiModels": SEED_MODELS, "executionCount": 0})
    assert_error(response, 400, ["executionCount: Must be greater than or equal to 1."])


def test_unknown_model_is_400_naming_ai_models(client: FlaskClient, tenant: Tenant) -> None:
    """A model outside the enum is refused, naming aiModels and its index."""
    before = job_count(tenant.org_id)
    body = {"aiModels": ["gpt-4.1-mini", "gpt-9"], "executionCount": 1}
    lines = validation_messages(trigger(client, tenant, body))
    assert len(lines) == 1 and lines[0].startswith("aiModels.1: Must be one of: gpt-4.1-mini"), (
        lines
    )
    assert job_count(tenant.org_id) == before


@pytest.mark.parametrize("models", [[], "gpt-4.1-mini", None, [1]])
def test_bad_ai_models_is_400(client: FlaskClient, tenant: Tenant, models: Any) -> None:
    """aiModels must be a non-empty list of model ids."""
    lines = validation_messages(trigger(client, tenant, {"aiModels": models, "executionCount": 1}))
    assert len(lines) == 1 and lines[0].startswith("aiModels"), lines


def test_empty_ai_models_message(client: FlaskClient, tenant: Tenant) -> None:
    """An empty list is refused as too short."""
    response = trigger(client, tenant, {"aiModels": [], "executionCount": 1})
    assert_error(response, 400, ["aiModels: Shorter than minimum length 1."])


def test_missing_body_fields_are_400(client: FlaskClient, tenant: Tenant) -> None:
    """Both fields are required; each missing one gets its line."""
    response = trigger(client, tenant, {})
    assert_error(
        response,
        400,
        [
            "aiModels: Missing data for required field.",
            "executionCount: Missing data for required field.",
        ],
    )


def test_unknown_body_field_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """Unknown fields are refused rather than ignored."""
    response = trigger(client, tenant, {**SEED_BODY, "priority": "high"})
    assert_error(response, 400, ["priority: Unknown field."])


def test_missing_project_header_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """The project comes from x-project-id, which is required."""
    before = job_count(tenant.org_id)
    response = client.post(
        "/api/jobs/trigger", headers=tenant.headers(project=False), json=SEED_BODY
    )
    assert_error(response, 400, ["x-project-id: header is required"])
    assert job_count(tenant.org_id) == before


def test_malformed_project_header_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """A malformed x-project-id is a validation error."""
    response = trigger(client, tenant, SEED_BODY, **{"x-project-id": "123"})
    assert_error(response, 400, ["x-project-id: must be a UUID"])


def test_other_tenants_project_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another organisation's project cannot be run, and neither side gets a job."""
    mine, theirs = job_count(tenant.org_id), job_count(other_tenant.org_id)
    response = trigger(client, tenant, SEED_BODY, **{"x-project-id": str(other_tenant.project_id)})
    assert_error(response, 404, f"Project {other_tenant.project_id} not found")
    assert (job_count(tenant.org_id), job_count(other_tenant.org_id)) == (mine, theirs)


def test_unknown_project_is_404(client: FlaskClient, tenant: Tenant) -> None:
    """A project id that does not exist is a 404."""
    unknown = uuid.uuid4()
    response = trigger(client, tenant, SEED_BODY, **{"x-project-id": str(unknown)})
    assert_error(response, 404, f"Project {unknown} not found")


def test_project_without_queries_is_422_and_creates_no_job(
    client: FlaskClient, tenant: Tenant, empty_project: uuid.UUID
) -> None:
    """Nothing to run: 422, and no job row for that project."""
    before = job_count(tenant.org_id)
    response = trigger(client, tenant, SEED_BODY, **{"x-project-id": str(empty_project)})
    assert_error(
        response,
        422,
        f"Project {empty_project} has no queries: add queries before triggering a job",
    )
    with session_scope() as session:
        assert (
            session.scalars(
                select(Job.id).where(
                    Job.id.in_(select(AiRun.job_id).where(AiRun.project_id == empty_project))
                )
            ).all()
            == []
        )
    assert job_count(tenant.org_id) == before


def test_unconfigured_provider_is_422_naming_the_setting(
    client: FlaskClient, tenant: Tenant, real_providers: pytest.MonkeyPatch
) -> None:
    """Without simulation and without OPENAI_API_KEY an OpenAI model cannot run."""
    before = job_count(tenant.org_id)
    response = trigger(client, tenant, SEED_BODY)
    assert response.status_code == 422, response.json
    body = response.json
    assert set(body) == {"statusCode", "message", "error"}
    assert (body["statusCode"], body["error"]) == (422, "Unprocessable Entity")
    assert isinstance(body["message"], str)
    assert "OPENAI_API_KEY" in body["message"] and "gpt-4.1-mini" in body["message"]
    assert job_count(tenant.org_id) == before


@pytest.mark.parametrize(
    ("model", "setting"),
    [
        ("claude-haiku-4-5", "ANTHROPIC_API_KEY"),
        ("gemini-2.5-flash", "GEMINI_API_KEY"),
        ("sonar", "PERPLEXITY_API_KEY"),
        ("ai-mode", "JOBYARD_SEARCH_ENDPOINT_URL"),
    ],
)
def test_unconfigured_provider_message_names_its_own_setting(
    client: FlaskClient,
    tenant: Tenant,
    real_providers: pytest.MonkeyPatch,
    model: str,
    setting: str,
) -> None:
    """Each provider's 422 names the variable that configures it."""
    response = trigger(client, tenant, {"aiModels": [model], "executionCount": 1})
    assert response.status_code == 422
    assert f"set {setting}" in response.json["message"]


def test_configured_provider_is_accepted(
    client: FlaskClient, tenant: Tenant, real_providers: pytest.MonkeyPatch
) -> None:
    """Setting the variable the 422 names is enough for the trigger to be accepted."""
    real_providers.setenv("OPENAI_API_KEY", "sk-test-not-used")
    reset_settings_cache()
    response = trigger(client, tenant, {"aiModels": ["gpt-4.1-mini"], "executionCount": 1})
    assert response.status_code == 201, response.json
    assert response.json["totalExecutions"] == 3


def test_too_many_executions_is_422(
    client: FlaskClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job over JOBYARD_MAX_EXECUTIONS_PER_JOB is refused before anything is written."""
    monkeypatch.setenv("JOBYARD_MAX_EXECUTIONS_PER_JOB", "26")
    reset_settings_cache()
    try:
        before = job_count(tenant.org_id)
        response = trigger(client, tenant, SEED_BODY)
        assert_error(
            response,
            422,
            "This job would have 27 executions; the limit is 26 (JOBYARD_MAX_EXECUTIONS_PER_JOB)",
        )
        assert job_count(tenant.org_id) == before
    finally:
        monkeypatch.undo()
        reset_settings_cache()


def test_huge_execution_count_is_refused_not_500(client: FlaskClient, tenant: Tenant) -> None:
    """An absurd executionCount is a 422 from the limit, never a database error."""
    response = trigger(client, tenant, {"aiModels": ["sonar"], "executionCount": 10**30})
    assert response.status_code == 422, response.json


@pytest.mark.parametrize(
    "rejected",
    [
        {"aiModels": SEED_MODELS, "executionCount": 0},
        {"aiModels": ["nope"], "executionCount": 1},
        {"aiModels": [], "executionCount": 1},
        {"executionCount": 1},
    ],
)
def test_rejected_request_creates_no_job(
    client: FlaskClient, tenant: Tenant, rejected: dict[str, Any]
) -> None:
    """However a trigger is refused, the organisation's job count does not move."""
    trigger(client, tenant, SEED_BODY)
    before = job_count(tenant.org_id)
    assert before == 1
    assert trigger(client, tenant, rejected).status_code == 400
    assert job_count(tenant.org_id) == before


def test_other_tenants_project_is_404_even_when_provider_is_unconfigured(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant, real_providers: pytest.MonkeyPatch
) -> None:
    """The project is looked up first: a foreign project is 404, never a provider 422."""
    headers = {**tenant.headers(), "x-project-id": str(other_tenant.project_id)}
    response = client.post("/api/jobs/trigger", headers=headers, json=SEED_BODY)
    assert response.status_code == 404, response.json
