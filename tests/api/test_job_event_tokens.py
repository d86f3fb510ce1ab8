"""Stream tokens: ``POST /api/jobs/{id}/events/token`` and ``GET .../events?token=``.

A token opens one job's progress stream, for its organisation, for a few minutes, with no
header at all (a browser's ``EventSource``); anything else about it is a 401 in
Mentionlab's envelope. (The browser itself: tests/e2e/test_job_events_browser.py.)
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from shared.accounts import stream_tokens
from shared.db import session_scope
from shared.models import Job, utcnow
from shared.settings import get_settings
from tests.support import Tenant

RUN = {"aiModels": ["gpt-4.1-mini"], "executionCount": 1}
INVALID = {
    "statusCode": 401,
    "message": stream_tokens.INVALID,
    "error": "Unauthorized",
}


def new_job(client: FlaskClient, tenant: Tenant, *, finished: bool = True) -> str:
    """A job of the tenant's; finished, its stream is its ``end`` event alone (and closes)."""
    job_id: str = client.post("/api/jobs/trigger", headers=tenant.headers(), json=RUN).json["id"]
    if finished:
        with session_scope() as session:
            session.get(Job, uuid.UUID(job_id)).status = "completed"  # type: ignore[union-attr]
    return job_id


def ask_token(client: FlaskClient, job_id: str, headers: dict[str, str]) -> TestResponse:
    return client.post(f"/api/jobs/{job_id}/events/token", headers=headers)


def token_for(client: FlaskClient, tenant: Tenant, job_id: str) -> str:
    reply = ask_token(client, job_id, tenant.headers())
    assert reply.status_code == 200, reply.json
    token: str = reply.json["token"]
    return token


def stream(client: FlaskClient, job_id: str, token: str, **headers: str) -> TestResponse:
    return client.get(f"/api/jobs/{job_id}/events", query_string={"token": token}, headers=headers)


def sign(claims: dict[str, Any], key: bytes | str) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


def claims_for(tenant: Tenant, job_id: str, **changes: Any) -> dict[str, Any]:
    now = int(utcnow().timestamp())
    claims: dict[str, Any] = {
        "aud": stream_tokens.AUDIENCE,
        "job": job_id,
        "org": str(tenant.org_id),
        "iat": now,
        "exp": now + 60,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_a_token_opens_its_jobs_stream_with_no_header_from_any_origin(
    client: FlaskClient, tenant: Tenant
) -> None:
    job_id = new_job(client, tenant)
    for headers in (tenant.headers(), tenant.headers(bearer=True)):
        reply = ask_token(client, job_id, headers)
        assert reply.status_code == 200, reply.json
        assert set(reply.json) == {"token", "expiresAt"}
        expires_at = datetime.fromisoformat(reply.json["expiresAt"].replace("Z", "+00:00"))
        ttl = timedelta(seconds=get_settings().sse_token_ttl_seconds)
        assert timedelta(0) < expires_at - datetime.now(UTC) <= ttl
        # No API key, no JWT: the token alone, as a browser's EventSource sends it.
        opened = stream(client, job_id, reply.json["token"])
        assert opened.status_code == 200, opened.get_data(as_text=True)
        assert opened.headers["Content-Type"].startswith("text/event-stream")
        assert opened.headers["Access-Control-Allow-Origin"] == "*"
        body = opened.get_data(as_text=True)
        assert "event: end" in body and job_id in body
    # Opened with the usual credentials, the stream answers its own origin only: a
    # page could otherwise read a stream its user's headers opened.
    own = client.get(f"/api/jobs/{job_id}/events", headers=tenant.headers())
    assert own.status_code == 200 and "Access-Control-Allow-Origin" not in own.headers


def test_another_organisations_job_gets_no_token(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    job_id = new_job(client, tenant)
    for headers in (other_tenant.headers(project=False), other_tenant.headers(bearer=True)):
        denied = ask_token(client, job_id, headers)
        assert denied.status_code == 404, denied.json
        assert denied.json == {
            "statusCode": 404,
            "message": f"Job {job_id} not found",
            "error": "Not Found",
        }
    assert ask_token(client, str(uuid.uuid4()), tenant.headers()).status_code == 404
    missing = ask_token(client, job_id, {})
    assert missing.status_code == 401 and missing.json["statusCode"] == 401


def test_a_token_opens_no_other_jobs_stream(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine, sibling = new_job(client, tenant), new_job(client, tenant)
    theirs = new_job(client, other_tenant)
    token = token_for(client, tenant, mine)
    for job_id in (sibling, theirs):
        denied = stream(client, job_id, token)
        assert (denied.status_code, denied.json) == (401, INVALID)
    # And another organisation's token opens none of ours.
    assert stream(client, mine, token_for(client, other_tenant, theirs)).status_code == 401


def test_a_token_is_for_the_stream_alone(client: FlaskClient, tenant: Tenant) -> None:
    """Not another route (its job, a new token for it, the list), not as a bearer token."""
    job_id = new_job(client, tenant)
    token = token_for(client, tenant, job_id)
    for method, path in (
        ("GET", f"/api/jobs/{job_id}"),
        ("POST", f"/api/jobs/{job_id}/events/token"),
        ("POST", f"/api/jobs/{job_id}/cancel"),
        ("GET", f"/api/jobs/{job_id}/executions"),
    ):
        reply = client.open(path, method=method, query_string={"token": token})
        # Refused: an unknown parameter there (400, naming it), or no credentials (401).
        assert reply.status_code in (400, 401), (path, reply.json)
        assert reply.status_code == 401 or "token" in str(reply.json["message"]), reply.json
    as_bearer = client.get(f"/api/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})
    assert as_bearer.status_code == 401, as_bearer.json
    # A user's bearer JWT is no stream token either (nor should it ever be in a URL).
    assert (stream(client, job_id, tenant.token).json) == INVALID


def test_an_expired_token_is_401(
    client: FlaskClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = new_job(client, tenant)
    ttl = get_settings().sse_token_ttl_seconds
    issued_then = utcnow() - timedelta(seconds=ttl + 1)
    monkeypatch.setattr(stream_tokens, "utcnow", lambda: issued_then)
    expired = stream_tokens.issue_stream_token(tenant.org_id, uuid.UUID(job_id), None)
    monkeypatch.undo()
    assert expired.expires_at < utcnow()
    assert (stream(client, job_id, expired.token).json) == INVALID
    # A token that says nothing of when it ends is no better.
    key = stream_tokens._signing_key()
    forever = sign(claims_for(tenant, job_id, exp=None), key)
    assert stream(client, job_id, forever).status_code == 401


def test_a_tampered_or_forged_token_is_401(client: FlaskClient, tenant: Tenant) -> None:
    job_id = new_job(client, tenant)
    other_job = new_job(client, tenant)
    token = token_for(client, tenant, other_job)
    header, payload, signature = token.split(".")
    # The same signature over claims rewritten to name this job.
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["job"] = job_id
    rewritten = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    key = stream_tokens._signing_key()
    for forged in (
        f"{header}.{rewritten}.{signature}",
        f"{header}.{payload}.{flipped}",
        "not-a-token",
        "",
        # Right claims, signed with the key of bearer tokens (SECRET_KEY itself).
        sign(claims_for(tenant, job_id), get_settings().secret_key),
        # The stream key, but not the stream's audience (or none).
        sign(claims_for(tenant, job_id, aud="jobyard:something-else"), key),
        sign(claims_for(tenant, job_id, aud=None), key),
        # No organisation, or a job id that is no UUID.
        sign(claims_for(tenant, job_id, org=None), key),
        sign(claims_for(tenant, job_id, job="1"), key),
    ):
        denied = stream(client, job_id, forged)
        assert (denied.status_code, denied.json) == (401, INVALID), forged
    # The check itself is sound: the same claims, rightly signed, open it.
    assert stream(client, job_id, sign(claims_for(tenant, job_id), key)).status_code == 200


def test_the_usual_credentials_win_over_a_token(client: FlaskClient, tenant: Tenant) -> None:
    """A client with headers is served by them, whatever ``token`` holds (as every other
    route is); a token is read only from a request that carries no credential."""
    job_id = new_job(client, tenant)
    reply = stream(client, job_id, "not-a-token", **tenant.headers())
    assert reply.status_code == 200 and "event: end" in reply.get_data(as_text=True)
    assert "Access-Control-Allow-Origin" not in reply.headers


def test_the_spec_documents_the_token(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    issue = spec["paths"]["/api/jobs/{job_id}/events/token"]["post"]
    assert issue["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StreamToken"
    }
    assert set(spec["components"]["schemas"]["StreamToken"]["required"]) == {"token", "expiresAt"}
    assert {"401", "404"} <= set(issue["responses"])
    events = spec["paths"]["/api/jobs/{job_id}/events"]["get"]
    assert [p["name"] for p in events["parameters"] if p["in"] == "query"] == ["token"]
