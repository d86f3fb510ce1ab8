"""Idempotency-Key on every create endpoint (Stripe's semantics), against the real
PostgreSQL: replays, mismatches, concurrency, expiry, and the spec."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared import idempotency
from shared.db import session_scope, unit_of_work
from shared.errors import Conflict
from shared.idempotency.models import IdempotencyKey
from shared.models import utcnow
from shared.settings import get_settings, reset_settings_cache
from shared.webhooks.models import WebhookSecret
from tests.api.helpers import SEED_BODY, job_count
from tests.kb_support import SOURCE_URL, private_allowed  # noqa: F401 - a fixture
from tests.support import Tenant, make_tenant


def trigger(client: FlaskClient, tenant: Tenant, key: str, body: Any = None, **headers: str) -> Any:
    return client.post(
        "/api/jobs/trigger",
        headers={**tenant.headers(), "Idempotency-Key": key, **headers},
        json=SEED_BODY if body is None else body,
    )


def test_same_key_same_request_answers_the_first_answer_again(
    client: FlaskClient, tenant: Tenant
) -> None:
    first = trigger(client, tenant, "retry-1")
    assert first.status_code == 201, first.json
    assert "Idempotent-Replayed" not in first.headers
    # The same request, its JSON spaced and ordered differently.
    again = client.post(
        "/api/jobs/trigger",
        headers={
            **tenant.headers(),
            "Idempotency-Key": "retry-1",
            "Content-Type": "application/json",
        },
        data=json.dumps({"executionCount": 3, "aiModels": SEED_BODY["aiModels"]}, indent=2),
    )
    assert again.status_code == 201
    assert again.get_data() == first.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert job_count(tenant.org_id) == 1
    # Without a key, or with another one, it is a new job.
    assert (
        client.post("/api/jobs/trigger", headers=tenant.headers(), json=SEED_BODY).status_code
        == 201
    )
    assert trigger(client, tenant, "retry-2").status_code == 201
    assert job_count(tenant.org_id) == 3


def test_same_key_different_request_is_422_and_creates_nothing(
    client: FlaskClient, tenant: Tenant
) -> None:
    assert trigger(client, tenant, "k").status_code == 201
    other = trigger(client, tenant, "k", {"aiModels": ["gpt-4.1-mini"], "executionCount": 1})
    assert other.status_code == 422
    assert other.json == {
        "statusCode": 422,
        "message": "Idempotency-Key 'k' was already used for a different request: "
        "use a new key for a new request",
        "error": "Unprocessable Entity",
    }
    # The context headers are part of the request too.
    project = make_project(client, tenant)
    assert trigger(client, tenant, "k", **{"x-project-id": project}).status_code == 422
    assert job_count(tenant.org_id) == 1


def make_project(client: FlaskClient, tenant: Tenant) -> str:
    created = client.post(
        "/api/projects", headers=tenant.headers(project=False), json={"name": "P2"}
    )
    assert created.status_code == 201, created.json
    return str(created.json["id"])


def test_keys_belong_to_an_organisation(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    first = trigger(client, tenant, "shared-key")
    second = trigger(client, other_tenant, "shared-key")
    assert first.status_code == second.status_code == 201
    assert first.json["id"] != second.json["id"]
    assert job_count(other_tenant.org_id) == 1


def test_a_refused_create_leaves_the_key_free(
    client: FlaskClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only successes are kept: a create refused (here by the quota) wrote nothing, so the
    same request with the same key runs again once it can succeed."""
    monkeypatch.setenv("JOBYARD_MAX_ACTIVE_JOBS_PER_ORGANISATION", "1")
    reset_settings_cache()
    try:
        assert (
            client.post("/api/jobs/trigger", headers=tenant.headers(), json=SEED_BODY).status_code
            == 201
        )
        assert trigger(client, tenant, "after-429").status_code == 429
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert trigger(client, tenant, "after-429").status_code == 201
    assert job_count(tenant.org_id) == 2


def test_twenty_concurrent_identical_requests_create_one_job(app: Flask) -> None:
    tenant = make_tenant(n_queries=1)
    barrier = threading.Barrier(20)
    answers: list[tuple[int, bytes]] = []

    def one() -> None:
        client = app.test_client()
        barrier.wait()
        response = trigger(client, tenant, "concurrent-1")
        answers.append((response.status_code, response.get_data()))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 20
    assert job_count(tenant.org_id) == 1
    created = {body for status, body in answers if status == 201}
    assert len(created) == 1  # every 201 is the one job's answer
    in_progress = [body for status, body in answers if status == 409]
    assert all(b"still in progress" in body for body in in_progress)
    assert sorted({status for status, _ in answers}) in ([201], [201, 409])
    # Once done, a retry is the stored answer.
    replay = trigger(app.test_client(), tenant, "concurrent-1")
    assert (replay.status_code, replay.get_data()) == (201, created.pop())


def test_a_key_in_progress_answers_409_at_once_and_is_free_again_if_its_request_dies(
    client: FlaskClient, tenant: Tenant
) -> None:
    """While a request holds the key (its transaction is open), the others answer 409 at
    once rather than wait; if it dies (its transaction rolls back), nothing of it stays
    and the key is free."""
    with pytest.raises(RuntimeError, match="the holder died"), unit_of_work() as holder:
        assert isinstance(trigger_claim(holder.session, tenant, "held"), idempotency.Claimed)
        started = time.monotonic()
        response = trigger(client, tenant, "held")
        assert response.status_code == 409
        assert time.monotonic() - started < 2
        assert response.json["message"] == (
            "A request with Idempotency-Key 'held' is still in progress: retry it in a moment"
        )
        raise RuntimeError("the holder died")
    assert trigger(client, tenant, "held").status_code == 201
    replay = trigger(client, tenant, "held")
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert job_count(tenant.org_id) == 1


def test_an_answer_stored_under_a_taken_key_is_refused(tenant: Tenant) -> None:
    """The unique (organisation, key) is the last word: a store that finds the key taken
    (a lock bypassed) raises, so the create it would answer rolls back with it."""
    with unit_of_work() as work:
        claimed = idempotency.claim(work.session, tenant.org_id, "taken", "f")
        assert isinstance(claimed, idempotency.Claimed)
        idempotency.store(work.session, claimed, 201, b"first", {})
    with pytest.raises(Conflict), unit_of_work() as work:
        idempotency.store(work.session, claimed, 201, b"second", {})
    with unit_of_work() as work:
        replay = idempotency.claim(work.session, tenant.org_id, "taken", "f")
    assert replay == idempotency.Replay(201, b"first", {})


def trigger_claim(session: Session, tenant: Tenant, key: str) -> idempotency.Outcome:
    """Claim the key in ``session``'s transaction as a trigger request of the tenant would
    (its fingerprint)."""
    app = Flask(__name__)
    with app.test_request_context(
        "/api/jobs/trigger",
        method="POST",
        json=SEED_BODY,
        headers=tenant.headers(),
    ):
        from api.idempotency import fingerprint

        return idempotency.claim(session, tenant.org_id, key, fingerprint())


def test_an_expired_key_is_free_again_and_purged(client: FlaskClient, tenant: Tenant) -> None:
    first = trigger(client, tenant, "day-old")
    assert first.status_code == 201
    expired = utcnow() - timedelta(seconds=get_settings().idempotency_key_ttl_seconds + 1)
    with session_scope() as session:
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.organisation_id == tenant.org_id)
            .values(created_at=expired)
        )
    again = trigger(client, tenant, "day-old")  # on use: a new request
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert again.json["id"] != first.json["id"]
    assert job_count(tenant.org_id) == 2
    # The sweep's housekeeping purges expired keys it finds.
    assert trigger(client, tenant, "other-key").status_code == 201
    with session_scope() as session:
        session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.organisation_id == tenant.org_id, IdempotencyKey.key == "other-key"
            )
            .values(created_at=expired)
        )
    with session_scope() as session:
        assert idempotency.purge_expired(session) >= 1
    with session_scope() as session:
        keys = set(
            session.scalars(
                select(IdempotencyKey.key).where(IdempotencyKey.organisation_id == tenant.org_id)
            )
        )
    assert keys == {"day-old"}


def test_a_bad_key_is_400(client: FlaskClient, tenant: Tenant) -> None:
    response = trigger(client, tenant, "x" * 256)
    assert response.status_code == 400
    assert "Idempotency-Key must be 1 to 255 characters" in response.json["message"]
    assert job_count(tenant.org_id) == 0


# -- every family's creates ----------------------------------------------------------------

Create = Callable[[Tenant], tuple[str, dict[str, str], Any]]


def _count_secrets(tenant: Tenant) -> int:
    with session_scope() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(WebhookSecret)
                .where(WebhookSecret.organisation_id == tenant.org_id)
            )
            or 0
        )


def _count_jobs(tenant: Tenant) -> int:
    return job_count(tenant.org_id)


CREATES: dict[str, tuple[Create, Callable[[Tenant], int] | None]] = {
    "mentionlab project": (
        lambda t: ("/api/projects", t.headers(project=False), {"name": "Again"}),
        None,
    ),
    "mentionlab queries/many": (
        lambda t: (
            "/api/queries/many",
            t.headers(),
            {"queries": [{"query": "q?", "language": "en", "country": "US"}]},
        ),
        None,
    ),
    "mentionlab cached-jobs/trigger": (
        lambda t: ("/api/cached-jobs/trigger", t.headers(), {}),
        _count_jobs,
    ),
    "superai batch": (
        lambda t: (f"/v1/apps/{t.project_id}/jobs", t.headers(), {"inputs": [{"text": "hi"}]}),
        _count_jobs,
    ),
    "superai webhook secret": (
        lambda t: ("/v1/webhooks/secret", t.headers(), None),
        _count_secrets,
    ),
    "valpay job": (
        lambda t: (
            "/v1/jobs",
            t.headers(bearer=True),
            {"jobType": "ai_queries", "payload": {"projectId": str(t.project_id), **SEED_BODY}},
        ),
        _count_jobs,
    ),
    "smartdb database": (
        lambda t: ("/databases", t.headers(), {"name": "shop", "url": SOURCE_URL}),
        None,
    ),
}


@pytest.mark.parametrize("name", list(CREATES))
def test_every_family_replays_its_creates(
    client: FlaskClient,
    tenant: Tenant,
    name: str,
    private_allowed: None,  # noqa: F811
) -> None:
    make, count = CREATES[name]
    if name == "mentionlab cached-jobs/trigger":
        plans = [{"queryId": str(tenant.query_ids[0]), "aiModels": ["openai"], "executionCount": 1}]
        created = client.post(
            "/api/cached-jobs/many", headers=tenant.headers(), json={"cachedJobs": plans}
        )
        assert created.status_code == 201, created.json
    path, headers, body = make(tenant)
    headers = {**headers, "Idempotency-Key": f"key-{name}"}
    first = client.post(path, headers=headers, json=body)
    assert 200 <= first.status_code < 300, first.json
    before = count(tenant) if count else None
    again = client.post(path, headers=headers, json=body)
    # A name taken (a project, a database) would be 409 if the create ran again.
    assert again.status_code == first.status_code, again.json
    assert again.get_data() == first.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    if count:
        assert count(tenant) == before
    different = client.post(path, headers=headers, json={"different": True})
    assert different.status_code == 422, different.json


def test_smartdb_mismatch_is_in_its_envelope(
    client: FlaskClient,
    tenant: Tenant,
    private_allowed: None,  # noqa: F811
) -> None:
    headers = {**tenant.headers(), "Idempotency-Key": "db"}
    assert (
        client.post(
            "/databases", headers=headers, json={"name": "a", "url": SOURCE_URL}
        ).status_code
        == 201
    )
    response = client.post("/databases", headers=headers, json={"name": "b", "url": SOURCE_URL})
    assert response.status_code == 422
    assert response.json["success"] is False
    assert response.json["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


SPECS = ("/openapi.json", "/v1/apps/openapi.json", "/v1/jobs/openapi.json", "/smartdb/openapi.json")


# Retries make work active again (a create of work, as far as keys and quotas go).
RETRIES_ANSWERING_200 = (
    "/api/jobs/{job_id}/retry",
    "/v1/jobs/{job_id}/retry",
    "/v1/apps/{app_id}/batches/{batch_id}/retry",
    "/v1/apps/{app_id}/jobs/{job_id}/retry",
)


def test_every_create_operation_documents_the_header(client: FlaskClient) -> None:
    """Every operation answering 201 or 202 (and super.AI's batch create and batch resend,
    and the retries) takes the header and documents its 409 and 422, and those that create jobs document
    the 429. A new create endpoint without it fails here."""
    documented = []
    for url in SPECS:
        spec = client.get(url).json
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                if method not in ("post", "put", "patch", "delete", "get"):
                    continue
                creates = {"201", "202"} & set(operation["responses"]) or (
                    method == "post"
                    and path
                    in (
                        "/v1/apps/{app_id}/jobs",
                        "/v1/apps/{app_id}/batches/{batch_id}/deliveries/resend",
                        *RETRIES_ANSWERING_200,
                    )
                )
                names = [p.get("name") for p in operation.get("parameters", [])]
                if not creates:
                    assert "Idempotency-Key" not in names, (path, method)
                    continue
                assert "Idempotency-Key" in names, (url, path, method)
                assert {"409", "422"} <= set(operation["responses"]), (path, method)
                documented.append((method, path))
    assert len(documented) == 20, documented
    job_creates = {
        ("post", "/api/jobs/trigger"),
        ("post", "/api/cached-jobs/trigger"),
        ("post", "/v1/apps/{app_id}/jobs"),
        ("post", "/v1/jobs"),
        ("post", "/jobs/{name}/run"),
        ("post", "/jobs/{name}/history/{run}/retry"),
        *(("post", path) for path in RETRIES_ANSWERING_200),
    }
    for url in SPECS:
        for path, operations in client.get(url).json["paths"].items():
            for method, operation in operations.items():
                if (method, path) in job_creates:
                    assert "429" in operation["responses"], (path, method)
                    job_creates.discard((method, path))
    assert not job_creates
