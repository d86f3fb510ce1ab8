"""Retry on demand through each family (``POST .../retry``), without a worker: the failed
executions go back to pending with exact counters; bad input, a job still running or
retried twice, another organisation's ids, the quotas, the rate limit and a repeated
Idempotency-Key answer in the family's envelope and change nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from api.app import create_app
from shared.db import session_scope
from shared.engine import outbox
from shared.engine.fanout import fan_out_job
from shared.mentionlab.models import CachedJob
from shared.models import Execution
from shared.settings import reset_settings_cache
from shared.webhooks.models import WebhookMessage
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
from tests.support import Tenant, assert_counters_exact, fail_every_execution, job_row

AI_RUN = {"aiModels": ["gpt-4.1-mini", "sonar"], "executionCount": 1}  # 3 queries: 6


def failed_ai_job(client: FlaskClient, tenant: Tenant) -> str:
    response = client.post("/api/jobs/trigger", headers=tenant.headers(), json=AI_RUN)
    assert response.status_code == 201, response.json
    job_id: str = response.json["id"]
    assert fail_every_execution(job_id) == 6
    assert job_row(job_id).status == "failed"
    return job_id


def execution_ids(job_id: str) -> list[str]:
    with session_scope() as session:
        rows = session.scalars(
            select(Execution.id)
            .where(Execution.job_id == uuid.UUID(job_id))
            .order_by(Execution.seq)
        )
        return [str(i) for i in rows]


def state(job_id: str) -> tuple[Any, ...]:
    job = assert_counters_exact(job_id)
    return (job.status, job.pending, job.success, job.failed, job.updated_at)


def nest_error(response: Any, status: int) -> str:
    assert response.status_code == status, response.json
    body = response.json
    assert set(body) == {"statusCode", "message", "error"} and body["statusCode"] == status
    message: str = body["message"] if isinstance(body["message"], str) else body["message"][0]
    return message


# -- Mentionlab -------------------------------------------------------------------------------------


def test_mentionlab_retries_every_failed_execution(client: FlaskClient, tenant: Tenant) -> None:
    job_id = failed_ai_job(client, tenant)
    response = client.post(f"/api/jobs/{job_id}/retry", headers=tenant.headers())
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["id"], body["status"]) == (job_id, "processing")
    assert (body["pendingExecutions"], body["failedExecutions"]) == (6, 0)
    assert body["finishedAt"] is None
    assert state(job_id)[:4] == ("processing", 6, 0, 0)


def test_mentionlab_retries_only_the_named_ones(client: FlaskClient, tenant: Tenant) -> None:
    job_id = failed_ai_job(client, tenant)
    named = execution_ids(job_id)[:2]
    response = client.post(
        f"/api/jobs/{job_id}/retry", headers=tenant.headers(), json={"executionIds": named}
    )
    assert response.status_code == 200, response.json
    assert (response.json["pendingExecutions"], response.json["failedExecutions"]) == (2, 4)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"executionIds": []}, 400),
        ({"executionIds": ["not-a-uuid"]}, 400),
        ({"executionIds": "all"}, 400),
        ({"executionIds": [str(uuid.uuid4())]}, 404),
    ],
)
def test_mentionlab_bad_input_changes_nothing(
    client: FlaskClient, tenant: Tenant, body: Any, status: int
) -> None:
    job_id = failed_ai_job(client, tenant)
    before = state(job_id)
    response = client.post(f"/api/jobs/{job_id}/retry", headers=tenant.headers(), json=body)
    nest_error(response, status)
    assert state(job_id) == before


def test_mentionlab_another_jobs_execution_is_not_found(
    client: FlaskClient, tenant: Tenant
) -> None:
    job_id, other = failed_ai_job(client, tenant), failed_ai_job(client, tenant)
    before = state(job_id)
    stranger = execution_ids(other)[0]
    response = client.post(
        f"/api/jobs/{job_id}/retry",
        headers=tenant.headers(),
        json={"executionIds": [execution_ids(job_id)[0], stranger]},
    )
    assert stranger in nest_error(response, 404)
    assert state(job_id) == before and job_row(other).status == "failed"


def test_mentionlab_a_running_job_or_a_second_retry_is_409(
    client: FlaskClient, tenant: Tenant
) -> None:
    running = client.post("/api/jobs/trigger", headers=tenant.headers(), json=AI_RUN).json["id"]
    fan_out_job(uuid.UUID(running))
    response = client.post(f"/api/jobs/{running}/retry", headers=tenant.headers())
    assert "has not finished" in nest_error(response, 409)

    job_id = failed_ai_job(client, tenant)
    assert client.post(f"/api/jobs/{job_id}/retry", headers=tenant.headers()).status_code == 200
    before = state(job_id)
    response = client.post(f"/api/jobs/{job_id}/retry", headers=tenant.headers())
    assert "has not finished (processing)" in nest_error(response, 409)
    assert state(job_id) == before


def test_mentionlab_a_canceled_job_is_409(client: FlaskClient, tenant: Tenant) -> None:
    job_id = client.post("/api/jobs/trigger", headers=tenant.headers(), json=AI_RUN).json["id"]
    fan_out_job(uuid.UUID(job_id))
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=tenant.headers()).status_code == 200
    response = client.post(f"/api/jobs/{job_id}/retry", headers=tenant.headers())
    assert "canceled" in nest_error(response, 409)
    assert job_row(job_id).status == "canceled"


def test_another_organisation_gets_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    job_id = failed_ai_job(client, tenant)
    before = state(job_id)
    response = client.post(f"/api/jobs/{job_id}/retry", headers=other_tenant.headers(project=False))
    nest_error(response, 404)
    response = client.post(
        f"/v1/jobs/{job_id}/retry", headers=other_tenant.headers(bearer=True, project=False)
    )
    assert response.status_code == 404 and response.json["success"] is False
    assert state(job_id) == before


def test_a_repeated_idempotency_key_retries_once(client: FlaskClient, tenant: Tenant) -> None:
    job_id = failed_ai_job(client, tenant)
    headers = {**tenant.headers(), "Idempotency-Key": f"retry-{job_id}"}
    first = client.post(f"/api/jobs/{job_id}/retry", headers=headers)
    assert first.status_code == 200, first.json
    before = state(job_id)
    again = client.post(f"/api/jobs/{job_id}/retry", headers=headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert state(job_id) == before
    # Without the key, the same retry is refused: the job runs again already.
    nest_error(client.post(f"/api/jobs/{job_id}/retry", headers=tenant.headers()), 409)


def test_a_cached_job_is_active_again_while_its_job_runs_again(
    client: FlaskClient, tenant: Tenant
) -> None:
    """Its job's retry makes it active in the same transaction; the first run's
    job.finished, drained only after the retry, does not end it; the second one does."""
    plan = {"queryId": str(tenant.query_ids[0]), "aiModels": ["perplexity"], "executionCount": 2}
    response = client.post(
        "/api/cached-jobs/many", headers=tenant.headers(), json={"cachedJobs": [plan]}
    )
    assert response.status_code == 201, response.json
    cached_id = response.json[0]["id"]
    response = client.post("/api/cached-jobs/trigger", headers=tenant.headers())
    assert response.status_code == 201, response.json
    job_id = response.json[0]["id"]

    def cached_status() -> str:
        got = client.get(f"/api/cached-jobs/{cached_id}", headers=tenant.headers())
        assert got.status_code == 200, got.json
        status: str = got.json["status"]
        return status

    assert fail_every_execution(job_id) == 2
    assert cached_status() == "ended"
    assert client.post(f"/api/jobs/{job_id}/retry", headers=tenant.headers()).status_code == 200
    assert cached_status() == "active"
    outbox.drain(session_scope)  # the first run's job.finished, late
    assert cached_status() == "active"
    with session_scope() as session:
        cached = session.get(CachedJob, uuid.UUID(cached_id))
        assert cached is not None and cached.status == "active"
    fail_every_execution(job_id)  # the retried run ends (failed again)
    outbox.drain(session_scope)
    assert cached_status() == "ended"
    with session_scope() as session:
        cached = session.get(CachedJob, uuid.UUID(cached_id))
        assert cached is not None and cached.status == "ended"


@pytest.fixture
def settings_restored() -> Iterator[None]:
    yield
    reset_settings_cache()


def test_the_quota_of_unfinished_work_applies(
    client: FlaskClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, settings_restored: None
) -> None:
    job_id = failed_ai_job(client, tenant)
    monkeypatch.setenv("JOBYARD_MAX_ACTIVE_EXECUTIONS_PER_ORGANISATION", "4")
    reset_settings_cache()
    before = state(job_id)
    response = client.post(f"/api/jobs/{job_id}/retry", headers=tenant.headers())
    assert response.status_code == 429, response.json
    assert "at most 4" in response.json["message"]
    assert state(job_id) == before
    named = {"executionIds": execution_ids(job_id)[:4]}
    response = client.post(f"/api/jobs/{job_id}/retry", headers=tenant.headers(), json=named)
    assert response.status_code == 200, response.json


def test_the_rate_limit_applies(tenant: Tenant) -> None:
    app = create_app(
        {"RATELIMIT_APPLICATION": "2 per minute", "RATELIMIT_KEY_PREFIX": f"t-{uuid.uuid4().hex}"}
    )
    client = app.test_client()
    job_id = failed_ai_job(client, tenant)  # the trigger: the first request
    assert client.post(f"/api/jobs/{job_id}/retry", headers=tenant.headers()).status_code == 200
    before = state(job_id)
    limited = client.post(f"/api/jobs/{job_id}/retry", headers=tenant.headers())
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert state(job_id) == before


# -- Valpay ------------------------------------------------------------------------------------------


def test_valpay_retries_a_job_of_any_type(client: FlaskClient, tenant: Tenant) -> None:
    job_id = failed_ai_job(client, tenant)
    headers = tenant.headers(bearer=True, project=False)
    named = execution_ids(job_id)[:3]
    response = client.post(
        f"/v1/jobs/{job_id}/retry", headers=headers, json={"executionIds": named}
    )
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert (data["jobId"], data["status"], data["finishedAt"]) == (job_id, "processing", None)
    assert data["progress"] == {"total": 6, "pending": 3, "retrying": 0, "success": 0, "failed": 3}
    again = client.post(f"/v1/jobs/{job_id}/retry", headers=headers, json={"executionIds": named})
    assert again.status_code == 409
    assert again.json["success"] is False and "has not finished" in again.json["message"]
    bad = client.post(f"/v1/jobs/{job_id}/retry", headers=headers, json={"executionIds": [1]})
    assert bad.status_code == 400 and bad.json["success"] is False
    assert state(job_id)[:4] == ("processing", 3, 0, 3)


# -- super.AI ----------------------------------------------------------------------------------------


def failed_batch(client: FlaskClient, tenant: Tenant) -> tuple[str, list[str]]:
    app = f"/v1/apps/{tenant.project_id}"
    response = client.post(f"{app}/jobs", headers=tenant.headers(), json={"inputs": [{"a": 1}] * 3})
    assert response.status_code == 200, response.json
    batch_id: str = response.json["batchId"]
    assert fail_every_execution(batch_id) == 3
    return batch_id, execution_ids(batch_id)


def test_superai_retries_a_batch_or_one_data_point(client: FlaskClient, tenant: Tenant) -> None:
    app = f"/v1/apps/{tenant.project_id}"
    batch_id, points = failed_batch(client, tenant)
    response = client.post(f"{app}/jobs/{points[0]}/retry", headers=tenant.headers())
    assert response.status_code == 200, response.json
    assert (response.json["id"], response.json["status"]) == (points[0], "SCHEDULED")
    # The batch runs again: a second data point's retry waits for it to end.
    response = client.post(f"{app}/jobs/{points[1]}/retry", headers=tenant.headers())
    assert response.status_code == 409, response.json
    assert set(response.json) == {"statusCode", "message", "details"}
    assert state(batch_id)[:4] == ("processing", 1, 0, 2)

    batch_id, points = failed_batch(client, tenant)
    response = client.post(f"{app}/batches/{batch_id}/retry", headers=tenant.headers())
    assert response.status_code == 200, response.json
    assert (response.json["pending"], response.json["failedCount"]) == (3, 0)
    assert response.json["completed"] is None


def test_superai_callbacks_come_again_when_the_retried_batch_ends(
    client: FlaskClient, tenant: Tenant
) -> None:
    """Each retried data point's callback follows its first (one chain per data point),
    and the batch's own callback comes again."""
    app = f"/v1/apps/{tenant.project_id}"
    body = {"inputs": [{"a": 1}, {"a": 2}], "callbackUrl": "https://hooks.example.com/retry"}
    batch_id = client.post(f"{app}/jobs", headers=tenant.headers(), json=body).json["batchId"]
    assert fail_every_execution(batch_id) == 2
    assert (
        client.post(f"{app}/batches/{batch_id}/retry", headers=tenant.headers()).status_code == 200
    )
    assert fail_every_execution(batch_id, "HTTP 400: refused again") == 2
    with session_scope() as session:
        messages = session.scalars(
            select(WebhookMessage)
            .where(WebhookMessage.job_id == uuid.UUID(batch_id))
            .order_by(WebhookMessage.created_at, WebhookMessage.id)
        ).all()
        per_point: dict[Any, list[WebhookMessage]] = {}
        for message in messages:
            if message.execution_id is not None:
                per_point.setdefault(message.execution_id, []).append(message)
        assert len(per_point) == 2
        for first, second in per_point.values():
            assert second.follows_id == first.id
        closing = [m for m in messages if m.closes_job]
        assert len(closing) == 2 and all(m.payload["state"] == "FAILED" for m in closing)


def test_superai_bad_input_changes_nothing(client: FlaskClient, tenant: Tenant) -> None:
    app = f"/v1/apps/{tenant.project_id}"
    batch_id, points = failed_batch(client, tenant)
    before = state(batch_id)
    for body, status in (
        ({"jobIds": ["x"]}, 400),
        ({"jobIds": [str(uuid.uuid4())]}, 404),
        ({"unknown": 1}, 400),
    ):
        response = client.post(
            f"{app}/batches/{batch_id}/retry", headers=tenant.headers(), json=body
        )
        assert response.status_code == status, (body, response.json)
        assert set(response.json) == {"statusCode", "message", "details"}
    response = client.post(f"{app}/batches/{points[0]}/retry", headers=tenant.headers())
    assert response.status_code == 404  # a data point's id is not a batch's
    assert state(batch_id) == before


# -- Smart DB ----------------------------------------------------------------------------------------


def test_smartdb_retries_the_latest_failed_run(
    client: FlaskClient,
    tenant: Tenant,
    private_allowed: None,  # noqa: F811
) -> None:
    """Only the latest run, while none is going; its history row runs again, and closes
    again when the run ends again."""
    register(client, tenant, "shop", SOURCE_URL)
    create_kb(client, tenant, "orders_kb")
    headers = tenant.headers()

    def failed_run() -> str:
        response = client.post("/jobs/sync_orders/run", headers=headers)
        assert response.status_code == 202, response.json
        run_id: str = response.json["data"]["run_job_id"]
        fail_every_execution(run_id)
        outbox.drain(session_scope)  # the run's history row closes
        return run_id

    def history() -> dict[str, Any]:
        response = client.get("/jobs/sync_orders/history", headers=headers)
        return {entry["job_id"]: entry for entry in response.json["data"]}

    with source_table() as (engine, table):
        insert_orders(engine, table, 5, start=0, at=datetime(2026, 11, 1))
        create_job(
            client, tenant, job_body("shop", table.name, "orders_kb", job_name="sync_orders")
        )
        first, second = failed_run(), failed_run()
        assert [history()[r]["status"] for r in (first, second)] == ["failed", "failed"]

        older = client.post(f"/jobs/sync_orders/history/{first}/retry", headers=headers)
        assert older.status_code == 409 and older.json["error"]["code"] == "NOT_LATEST_RUN"
        assert state(first)[0] == "failed"

        response = client.post(f"/jobs/sync_orders/history/{second}/retry", headers=headers)
        assert response.status_code == 202, response.json
        data = response.json["data"]
        assert data["run_job_id"] == second and data["running"] is True
        assert data["last_run"]["status"] == "running" and data["last_run"]["error"] is None
        assert state(second)[:2] == ("processing", job_row(second).total)

        again = client.post(f"/jobs/sync_orders/history/{second}/retry", headers=headers)
        assert again.status_code == 409 and again.json["error"]["code"] == "RUN_IN_PROGRESS"
        unknown = client.post(f"/jobs/sync_orders/history/{uuid.uuid4()}/retry", headers=headers)
        assert unknown.status_code == 404 and unknown.json["error"]["code"] == "NOT_FOUND"
        not_a_run = client.post("/jobs/sync_orders/history/nope/retry", headers=headers)
        assert not_a_run.status_code == 404 and not_a_run.json["success"] is False

        fail_every_execution(second)
        outbox.drain(session_scope)
        assert history()[second]["status"] == "failed" and history()[second]["run_end"]
