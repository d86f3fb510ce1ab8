"""Quotas: what one request may create, and what an organisation may have unfinished.

Every family's creates, against the real PostgreSQL (no worker runs: accepted jobs stay
pending, which is what the organisation caps count). The settings are lowered per test
so that the caps, not the data, are what refuse.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from shared.ai_models import PROVIDERS
from shared.db import session_scope
from shared.mentionlab.models import CachedJob
from shared.models import Job
from shared.settings import reset_settings_cache
from tests.api.helpers import SEED_BODY, job_count
from tests.kb_support import (
    SOURCE_URL,
    create_job,
    create_kb,
    job_body,
    private_allowed,  # noqa: F401 - a fixture
    register,
    source_table,
)
from tests.support import Tenant, make_tenant

Limits = Callable[..., None]


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[Limits]:
    """Set quota settings for the test: limits(max_jobs_per_request=3, ...)."""

    def set_limits(**values: int) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"JOBYARD_{name.upper()}", str(value))
        reset_settings_cache()

    yield set_limits
    monkeypatch.undo()
    reset_settings_cache()


def trigger(client: FlaskClient, tenant: Tenant, body: Any = None) -> Any:
    return client.post("/api/jobs/trigger", headers=tenant.headers(), json=body or SEED_BODY)


def assert_mentionlab_error(response: Any, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.json
    body = response.json
    assert set(body) == {"statusCode", "message", "error"}, body
    assert body["statusCode"] == status
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body["message"])


# -- per request -------------------------------------------------------------------------


def test_cached_jobs_trigger_of_the_reproduction_is_refused_by_the_per_request_cap(
    client: FlaskClient, limits: Limits
) -> None:
    """The issue's reproduction, scaled down: queries, one cached job each on all 8
    provider keys, then one trigger. Each cached job is within the per-job limit and each
    /many request within the per-request cap; the trigger, whose jobs together exceed
    the cap, is refused with the figures and writes nothing."""
    limits(max_executions_per_request=2_000)
    tenant = make_tenant(n_queries=10)
    keys = list(PROVIDERS)
    assert len(keys) == 8
    for half in (tenant.query_ids[:5], tenant.query_ids[5:]):  # 5 x 8 x 30 = 1,200 each
        response = client.post(
            "/api/cached-jobs/many",
            headers=tenant.headers(),
            json={
                "cachedJobs": [
                    {"queryId": str(q), "aiModels": keys, "executionCount": 30} for q in half
                ]
            },
        )
        assert response.status_code == 201, response.json
    response = client.post("/api/cached-jobs/trigger", headers=tenant.headers(), json={})
    assert_mentionlab_error(
        response, 422, "would create 2400 executions", "at most 2000", "PER_REQUEST"
    )
    assert job_count(tenant.org_id) == 0
    with session_scope() as session:
        statuses = set(
            session.scalars(
                select(CachedJob.status).where(CachedJob.organisation_id == tenant.org_id)
            )
        )
    assert statuses == {"pending"}  # no cached job was marked as run

    limits(max_executions_per_request=2_400)  # at the cap: accepted, 10 jobs
    response = client.post("/api/cached-jobs/trigger", headers=tenant.headers(), json={})
    assert response.status_code == 201, response.json
    assert len(response.json) == 10
    assert sum(job["totalExecutions"] for job in response.json) == 2_400


def test_cached_jobs_trigger_is_capped_in_jobs_per_request(
    client: FlaskClient, limits: Limits
) -> None:
    limits(max_jobs_per_request=2)
    tenant = make_tenant(n_queries=3)
    response = client.post(
        "/api/cached-jobs/many",
        headers=tenant.headers(),
        json={
            "cachedJobs": [
                {"queryId": str(q), "aiModels": ["openai"], "executionCount": 1}
                for q in tenant.query_ids[:2]
            ]
        },
    )
    assert response.status_code == 201, response.json
    # A third plan in one /many would make a trigger create 3 jobs: refused already.
    response = client.post(
        "/api/cached-jobs/many",
        headers=tenant.headers(),
        json={
            "cachedJobs": [
                {"queryId": str(q), "aiModels": ["openai"], "executionCount": 1}
                for q in tenant.query_ids
            ]
        },
    )
    assert_mentionlab_error(response, 422, "would create 3 jobs", "at most 2")
    assert (
        client.post("/api/cached-jobs/trigger", headers=tenant.headers(), json={}).status_code
        == 201
    )
    assert job_count(tenant.org_id) == 2


def test_cached_jobs_many_is_capped_in_executions(client: FlaskClient, limits: Limits) -> None:
    limits(max_executions_per_request=10)
    tenant = make_tenant(n_queries=2)
    plans = [
        {"queryId": str(q), "aiModels": ["openai"], "executionCount": 6} for q in tenant.query_ids
    ]
    response = client.post(
        "/api/cached-jobs/many", headers=tenant.headers(), json={"cachedJobs": plans}
    )
    assert_mentionlab_error(response, 422, "would create 12 executions", "at most 10")
    with session_scope() as session:
        assert not session.scalars(
            select(CachedJob).where(CachedJob.organisation_id == tenant.org_id)
        ).all()


def test_trigger_over_the_per_request_cap(
    client: FlaskClient, tenant: Tenant, limits: Limits
) -> None:
    limits(max_executions_per_request=26)  # the seed body is 3 queries x 3 models x 3 runs
    assert_mentionlab_error(trigger(client, tenant), 422, "would create 27 executions")
    assert job_count(tenant.org_id) == 0


def test_superai_batch_over_the_per_request_cap(
    client: FlaskClient, tenant: Tenant, limits: Limits
) -> None:
    limits(max_executions_per_request=3)
    response = client.post(
        f"/v1/apps/{tenant.project_id}/jobs",
        headers=tenant.headers(),
        json={"inputs": [{"text": str(n)} for n in range(4)]},
    )
    assert response.status_code == 400, response.json
    assert "4 inputs; at most 3" in response.json["message"]
    assert job_count(tenant.org_id) == 0


# -- per organisation ----------------------------------------------------------------------


def test_active_executions_cap_in_every_family(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant, limits: Limits
) -> None:
    """27 executions pending; a cap of 40 leaves room for 13 more, in any family."""
    limits(max_active_executions_per_organisation=40)
    assert trigger(client, tenant).status_code == 201
    response = trigger(client, tenant)
    assert_mentionlab_error(
        response, 429, "has 27 executions pending or retrying", "would add 27", "at most 40"
    )
    # Valpay: its envelope.
    response = client.post(
        "/v1/jobs",
        headers=tenant.headers(bearer=True),
        json={
            "jobType": "ai_queries",
            "payload": {"projectId": str(tenant.project_id), **SEED_BODY},
        },
    )
    assert response.status_code == 429, response.json
    assert response.json["success"] is False
    assert "at most 40" in response.json["message"]
    # super.AI: a batch of 14 inputs is over, one of 13 fits.
    url = f"/v1/apps/{tenant.project_id}/jobs"
    response = client.post(
        url, headers=tenant.headers(), json={"inputs": [{"n": n} for n in range(14)]}
    )
    assert response.status_code == 429, response.json
    assert "would add 14" in response.json["message"]
    response = client.post(
        url, headers=tenant.headers(), json={"inputs": [{"n": n} for n in range(13)]}
    )
    assert response.status_code == 200, response.json
    assert job_count(tenant.org_id) == 2
    # Another organisation has its own room.
    assert trigger(client, other_tenant).status_code == 201


def test_active_jobs_cap_frees_up_when_a_job_ends(
    client: FlaskClient, tenant: Tenant, limits: Limits
) -> None:
    limits(max_active_jobs_per_organisation=2)
    first = trigger(client, tenant)
    assert first.status_code == 201
    assert trigger(client, tenant).status_code == 201
    assert_mentionlab_error(
        trigger(client, tenant), 429, "has 2 jobs pending or processing", "at most 2"
    )
    canceled = client.post(f"/api/jobs/{first.json['id']}/cancel", headers=tenant.headers())
    assert canceled.status_code == 200, canceled.json
    assert trigger(client, tenant).status_code == 201
    assert job_count(tenant.org_id) == 3


def test_smartdb_run_now_over_the_cap_is_limit_exceeded(
    client: FlaskClient,
    tenant: Tenant,
    limits: Limits,
    private_allowed: None,  # noqa: F811
) -> None:
    now = datetime.now(UTC)
    with source_table() as (_engine, table):
        register(client, tenant, "shop", SOURCE_URL)
        create_kb(client, tenant, "orders_kb")
        name = create_job(
            client,
            tenant,
            job_body(
                "shop",
                table.name,
                "orders_kb",
                start_time=(now - timedelta(days=2)).isoformat(),
                end_time=(now - timedelta(days=1)).isoformat(),
            ),
        )["job_name"]
        limits(max_active_jobs_per_organisation=1)
        assert trigger(client, tenant).status_code == 201  # the one active job
        response = client.post(f"/jobs/{name}/run", headers=tenant.headers())
    assert response.status_code == 429, response.json
    assert response.json["success"] is False
    error = response.json["error"]
    assert error["code"] == "LIMIT_EXCEEDED"
    assert "at most 1" in error["message"]
    assert "limit: 1" in error["details"]
    assert job_count(tenant.org_id) == 1


def test_concurrent_triggers_do_not_overshoot_the_cap(app: Flask, limits: Limits) -> None:
    """20 requests at once against a cap of 5 active jobs: exactly 5 are accepted (the
    check and the create hold the organisation's lock)."""
    limits(max_active_jobs_per_organisation=5)
    tenant = make_tenant(n_queries=1)
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def one() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(trigger(client, tenant).status_code)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * 5 + [429] * 15
    assert job_count(tenant.org_id) == 5


def test_active_work_is_read_from_the_job_counters(client: FlaskClient, tenant: Tenant) -> None:
    """Finished jobs, and the finished executions of unfinished ones, do not count."""
    from shared.engine.quotas import active_work

    ids = [uuid.UUID(trigger(client, tenant).json["id"]) for _ in range(2)]
    with session_scope() as session:
        finished, running = (session.get(Job, i) for i in ids)
        assert finished is not None and running is not None
        finished.status, finished.pending, finished.success = "completed", 0, 27
        running.status, running.pending, running.retrying, running.success = "processing", 5, 2, 20
    with session_scope() as session:
        work = active_work(session, tenant.org_id)
    assert (work.jobs, work.executions) == (1, 7)
