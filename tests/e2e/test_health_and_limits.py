"""Health reporting and request rate limits, against the real Redis and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from flask.testing import FlaskClient

from api import create_app
from shared.settings import reset_settings_cache
from tests.support import Tenant


def test_healthz_is_503_when_redis_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The health check names the part that is down."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    reset_settings_cache()
    try:
        response = create_app({"TESTING": True}).test_client().get("/healthz")
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "ok"
    assert response.json["checks"]["redis"].startswith("down")


def test_rate_limit_answers_429_with_headers(tenant: Tenant) -> None:
    """Over the limit: 429 in the family envelope, with Retry-After and X-RateLimit-*."""
    app = create_app(
        {"RATELIMIT_APPLICATION": "3 per minute", "RATELIMIT_KEY_PREFIX": f"t-{uuid.uuid4().hex}"}
    )
    client: FlaskClient = app.test_client()
    statuses = [
        client.get("/api/projects/list", headers=tenant.headers()).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    limited = client.get("/api/projects/list", headers=tenant.headers())
    assert limited.status_code == 429
    assert limited.json == {
        "statusCode": 429,
        "message": "Rate limit exceeded: 3 per 1 minute",
        "error": "Too Many Requests",
    }
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.headers["X-RateLimit-Limit"] == "3"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    # Another credential has its own bucket; health checks are never limited.
    other = client.get("/api/projects/list", headers={"x-api-key": "someone-else"})
    assert other.status_code == 401
    assert client.get("/healthz").status_code == 200


def test_rate_limit_is_one_bucket_per_credential_across_endpoints(
    tenant: Tenant, other_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests to different endpoints (and families) with one key draw on one bucket:
    spreading them over endpoints does not multiply the allowance. The limit comes from
    the setting, as in production."""
    monkeypatch.setenv("JOBYARD_API_RATE_LIMIT", "4 per minute")
    reset_settings_cache()
    try:
        app = create_app({"RATELIMIT_KEY_PREFIX": f"t-{uuid.uuid4().hex}"})
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    client: FlaskClient = app.test_client()
    headers = tenant.headers()
    first = client.get("/api/projects/list", headers=headers)
    assert first.headers["X-RateLimit-Remaining"] == "3"
    second = client.post("/api/jobs/list", headers=headers, json={})
    assert second.status_code == 200
    assert second.headers["X-RateLimit-Remaining"] == "2"
    third = client.get("/databases", headers=headers)
    assert third.status_code == 200
    assert third.headers["X-RateLimit-Remaining"] == "1"
    assert client.get(f"/api/projects/{tenant.project_id}", headers=headers).status_code == 200
    # The fifth request, to yet another endpoint, is over the credential's limit.
    assert client.post("/api/queries/list", headers=headers, json={}).status_code == 429
    # Another credential still has its own full bucket.
    fresh = client.get("/api/projects/list", headers=other_tenant.headers())
    assert fresh.status_code == 200
    assert fresh.headers["X-RateLimit-Remaining"] == "3"
